"""Sign-in hardening (issue 12, item 3): redirects, the Django admin, staff flags, lockout, client address."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from appliance.accounts import services, signin
from appliance.accounts.choices import LoginResult, Role
from appliance.accounts.models import LoginAttempt, User
from appliance.core.clientip import client_ip
from conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def _login(client: Client, username: str, password: str, ip: str = "10.0.0.1", forwarded: str = "") -> str:
    meta = {"REMOTE_ADDR": ip, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}
    resp = client.post("/login/", {"username": username, "password": password}, **meta)  # type: ignore[arg-type]
    return "ok" if resp.status_code == 302 else resp.content.decode()


# --- next= --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http://testserver.evil.example/"]
)
def test_login_never_redirects_off_site(personas: dict, target: str) -> None:
    resp = Client().post(f"/login/?next={target}", {"username": "bob", "password": PASSWORD})
    assert resp.status_code == 302
    assert resp["Location"] == "/"


def test_login_keeps_a_local_next(personas: dict) -> None:
    resp = Client().post("/login/?next=/users/?page=2", {"username": "bob", "password": PASSWORD})
    assert resp.status_code == 302 and resp["Location"] == "/users/?page=2"


# --- the Django admin ---------------------------------------------------------------------------


def test_django_admin_is_off_by_default(personas: dict) -> None:
    client = Client()
    client.force_login(personas["root"])
    assert client.get("/django-admin/").status_code == 404
    assert client.get("/django-admin/login/").status_code == 404


@pytest.mark.urls("appliance.accounts.tests.admin_on_urls")
def test_django_admin_login_is_the_consoles(personas: dict) -> None:
    resp = Client().get("/django-admin/login/?next=/django-admin/")
    assert resp.status_code == 302
    assert resp["Location"].startswith("/login/?next=")
    # Its own login form is never served, so no unthrottled, unaudited password check exists.
    resp = Client().post("/django-admin/login/", {"username": "root", "password": PASSWORD})
    assert resp.status_code == 302 and "sessionid" not in resp.cookies


@pytest.mark.urls("appliance.accounts.tests.admin_on_urls")
def test_django_admin_is_for_platform_admins_not_staff_flags(personas: dict) -> None:
    root = Client()
    root.force_login(personas["root"])  # a platform admin without is_staff/is_superuser
    assert root.get("/django-admin/").status_code == 200
    member = personas["bob"]
    member.is_staff = member.is_superuser = True
    member.save()
    client = Client()
    client.force_login(member)
    assert client.get("/django-admin/").status_code == 302


def test_bootstrap_admin_is_not_a_superuser(db: None) -> None:
    user, _generated = services.create_platform_admin("admin", None)
    assert user.is_platform_admin and not user.is_superuser and not user.is_staff


def test_demotion_clears_staff_flags(personas: dict, departments: dict) -> None:
    other = make_user("admin2", Role.PLATFORM_ADMIN, None)
    other.is_staff = other.is_superuser = True
    other.save()
    with transaction.atomic():
        services.update_user(personas["root"], other.pk, role=Role.MEMBER, department_id=departments["eng"].pk)
    other.refresh_from_db()
    assert other.role == Role.MEMBER and not other.is_staff and not other.is_superuser


# --- lockout ------------------------------------------------------------------------------------


def test_failures_from_one_address_do_not_lock_the_account_elsewhere(personas: dict) -> None:
    client = Client()
    for _ in range(8):
        assert "login-error" in _login(client, "root", "nope", ip="203.0.113.9")
    assert _login(client, "root", PASSWORD, ip="203.0.113.9") != "ok"
    assert _login(Client(), "root", PASSWORD, ip="10.0.0.2") == "ok"


def test_lock_grows_with_each_failure_and_is_not_renewed_by_blocked_tries(personas: dict) -> None:
    limit = 5
    for _ in range(limit):
        _login(Client(), "bob", "nope", ip="10.0.0.9")
    first = signin.login_blocked_until("bob", "10.0.0.9")
    assert first is not None
    # Trying while blocked does not push the end further.
    _login(Client(), "bob", "nope", ip="10.0.0.9")
    assert signin.login_blocked_until("bob", "10.0.0.9") == first
    assert LoginAttempt.objects.filter(result=LoginResult.BLOCKED).count() == 1
    first_delay = first - LoginAttempt.objects.filter(result=LoginResult.FAILURE).latest("created_at").created_at
    # Once it lifts, one more failure locks for twice as long.
    LoginAttempt.objects.update(created_at=timezone.now() - first_delay - timedelta(seconds=1))
    assert signin.login_blocked_until("bob", "10.0.0.9") is None
    _login(Client(), "bob", "nope", ip="10.0.0.9")
    second = signin.login_blocked_until("bob", "10.0.0.9")
    assert second is not None
    assert (second - timezone.now()).total_seconds() > first_delay.total_seconds() * 1.5


# --- client address behind a proxy ---------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert client_ip(request) == "10.1.1.1"


@override_settings(APPLIANCE_TRUSTED_PROXIES=["10.1.1.0/24", "192.0.2.7"])
def test_forwarded_for_is_read_from_trusted_proxies_only() -> None:
    factory = RequestFactory()
    request = factory.get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert client_ip(request) == "203.0.113.5"
    # A client's own X-Forwarded-For entry is to the left of what the proxies added: not believed.
    request = factory.get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5, 192.0.2.7")
    assert client_ip(request) == "203.0.113.5"
    request = factory.get("/", REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert client_ip(request) == "198.51.100.1"
    request = factory.get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="not-an-address")
    assert client_ip(request) == "10.1.1.1"


@override_settings(APPLIANCE_TRUSTED_PROXIES=["10.1.1.1"])
def test_clients_behind_a_proxy_are_throttled_apart(personas: dict) -> None:
    for _ in range(6):
        _login(Client(), "bob", "nope", ip="10.1.1.1", forwarded="203.0.113.66")
    assert _login(Client(), "bob", PASSWORD, ip="10.1.1.1", forwarded="203.0.113.66") != "ok"
    assert _login(Client(), "bob", PASSWORD, ip="10.1.1.1", forwarded="203.0.113.77") == "ok"
    assert User.objects.get(username="bob").last_login is not None
