"""OIDC single sign-on against a real identity provider (django-oidc-provider in its own process, see
docs/adr/0004-oidc-provider-for-tests.md): the authorization-code flow with PKCE, driven end to end, and
the user made by the mapping rules from the provider's claims."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from django.contrib.messages import get_messages
from django.test import Client, override_settings

from appliance.accounts.choices import Role
from appliance.accounts.models import Department, User
from appliance.audit.models import AuditRecord
from appliance.sso import services
from appliance.sso.choices import Source
from appliance.sso.models import ExternalIdentity, MappingRule
from tests.directory.provider import Provider, running_provider


def after(record: AuditRecord) -> dict[str, Any]:
    assert isinstance(record.after, dict)
    return record.after


pytestmark = [pytest.mark.directory, pytest.mark.django_db]

CLIENT_ID, CLIENT_SECRET = "appliance-console", "console-client-secret-1"
USERS = {
    "liuyang": {"name": "刘洋", "groups": ["console-admins", "staff"], "department": "rd"},
    "chenjing": {"name": "陈静", "groups": ["staff"], "department": "finance"},
    "outsider": {"name": "Outsider", "groups": ["guests"], "department": ""},
    "root": {"name": "Not the admin", "groups": ["console-admins"], "department": ""},
}


def password_of(username: str) -> str:
    return f"{username}-idp-password"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    seed = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": ["http://testserver/sso/oidc/callback/"],
        "users": [
            {"username": name, "email": f"{name}@example.cn", "password": password_of(name), **claims}
            for name, claims in USERS.items()
        ],
    }
    with running_provider(tmp_path_factory.mktemp("oidc-provider"), seed) as running:
        yield running


@pytest.fixture
def oidc_on(provider: Provider, monkeypatch: pytest.MonkeyPatch, db: Any) -> Iterator[Provider]:
    from console.sso_settings import authentication_backends, oidc_settings

    env = {
        "APPLIANCE_OIDC_CLIENT_ID": CLIENT_ID,
        "APPLIANCE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "APPLIANCE_OIDC_AUTHORIZATION_ENDPOINT": provider.endpoint("authorize"),
        "APPLIANCE_OIDC_TOKEN_ENDPOINT": provider.endpoint("token"),
        "APPLIANCE_OIDC_USERINFO_ENDPOINT": provider.endpoint("userinfo"),
        "APPLIANCE_OIDC_JWKS_ENDPOINT": provider.endpoint("jwks"),
        "APPLIANCE_OIDC_SCOPES": "openid email profile org",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    values = oidc_settings(production=False)
    with override_settings(**values, AUTHENTICATION_BACKENDS=authentication_backends(False, True)):
        yield provider


@pytest.fixture
def rules(personas: dict[str, User], departments: dict[str, Department]) -> list[MappingRule]:
    root = personas["root"]
    return [
        services.create_rule(
            root, source=Source.OIDC, claim="groups", value="console-admins", role=Role.PLATFORM_ADMIN
        ),
        services.create_rule(
            root,
            source=Source.OIDC,
            claim="department",
            value="Finance",
            department_id=departments["fin"].pk,
            role=Role.MEMBER,
        ),
    ]


def sso_sign_in(client: Client, provider: Provider, username: str, next_url: str = "/usage/") -> Any:
    """The browser's part: console → provider's login form → provider's authorization → console callback."""
    start = client.get(f"/sso/oidc/start/?next={next_url}")
    assert start.status_code == 302 and start["Location"].startswith(provider.endpoint("authorize"))
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        to_login = browser.get(start["Location"])
        assert to_login.status_code == 302, to_login.text[:300]
        login_url = urljoin(provider.url, to_login.headers["location"])
        page = browser.get(login_url)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None, page.text[:300]
        form = {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password_of(username)}
        back = browser.post(login_url, data=form)
        assert back.status_code == 302, back.text[:500]
        to_console = browser.get(urljoin(provider.url, back.headers["location"]))
    assert to_console.status_code == 302, to_console.text[:300]
    callback = urlsplit(to_console.headers["location"])
    assert (callback.netloc, callback.path) == ("testserver", "/sso/oidc/callback/")
    assert "code=" in callback.query
    return client.get(f"{callback.path}?{callback.query}")


def test_sso_user_lands_signed_in_with_the_mapped_role(oidc_on: Provider, rules: list[MappingRule]) -> None:
    client = Client()
    response = sso_sign_in(client, oidc_on, "liuyang")
    assert (response.status_code, response["Location"]) == (302, "/usage/")
    user = User.objects.get(username="liuyang")
    assert (user.display_name, user.email, user.role, user.department) == (
        "刘洋",
        "liuyang@example.cn",
        Role.PLATFORM_ADMIN,
        None,
    )
    assert not user.has_usable_password()
    assert ExternalIdentity.objects.get(user=user).subject.startswith(f"{oidc_on.url}/openid|")  # issuer|sub
    assert client.get("/sign-in-rules/").status_code == 200  # signed in, as a platform admin
    login = AuditRecord.objects.get(action="login.success", target_id=str(user.pk))
    assert after(login)["method"] == "oidc"
    assert AuditRecord.objects.filter(action="user.create", target_id=str(user.pk)).exists()


def test_department_claim_maps_to_a_department(
    oidc_on: Provider, rules: list[MappingRule], departments: dict[str, Department]
) -> None:
    client = Client()
    sso_sign_in(client, oidc_on, "chenjing")
    user = User.objects.get(username="chenjing")
    assert (user.display_name, user.department, user.role) == ("陈静", departments["fin"], Role.MEMBER)
    assert client.get("/").status_code == 200


def test_unmapped_and_clashing_users_are_refused(
    oidc_on: Provider, rules: list[MappingRule], personas: dict[str, User]
) -> None:
    client = Client()
    response = sso_sign_in(client, oidc_on, "outsider")
    assert (response.status_code, response["Location"]) == (302, "/login/")
    assert not User.objects.filter(username="outsider").exists()
    assert len(get_messages(response.wsgi_request)) == 1  # why, on the sign-in page
    failure = AuditRecord.objects.get(action="login.failure", target_label="outsider")
    assert (after(failure)["method"], after(failure)["reason"]) == ("oidc", "unmapped")
    sso_sign_in(client, oidc_on, "root")  # the provider's "root" must not become the console's root
    assert not ExternalIdentity.objects.filter(user=personas["root"]).exists()
    assert client.get("/").status_code == 302
    assert AuditRecord.objects.filter(action="login.failure").count() == 2
    assert client.get("/sso/oidc/callback/").status_code == 302  # no code, no state: back to the sign-in page
    assert AuditRecord.objects.filter(action="login.failure").count() == 2


def test_login_page_offers_sso_in_both_languages(oidc_on: Provider) -> None:
    page = Client().get("/login/?next=/chat/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "SSO 登录" in page and "/sso/oidc/start/?next=/chat/" in page
    assert "Sign in with SSO" in Client().get("/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
