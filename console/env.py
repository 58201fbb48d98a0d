"""Strict readers for settings taken from environment variables.

Every reader fails at start-up with a message that names the variable, so a typo in a
deployment's environment never turns into a silently different behaviour at run time.
``NAME_FILE`` variants let secrets come from files (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


class ConfigError(Exception):
    """A setting read from the environment is missing or malformed."""


def _raw(name: str) -> str | None:
    file_var = os.environ.get(f"{name}_FILE")
    if file_var:
        try:
            return Path(file_var).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={file_var!r} cannot be read: {exc}") from exc
    return os.environ.get(name)


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None else value


def env_optional(name: str) -> str | None:
    value = _raw(name)
    return value or None


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    # Healthchecks' rule: only the two literal spellings, so "yes"/"1"/"flase" fail loudly.
    if value == "True":
        return True
    if value == "False":
        return False
    raise ConfigError(f"{name} must be 'True' or 'False', got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be ≥ {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be ≤ {maximum}, got {number}")
    return number


def env_float(name: str, default: float) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of IP addresses or networks (``10.0.0.0/8``); a bare address is one host."""
    items = env_list(name, default)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP address or network") from None
    return items


def networks(items: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of a list ``env_networks`` read."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def derived_key(secret: str, label: str) -> str:
    """A key derived from ``secret`` for one purpose (HMAC-SHA256 of ``label``), for a setting left unset."""
    return hmac.new(secret.encode(), label.encode(), hashlib.sha256).hexdigest()


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def database_from_url(name: str, url: str) -> dict[str, Any]:
    """Turn ``mysql://user:pass@host:port/db`` or ``sqlite:///path`` into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path[1:] if path.startswith("//") else path}
    if parts.scheme in ("mysql", "mariadb"):
        if not parts.path.strip("/"):
            raise ConfigError(f"{name} must name a database: mysql://user:pass@host:3306/dbname")
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": unquote(parts.path.strip("/")),
            "USER": unquote(parts.username or "root"),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "127.0.0.1",
            "PORT": str(parts.port or 3306),
            "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed", **options},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    raise ConfigError(f"{name} must start with sqlite:// or mysql://, got {parts.scheme or url!r}")


def env_port_range(name: str, default: tuple[int, int]) -> tuple[int, int]:
    value = _raw(name)
    if value is None:
        return default
    low, sep, high = value.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise ConfigError(f"{name} must look like 20000-20999, got {value!r}") from None
    if not sep or not 1024 <= lo <= hi <= 65535:
        raise ConfigError(f"{name} must be LOW-HIGH within 1024-65535, got {value!r}")
    return lo, hi


def env_syslog_address(name: str) -> str | tuple[str, int] | None:
    """A syslog destination: a socket path (``/dev/log``) or ``host:port`` (UDP); None when unset."""
    value = env_optional(name)
    if value is None or value.startswith("/"):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must be a socket path (/dev/log) or host:port, got {value!r}")
    return host.strip("[]"), int(port)
