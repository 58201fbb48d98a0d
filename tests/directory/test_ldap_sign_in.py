"""LDAP sign-in against a real slapd: users made by the mapping rules, refusals, break-glass local
accounts, and the sync that deactivates users the directory disabled or removed (with their API keys)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from appliance.accounts.choices import Role
from appliance.accounts.models import Department, User
from appliance.accounts.services import authenticate_key, create_api_key
from appliance.audit.models import AuditRecord
from appliance.sso import services
from appliance.sso.choices import Source
from appliance.sso.ldap import DirectoryUnavailable, sync_directory
from appliance.sso.models import ExternalIdentity, MappingRule
from appliance.sso.tasks import sync_directory as sync_task
from conftest import PASSWORD
from tests.directory.conftest import PEOPLE_TREE, group_dn, user_dn
from tests.directory.slapd import Directory


def after(record: AuditRecord) -> dict[str, Any]:
    assert isinstance(record.after, dict)
    return record.after


pytestmark = [pytest.mark.directory, pytest.mark.django_db]


@pytest.fixture
def rules(personas: dict[str, User], departments: dict[str, Department]) -> list[MappingRule]:
    root = personas["root"]
    eng, fin = departments["eng"], departments["fin"]
    return [
        services.create_rule(
            root, source=Source.LDAP, value=group_dn("rd-admins"), department_id=eng.pk, role=Role.DEPARTMENT_ADMIN
        ),
        # Written as an AD admin might: other case and spacing than the directory's own DN.
        services.create_rule(
            root,
            source=Source.LDAP,
            value="CN=RD-Staff, OU=Groups, DC=example, DC=cn",
            department_id=eng.pk,
            role=Role.MEMBER,
        ),
        services.create_rule(
            root, source=Source.LDAP, value=group_dn("fin-staff"), department_id=fin.pk, role=Role.MEMBER
        ),
    ]


def sign_in(uid: str, password: str | None = None) -> tuple[Client, Any]:
    client = Client()
    response = client.post("/login/", {"username": uid, "password": password or PEOPLE_TREE[uid][2]})
    return client, response


def test_directory_user_signs_in_as_the_rules_say(ldap_on: Directory, rules: list[MappingRule]) -> None:
    client, response = sign_in("zhangwei")
    assert response.status_code == 302, response.content.decode()[:500]
    user = User.objects.get(username="zhangwei")
    assert (user.display_name, user.email, user.role) == ("张伟", "zhangwei@example.cn", Role.MEMBER)
    assert user.department == rules[1].department and not user.has_usable_password()
    assert ExternalIdentity.objects.get(user=user).subject == user_dn("zhangwei")
    assert client.get("/").status_code == 200
    created = AuditRecord.objects.get(action="user.create", target_id=str(user.pk))
    assert after(created)["source"] == "ldap" and after(created)["display_name"] == "张伟"
    login = AuditRecord.objects.filter(action="login.success", target_id=str(user.pk)).get()
    assert after(login)["method"] == "ldap"
    admin = Client()
    admin.force_login(User.objects.get(username="root"))
    assert '<small class="badge" title="' in admin.get("/users/").content.decode()  # marked as a directory user


def test_first_matching_rule_decides_and_each_sign_in_updates(
    ldap_on: Directory, rules: list[MappingRule], personas: dict[str, User]
) -> None:
    sign_in("lina")
    lina = User.objects.get(username="lina")
    assert lina.role == Role.DEPARTMENT_ADMIN
    services.move_rule(personas["root"], rules[0].pk, 1)  # rd-staff (member) now comes first
    sign_in("lina")
    lina.refresh_from_db()
    assert lina.role == Role.MEMBER
    update = AuditRecord.objects.get(action="user.update", target_id=str(lina.pk))
    assert isinstance(update.before, dict)
    assert (update.before["role"], after(update)["role"]) == (Role.DEPARTMENT_ADMIN, Role.MEMBER)
    assert AuditRecord.objects.filter(action="sso.rule.update", target_id=str(rules[0].pk)).exists()


def test_wrong_password_and_unmapped_users_are_refused(ldap_on: Directory, rules: list[MappingRule]) -> None:
    _client, response = sign_in("zhangwei", "not-the-password")
    assert response.status_code == 200 and "zhangwei" not in set(User.objects.values_list("username", flat=True))
    _client, response = sign_in("liuqiang")
    assert response.status_code == 200
    assert not User.objects.filter(username="liuqiang").exists()
    failure = AuditRecord.objects.filter(action="login.failure", target_label="liuqiang").get()
    assert after(failure)["reason"] == "unmapped"


def test_admin_disabled_directory_user_stays_out(
    ldap_on: Directory, rules: list[MappingRule], personas: dict[str, User]
) -> None:
    sign_in("zhangwei")
    User.objects.filter(username="zhangwei").update(is_active=False)  # as the users page does
    _client, response = sign_in("zhangwei")
    assert response.status_code == 200 and not User.objects.get(username="zhangwei").is_active


def test_local_account_is_not_taken_over_and_still_signs_in(
    ldap_on: Directory, rules: list[MappingRule], personas: dict[str, User]
) -> None:
    _client, response = sign_in("root")  # the directory's "root", with the directory's password
    assert response.status_code == 200
    assert not ExternalIdentity.objects.filter(user=personas["root"]).exists()
    client, response = sign_in("root", PASSWORD)
    assert response.status_code == 302
    login = AuditRecord.objects.filter(action="login.success", target_id=str(personas["root"].pk)).get()
    assert after(login)["method"] == "local"
    assert client.get("/sign-in-rules/").status_code == 200


def test_local_admin_signs_in_while_the_directory_is_down(ldap_down: None, personas: dict[str, User]) -> None:
    _client, response = sign_in("root", PASSWORD)
    assert response.status_code == 302
    _client, response = sign_in("zhangwei")
    assert response.status_code == 200


def test_disabled_user_is_refused_and_loses_session_and_keys(ldap_on: Directory, rules: list[MappingRule]) -> None:
    client, _response = sign_in("zhaolei")
    user = User.objects.get(username="zhaolei")
    _key, secret = create_api_key(user, name="laptop")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/users/me/").status_code == 200

    ldap_on.modify(f"dn: {user_dn('zhaolei')}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n")
    _other, response = sign_in("zhaolei")
    assert response.status_code == 200  # refused, and checked at once: the directory no longer has them
    user.refresh_from_db()
    assert not user.is_active
    assert sync_task() == 0  # nothing left for the beat task
    assert api.get("/api/v1/users/me/").status_code == 401
    assert authenticate_key(secret) is None  # the /v1 gateway's look-up
    assert client.get("/").status_code == 302  # the open session is over
    disable = AuditRecord.objects.get(action="user.disable", target_id=str(user.pk))
    assert after(disable)["reason"] == "gone" and disable.actor_name.startswith("system:")

    ldap_on.modify(f"dn: {user_dn('zhaolei')}\nchangetype: modify\ndelete: employeeType\n")
    _client, response = sign_in("zhaolei")
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_active  # enabled again in the directory: the sync had disabled it, not an admin


def test_sync_deactivates_removed_users_and_follows_group_changes(
    ldap_on: Directory, rules: list[MappingRule], departments: dict[str, Department]
) -> None:
    sign_in("sunli")
    sign_in("wangfang")
    ldap_on.delete(user_dn("sunli"))
    ldap_on.modify(
        f"dn: {group_dn('rd-staff')}\nchangetype: modify\nadd: member\nmember: {user_dn('wangfang')}\n\n"
        f"dn: {group_dn('fin-staff')}\nchangetype: modify\ndelete: member\nmember: {user_dn('wangfang')}\n"
    )
    assert sync_task() == 1  # the beat task, as Celery runs it
    assert sync_directory().checked == 1  # only the active directory users are looked up
    assert not User.objects.get(username="sunli").is_active
    wangfang = User.objects.get(username="wangfang")
    assert wangfang.is_active and wangfang.department == departments["eng"]
    assert sync_directory().deactivated == 0  # idempotent


def test_sync_with_the_directory_down_deactivates_nobody(ldap_down: None, personas: dict[str, User]) -> None:
    bob = personas["bob"]
    ExternalIdentity.objects.create(user=bob, source=Source.LDAP, subject="uid=bob,ou=rd,ou=people,dc=example,dc=cn")
    with pytest.raises(DirectoryUnavailable):
        sync_directory()
    bob.refresh_from_db()
    assert bob.is_active


def test_the_sync_is_a_celery_task() -> None:
    from workers.celery import app

    app.loader.import_default_modules()
    assert "sso.sync_directory" in app.tasks
