"""A real OpenLDAP directory of an organisation for the sign-in tests (tests/directory/slapd.py).

Without slapd installed the tests skip, and a run that is not meant to be partial fails on the skip
(the live-test rule in the root conftest.py): `deploy/scripts/ensure-services.sh --test` installs it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from tests.directory.slapd import (
    BASE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Directory,
    Entry,
    free_port,
    missing_tools,
    running_slapd,
)

PEOPLE, GROUPS = f"ou=people,{BASE}", f"ou=groups,{BASE}"
USER_FILTER = "(&(objectClass=inetOrgPerson)(uid=%(user)s)(!(employeeType=disabled)))"
# uid → (department OU, display name, password, groups)
PEOPLE_TREE = {
    "zhangwei": ("rd", "张伟", "zhangwei-pw-1", ["rd-staff"]),
    "lina": ("rd", "李娜", "lina-pw-1", ["rd-staff", "rd-admins"]),
    "zhaolei": ("rd", "赵磊", "zhaolei-pw-1", ["rd-staff"]),
    "liuqiang": ("rd", "刘强", "liuqiang-pw-1", []),
    "root": ("rd", "Root Impostor", "impostor-pw-1", ["rd-staff"]),
    "wangfang": ("finance", "王芳", "wangfang-pw-1", ["fin-staff"]),
    "sunli": ("finance", "孙丽", "sunli-pw-1", ["fin-staff"]),
}
OUS = {"rd": "研发部", "finance": "财务部"}


def user_dn(uid: str) -> str:
    return f"uid={uid},ou={PEOPLE_TREE[uid][0]},{PEOPLE}"


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def organisation() -> list[Entry]:
    entries: list[Entry] = [
        (BASE, {"objectClass": ["dcObject", "organization"], "dc": ["example"], "o": ["示例集团"]}),
        (PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["people"]}),
        (GROUPS, {"objectClass": ["organizationalUnit"], "ou": ["groups"]}),
        (f"ou=services,{BASE}", {"objectClass": ["organizationalUnit"], "ou": ["services"]}),
        (
            SERVICE_DN,
            {
                "objectClass": ["organizationalRole", "simpleSecurityObject"],
                "cn": ["console"],
                "userPassword": [SERVICE_PASSWORD],
            },
        ),
    ]
    for ou, name in OUS.items():
        entries.append(
            (f"ou={ou},{PEOPLE}", {"objectClass": ["organizationalUnit"], "ou": [ou], "description": [name]})
        )
    for uid, (_ou, display, password, _groups) in PEOPLE_TREE.items():
        attrs = {
            "objectClass": ["inetOrgPerson"],
            "uid": [uid],
            "cn": [display],
            "sn": [display[:1]],
            "displayName": [display],
            "mail": [f"{uid}@example.cn"],
            "userPassword": [password],
        }
        entries.append((user_dn(uid), attrs))
    groups: dict[str, list[str]] = {}
    for uid, (*_rest, member_of) in PEOPLE_TREE.items():
        for group in member_of:
            groups.setdefault(group, []).append(user_dn(uid))
    for group, members in groups.items():
        entries.append((group_dn(group), {"objectClass": ["groupOfNames"], "cn": [group], "member": members}))
    return entries


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"OpenLDAP tools missing ({', '.join(missing)}): deploy/scripts/ensure-services.sh --test")
    with running_slapd(tmp_path_factory.mktemp("slapd"), organisation()) as running:
        yield running


def ldap_env(uri: str) -> dict[str, str]:
    return {
        "APPLIANCE_LDAP_SERVER_URI": uri,
        "APPLIANCE_LDAP_BIND_DN": SERVICE_DN,
        "APPLIANCE_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "APPLIANCE_LDAP_USER_BASE": PEOPLE,
        "APPLIANCE_LDAP_USER_FILTER": USER_FILTER,
        "APPLIANCE_LDAP_GROUP_BASE": GROUPS,
        "APPLIANCE_LDAP_TIMEOUT_SECONDS": "2",
    }


def ldap_overrides(monkeypatch: pytest.MonkeyPatch, uri: str) -> dict[str, Any]:
    """The settings the console makes of the environment it documents (docs/sign-in.md), for ``uri``."""
    from console.sso_settings import authentication_backends, ldap_settings

    for name, value in ldap_env(uri).items():
        monkeypatch.setenv(name, value)
    values = ldap_settings()
    return {**values, "AUTHENTICATION_BACKENDS": authentication_backends(True, False)}


@pytest.fixture
def ldap_on(directory: Directory, monkeypatch: pytest.MonkeyPatch, db: Any) -> Iterator[Directory]:
    with override_settings(**ldap_overrides(monkeypatch, directory.uri)):
        yield directory


@pytest.fixture
def ldap_down(monkeypatch: pytest.MonkeyPatch, db: Any) -> Iterator[None]:
    """LDAP configured, but nothing listens at its address."""
    with override_settings(**ldap_overrides(monkeypatch, f"ldap://127.0.0.1:{free_port()}")):
        yield
