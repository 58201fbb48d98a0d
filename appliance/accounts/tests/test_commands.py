from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from appliance.accounts.models import User
from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


def test_create_platform_admin_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_ADMIN_PASSWORD", "a-very-good-passphrase")
    out = StringIO()
    call_command("create_platform_admin", "boss", stdout=out)
    user = User.objects.get(username="boss")
    assert user.is_platform_admin and user.check_password("a-very-good-passphrase")
    assert "passphrase" not in out.getvalue()
    assert AuditRecord.objects.get(action="user.create").actor_name == "system:command"


def test_create_platform_admin_generates_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSOLE_ADMIN_PASSWORD", raising=False)
    out = StringIO()
    call_command("create_platform_admin", "boss", stdout=out)
    password = out.getvalue().split("(shown once): ")[1].strip()
    assert User.objects.get(username="boss").check_password(password)
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_platform_admin", "boss", stdout=StringIO())
    out = StringIO()
    call_command("create_platform_admin", "boss", "--if-missing", stdout=out)
    assert "already exists" in out.getvalue()


def test_weak_admin_password_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_ADMIN_PASSWORD", "123")
    with pytest.raises(CommandError):
        call_command("create_platform_admin", "boss", stdout=StringIO())
    assert not User.objects.filter(username="boss").exists()
