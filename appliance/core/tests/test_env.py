from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from console.env import ConfigError, database_from_url, env_bool, env_int

ROOT = Path(__file__).resolve().parents[3]


def test_env_bool_is_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_FLAG", "True")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "yes")
    with pytest.raises(ConfigError, match="X_FLAG"):
        env_bool("X_FLAG", False)


def test_env_int_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_N", "0")
    with pytest.raises(ConfigError, match="X_N must be ≥ 1"):
        env_int("X_N", 5, minimum=1)
    monkeypatch.setenv("X_N", "five")
    with pytest.raises(ConfigError, match="X_N must be an integer"):
        env_int("X_N", 5)


def test_secret_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from console.env import env_optional

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env_optional("X_SECRET") == "s3cret"


def test_database_urls() -> None:
    db = database_from_url("DATABASE_URL", "mysql://u:p%40ss@db.local:3307/console")
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.mysql",
        "console",
        "u",
        "p@ss",
        "db.local",
        "3307",
    )
    assert database_from_url("D", "sqlite:////tmp/x.db")["NAME"] == "/tmp/x.db"
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        database_from_url("DATABASE_URL", "postgres://x/y")


def _check_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "console.settings"}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSOLE_ENV": "production"}, "CONSOLE_SECRET_KEY must be set"),
        (
            {"CONSOLE_ENV": "production", "CONSOLE_SECRET_KEY": "k" * 50, "CONSOLE_DEBUG": "True"},
            "CONSOLE_DEBUG must be False",
        ),
        ({"CONSOLE_ENV": "production", "CONSOLE_SECRET_KEY": "k" * 50}, "DATABASE_URL must point at MySQL"),
        ({"CONSOLE_DEBUG": "maybe"}, "CONSOLE_DEBUG must be 'True' or 'False'"),
        ({"CONSOLE_ENV": "prod"}, "CONSOLE_ENV must be one of"),
    ],
)
def test_production_refuses_unsafe_settings(env: dict[str, str], message: str) -> None:
    result = _check_settings(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_starts_with_safe_settings() -> None:
    result = _check_settings(
        {
            "CONSOLE_ENV": "production",
            "CONSOLE_SECRET_KEY": "k" * 50,
            "DATABASE_URL": "mysql://root@127.0.0.1:3306/console",
        }
    )
    assert result.returncode == 0, result.stderr


def test_audit_anchor_lines_reach_syslog() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        port = sock.getsockname()[1]
        code = (
            "import django, logging; django.setup(); logging.getLogger('appliance.audit.anchor').info('anchor-line-1')"
        )
        env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "console.settings"}
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**env, "APPLIANCE_AUDIT_SYSLOG": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert b"anchor-line-1" in sock.recv(4096)


def test_syslog_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from console.env import env_syslog_address

    monkeypatch.setenv("X_SYSLOG", "/dev/log")
    assert env_syslog_address("X_SYSLOG") == "/dev/log"
    monkeypatch.setenv("X_SYSLOG", "logs.example:514")
    assert env_syslog_address("X_SYSLOG") == ("logs.example", 514)
    monkeypatch.setenv("X_SYSLOG", "logs.example")
    with pytest.raises(ConfigError, match="X_SYSLOG"):
        env_syslog_address("X_SYSLOG")
