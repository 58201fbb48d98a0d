"""Settings, the rule matching, and the rules' services, page and API (no directory needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from django.test import Client
from rest_framework.test import APIClient

from appliance.accounts.choices import Role
from appliance.accounts.models import Department, User
from appliance.audit.models import AuditRecord
from appliance.core.exceptions import InvalidInput, PermissionDenied
from appliance.sso import services
from appliance.sso.choices import Source
from appliance.sso.mapping import first_match
from appliance.sso.models import MappingRule
from console.env import ConfigError
from console.sso_settings import authentication_backends, ldap_settings, oidc_settings

LDAP_OK = {
    "APPLIANCE_LDAP_SERVER_URI": "ldaps://dc1.example.cn ldaps://dc2.example.cn",
    "APPLIANCE_LDAP_BIND_DN": "cn=console,ou=services,dc=example,dc=cn",
    "APPLIANCE_LDAP_BIND_PASSWORD": "secret",
    "APPLIANCE_LDAP_USER_BASE": "ou=people,dc=example,dc=cn",
    "APPLIANCE_LDAP_GROUP_BASE": "ou=groups,dc=example,dc=cn",
}


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name in (*LDAP_OK, "APPLIANCE_LDAP_USER_FILTER", "APPLIANCE_LDAP_GROUP_TYPE", "APPLIANCE_OIDC_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_nothing_set_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {})
    assert ldap_settings() == {"APPLIANCE_LDAP_ENABLED": False}
    assert oidc_settings(production=True) == {"APPLIANCE_OIDC_ENABLED": False}
    assert authentication_backends(False, False) == ["django.contrib.auth.backends.ModelBackend"]


def test_ldap_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {**LDAP_OK, "APPLIANCE_LDAP_GROUP_TYPE": "activeDirectory",
                       "APPLIANCE_LDAP_USER_FILTER": "(sAMAccountName=%(user)s)"})  # fmt: skip
    values = ldap_settings()
    assert values["APPLIANCE_LDAP_ENABLED"] and values["AUTH_LDAP_USER_SEARCH"].filterstr == "(sAMAccountName=%(user)s)"
    assert type(values["AUTH_LDAP_GROUP_TYPE"]).__name__ == "NestedActiveDirectoryGroupType"
    assert authentication_backends(True, True)[0] == "django.contrib.auth.backends.ModelBackend"  # break-glass first


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"APPLIANCE_LDAP_SERVER_URI": "http://dc1.example.cn"}, "APPLIANCE_LDAP_SERVER_URI"),
        ({"APPLIANCE_LDAP_USER_BASE": "people"}, "APPLIANCE_LDAP_USER_BASE"),
        ({"APPLIANCE_LDAP_USER_FILTER": "(uid=%s)"}, "APPLIANCE_LDAP_USER_FILTER"),
        ({"APPLIANCE_LDAP_USER_FILTER": "(&(uid=%(user)s)(x=5%))"}, "APPLIANCE_LDAP_USER_FILTER"),
        ({"APPLIANCE_LDAP_GROUP_TYPE": "nested"}, "APPLIANCE_LDAP_GROUP_TYPE"),
        ({"APPLIANCE_LDAP_BIND_PASSWORD": ""}, "APPLIANCE_LDAP_BIND_PASSWORD"),
        ({"APPLIANCE_LDAP_SERVER_URI": ""}, "APPLIANCE_LDAP_SERVER_URI"),  # other LDAP variables set without it
    ],
)
def test_bad_ldap_settings_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, str], named: str
) -> None:
    _env(monkeypatch, {k: v for k, v in {**LDAP_OK, **change}.items() if v})
    with pytest.raises(ConfigError, match=named):
        ldap_settings()


def test_bad_oidc_settings_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {"APPLIANCE_OIDC_CLIENT_ID": "console"})
    with pytest.raises(ConfigError, match="APPLIANCE_OIDC_CLIENT_SECRET"):
        oidc_settings(production=False)
    for name in ("SECRET", "AUTHORIZATION_ENDPOINT", "TOKEN_ENDPOINT", "USERINFO_ENDPOINT", "JWKS_ENDPOINT"):
        monkeypatch.setenv(f"APPLIANCE_OIDC_{name}" if name != "SECRET" else "APPLIANCE_OIDC_CLIENT_SECRET",
                           "http://idp.example.cn/x")  # fmt: skip
    assert oidc_settings(production=False)["APPLIANCE_OIDC_ENABLED"]
    with pytest.raises(ConfigError, match="https"):
        oidc_settings(production=True)


def test_first_matching_rule_in_order(db: None, departments: dict[str, Department]) -> None:
    eng = departments["eng"]
    rules = [
        MappingRule(source=Source.OIDC, claim="groups", value="Admins", role=Role.PLATFORM_ADMIN, position=0),
        MappingRule(source=Source.OIDC, claim="department", value="研发部", department=eng, position=1),
        MappingRule(source=Source.LDAP, value="CN=Staff,DC=example,DC=cn", department=eng, position=0),
        MappingRule(source=Source.OIDC, claim="groups", value="*", department=eng, position=2),
    ]
    assert first_match(rules, Source.OIDC, {"groups": ["staff", "admins"]}) is rules[0]
    assert first_match(rules, Source.OIDC, {"groups": "x", "department": "研发部"}) is rules[1]
    assert first_match(rules, Source.OIDC, {}) is rules[3]
    assert first_match(rules, Source.LDAP, {"": ["cn=staff, dc=example, dc=cn"]}) is rules[2]
    assert first_match(rules, Source.LDAP, {"": ["cn=other,dc=example,dc=cn"]}) is None


def test_rules_are_platform_admin_only_and_audited(
    personas: dict[str, User], departments: dict[str, Department]
) -> None:
    fields = {"source": Source.LDAP, "value": "cn=staff,dc=example,dc=cn", "department_id": departments["eng"].pk}
    for name in ("alice", "bob", "eve"):
        with pytest.raises(PermissionDenied):
            services.create_rule(personas[name], **fields)
    with pytest.raises(InvalidInput):
        services.create_rule(personas["root"], **{**fields, "department_id": None})  # a member needs a department
    with pytest.raises(InvalidInput):
        services.create_rule(personas["root"], source=Source.OIDC, value="x", role=Role.AUDITOR)  # no claim
    rule = services.create_rule(personas["root"], **fields)
    second = services.create_rule(personas["root"], **{**fields, "value": "cn=b,dc=example,dc=cn"})
    assert (rule.position, second.position) == (0, 1)
    services.update_rule(personas["root"], rule.pk, role=Role.DEPARTMENT_ADMIN)
    services.move_rule(personas["root"], second.pk, -1)
    services.delete_rule(personas["root"], rule.pk)
    actions = list(
        AuditRecord.objects.filter(action__startswith="sso.rule").order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["sso.rule.create", "sso.rule.create", "sso.rule.update", "sso.rule.update", "sso.rule.delete"]
    assert MappingRule.objects.get().position == 0


def test_rules_page(personas: dict[str, User], departments: dict[str, Department]) -> None:
    admin = Client()
    admin.force_login(personas["root"])
    body = {"source": "oidc", "claim": "groups", "value": "finance", "department_id": departments["fin"].pk,
            "role": "member"}  # fmt: skip
    assert admin.post("/sign-in-rules/", body).status_code == 302
    rule = MappingRule.objects.get()
    page = admin.get("/sign-in-rules/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "登录映射规则" in page and "财务部" in page and "finance" in page
    assert admin.post(f"/sign-in-rules/{rule.pk}/", {"action": "delete"}).status_code == 302
    assert not MappingRule.objects.exists()
    for name, status in (("alice", 403), ("bob", 403), ("eve", 200)):
        client = Client()
        client.force_login(personas[name])
        assert client.get("/sign-in-rules/").status_code == status
        assert client.post("/sign-in-rules/", body).status_code == 403
    assert "Sign-in rules" in admin.get("/sign-in-rules/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_rules_api(personas: dict[str, User], departments: dict[str, Department],
                   api_as: Callable[[str], APIClient]) -> None:  # fmt: skip
    body = {"source": "ldap", "value": "cn=staff,dc=example,dc=cn", "department": departments["eng"].pk}
    created = api_as("root").post("/api/v1/sso/rules/", body, format="json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert api_as("alice").post("/api/v1/sso/rules/", body, format="json").status_code == 403
    assert api_as("bob").get("/api/v1/sso/rules/").json()["results"] == []
    assert api_as("eve").get(f"/api/v1/sso/rules/{pk}/").json()["department_name"] == "研发部"
    patched = api_as("root").patch(f"/api/v1/sso/rules/{pk}/", {"role": "department_admin"}, format="json")
    assert patched.json()["role"] == "department_admin"
    assert api_as("eve").delete(f"/api/v1/sso/rules/{pk}/").status_code == 403
    assert api_as("root").delete(f"/api/v1/sso/rules/{pk}/").status_code == 204


def _settings_in_a_new_process(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_LDAP_", "APPLIANCE_OIDC_"))}
    env.update(extra, DJANGO_SETTINGS_MODULE="console.settings")
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.AUTHENTICATION_BACKENDS, 'sso.sync-directory' in s.CELERY_BEAT_SCHEDULE)"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_console_starts_with_ldap_and_refuses_a_bad_setting() -> None:
    good = _settings_in_a_new_process(LDAP_OK)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "appliance.sso.ldap.DirectoryBackend" in good.stdout and good.stdout.strip().endswith("True")
    bad = _settings_in_a_new_process({**LDAP_OK, "APPLIANCE_LDAP_USER_BASE": "people"})
    assert bad.returncode != 0 and "APPLIANCE_LDAP_USER_BASE" in bad.stderr
