"""Settings of LDAP and OIDC sign-in, read from the environment (docs/sign-in.md).

Nothing set: the feature is off. Anything set: all that it needs must be set and well-formed, or the
console refuses to start naming the variable (a half-configured directory must not fail at sign-in).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from console.env import ConfigError, env_bool, env_choice, env_int, env_optional, env_str

LDAP_URI = "APPLIANCE_LDAP_SERVER_URI"
LDAP_VARS = (
    "APPLIANCE_LDAP_BIND_DN",
    "APPLIANCE_LDAP_BIND_PASSWORD",
    "APPLIANCE_LDAP_START_TLS",
    "APPLIANCE_LDAP_USER_BASE",
    "APPLIANCE_LDAP_USER_FILTER",
    "APPLIANCE_LDAP_GROUP_BASE",
    "APPLIANCE_LDAP_GROUP_TYPE",
    "APPLIANCE_LDAP_DISPLAY_NAME_ATTR",
    "APPLIANCE_LDAP_EMAIL_ATTR",
    "APPLIANCE_LDAP_TIMEOUT_SECONDS",
    "APPLIANCE_LDAP_SYNC_SECONDS",
)
OIDC_REQUIRED = (
    "APPLIANCE_OIDC_CLIENT_ID",
    "APPLIANCE_OIDC_CLIENT_SECRET",
    "APPLIANCE_OIDC_AUTHORIZATION_ENDPOINT",
    "APPLIANCE_OIDC_TOKEN_ENDPOINT",
    "APPLIANCE_OIDC_USERINFO_ENDPOINT",
    "APPLIANCE_OIDC_JWKS_ENDPOINT",
)
OIDC_OPTIONAL = (
    "APPLIANCE_OIDC_SCOPES",
    "APPLIANCE_OIDC_SIGN_ALGO",
    "APPLIANCE_OIDC_USERNAME_CLAIM",
    "APPLIANCE_OIDC_DISPLAY_NAME_CLAIM",
    "APPLIANCE_OIDC_TIMEOUT_SECONDS",
)
# What AUTH_LDAP_GROUP_SEARCH looks for, per kind of group entry.
GROUP_TYPES = {
    "groupOfNames": ("GroupOfNamesType", "(objectClass=groupOfNames)"),
    "groupOfUniqueNames": ("GroupOfUniqueNamesType", "(objectClass=groupOfUniqueNames)"),
    "posixGroup": ("PosixGroupType", "(objectClass=posixGroup)"),
    "activeDirectory": ("NestedActiveDirectoryGroupType", "(objectClass=group)"),
}


def _is_set(name: str) -> bool:
    return os.environ.get(name) is not None or os.environ.get(f"{name}_FILE") is not None


def _required(name: str, feature: str) -> str:
    value = env_optional(name)
    if value is None:
        raise ConfigError(f"{name} must be set when {feature} is set")
    return value


def _dn(name: str, feature: str) -> str:
    import ldap.dn

    value = _required(name, feature)
    if not ldap.dn.is_dn(value):
        raise ConfigError(f"{name} must be a distinguished name such as ou=people,dc=example,dc=cn; got {value!r}")
    return value


def _ldap_uri(value: str) -> str:
    for uri in value.split():
        parts = urlsplit(uri)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ConfigError(f"{LDAP_URI} must be ldap://host:389 or ldaps://host:636 (space-separated); got {uri!r}")
    return value


def _user_filter() -> str:
    value = env_str("APPLIANCE_LDAP_USER_FILTER", "(uid=%(user)s)")
    if "%(user)s" not in value or not (value.startswith("(") and value.endswith(")")):
        raise ConfigError(f"APPLIANCE_LDAP_USER_FILTER must be a filter in parentheses naming %(user)s; got {value!r}")
    try:
        _ = value % {"user": "x"}  # a stray % fails here, not at the first sign-in
    except (KeyError, ValueError, TypeError):
        raise ConfigError(f"APPLIANCE_LDAP_USER_FILTER has a '%' other than %(user)s: {value!r}") from None
    return value


def ldap_settings() -> dict[str, Any]:
    """The AUTH_LDAP_* settings of django-auth-ldap, and the console's own; empty when LDAP is off."""
    uri = env_optional(LDAP_URI)
    if uri is None:
        stray = [name for name in LDAP_VARS if _is_set(name)]
        if stray:
            raise ConfigError(f"{stray[0]} is set but {LDAP_URI} is not: set it too, or unset {', '.join(stray)}")
        return {"APPLIANCE_LDAP_ENABLED": False}
    import ldap
    from django_auth_ldap import config as ldap_config

    bind_dn = env_str("APPLIANCE_LDAP_BIND_DN", "")
    bind_password = env_str("APPLIANCE_LDAP_BIND_PASSWORD", "")
    if bind_dn and not bind_password:
        raise ConfigError("APPLIANCE_LDAP_BIND_PASSWORD must be set when APPLIANCE_LDAP_BIND_DN is")
    if bind_dn and not ldap.dn.is_dn(bind_dn):
        raise ConfigError(f"APPLIANCE_LDAP_BIND_DN must be a distinguished name; got {bind_dn!r}")
    type_name, group_filter = GROUP_TYPES[env_choice("APPLIANCE_LDAP_GROUP_TYPE", "groupOfNames", tuple(GROUP_TYPES))]
    timeout = env_int("APPLIANCE_LDAP_TIMEOUT_SECONDS", 5, minimum=1, maximum=120)
    return {
        "APPLIANCE_LDAP_ENABLED": True,
        "AUTH_LDAP_SERVER_URI": _ldap_uri(uri),
        "AUTH_LDAP_BIND_DN": bind_dn,
        "AUTH_LDAP_BIND_PASSWORD": bind_password,
        "AUTH_LDAP_START_TLS": env_bool("APPLIANCE_LDAP_START_TLS", False),
        "AUTH_LDAP_USER_SEARCH": ldap_config.LDAPSearch(
            _dn("APPLIANCE_LDAP_USER_BASE", LDAP_URI), ldap.SCOPE_SUBTREE, _user_filter()
        ),
        "AUTH_LDAP_GROUP_SEARCH": ldap_config.LDAPSearch(
            _dn("APPLIANCE_LDAP_GROUP_BASE", LDAP_URI), ldap.SCOPE_SUBTREE, group_filter
        ),
        "AUTH_LDAP_GROUP_TYPE": getattr(ldap_config, type_name)(),
        # The console fills its users itself (appliance/sso/ldap.py): no attribute map, no group mirroring.
        "AUTH_LDAP_USER_ATTR_MAP": {},
        "AUTH_LDAP_ALWAYS_UPDATE_USER": False,
        "AUTH_LDAP_CACHE_TIMEOUT": 0,
        "AUTH_LDAP_CONNECTION_OPTIONS": {
            ldap.OPT_NETWORK_TIMEOUT: timeout,
            ldap.OPT_TIMEOUT: timeout,
            ldap.OPT_REFERRALS: 0,
        },
        "APPLIANCE_LDAP_DISPLAY_NAME_ATTR": env_str("APPLIANCE_LDAP_DISPLAY_NAME_ATTR", "displayName"),
        "APPLIANCE_LDAP_EMAIL_ATTR": env_str("APPLIANCE_LDAP_EMAIL_ATTR", "mail"),
        "APPLIANCE_LDAP_SYNC_SECONDS": env_int("APPLIANCE_LDAP_SYNC_SECONDS", 900, minimum=60),
    }


def _endpoint(name: str, production: bool) -> str:
    value = _required(name, "APPLIANCE_OIDC_CLIENT_ID")
    parts = urlsplit(value)
    schemes = ("https",) if production else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname:
        need = "an https:// URL" if production else "an http(s):// URL"
        raise ConfigError(f"{name} must be {need}; got {value!r}")
    return value


def oidc_settings(production: bool) -> dict[str, Any]:
    """The OIDC_* settings of mozilla-django-oidc, and the console's own; off when none is set."""
    if not any(_is_set(name) for name in OIDC_REQUIRED):
        stray = [name for name in OIDC_OPTIONAL if _is_set(name)]
        if stray:
            raise ConfigError(f"{stray[0]} is set but APPLIANCE_OIDC_CLIENT_ID and the endpoints are not")
        return {"APPLIANCE_OIDC_ENABLED": False}
    scopes = env_str("APPLIANCE_OIDC_SCOPES", "openid email profile")
    if "openid" not in scopes.split():
        raise ConfigError(f"APPLIANCE_OIDC_SCOPES must include openid; got {scopes!r}")
    return {
        "APPLIANCE_OIDC_ENABLED": True,
        "OIDC_RP_CLIENT_ID": _required("APPLIANCE_OIDC_CLIENT_ID", "any APPLIANCE_OIDC_* endpoint"),
        "OIDC_RP_CLIENT_SECRET": _required("APPLIANCE_OIDC_CLIENT_SECRET", "APPLIANCE_OIDC_CLIENT_ID"),
        "OIDC_OP_AUTHORIZATION_ENDPOINT": _endpoint("APPLIANCE_OIDC_AUTHORIZATION_ENDPOINT", production),
        "OIDC_OP_TOKEN_ENDPOINT": _endpoint("APPLIANCE_OIDC_TOKEN_ENDPOINT", production),
        "OIDC_OP_USER_ENDPOINT": _endpoint("APPLIANCE_OIDC_USERINFO_ENDPOINT", production),
        "OIDC_OP_JWKS_ENDPOINT": _endpoint("APPLIANCE_OIDC_JWKS_ENDPOINT", production),
        "OIDC_RP_SIGN_ALGO": env_choice("APPLIANCE_OIDC_SIGN_ALGO", "RS256", ("RS256", "ES256", "HS256")),
        "OIDC_RP_SCOPES": scopes,
        "OIDC_USE_PKCE": True,
        "OIDC_TIMEOUT": env_int("APPLIANCE_OIDC_TIMEOUT_SECONDS", 10, minimum=1, maximum=120),
        "OIDC_AUTHENTICATION_CALLBACK_URL": "sso-oidc-callback",
        "LOGIN_REDIRECT_URL_FAILURE": "/login/",
        "APPLIANCE_OIDC_USERNAME_CLAIM": env_str("APPLIANCE_OIDC_USERNAME_CLAIM", "preferred_username"),
        "APPLIANCE_OIDC_DISPLAY_NAME_CLAIM": env_str("APPLIANCE_OIDC_DISPLAY_NAME_CLAIM", "name"),
    }


def authentication_backends(ldap_on: bool, oidc_on: bool) -> list[str]:
    """Local accounts first: the break-glass admin signs in without waiting on a directory that is down."""
    backends = ["django.contrib.auth.backends.ModelBackend"]
    if ldap_on:
        backends.append("appliance.sso.ldap.DirectoryBackend")
    if oidc_on:
        backends.append("appliance.sso.oidc.SsoBackend")
    return backends
