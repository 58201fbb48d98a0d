"""LDAP / Active Directory sign-in (django-auth-ldap) and the periodic directory sync.

django-auth-ldap binds as the user and finds their groups; the console then creates or updates the user
itself (``services.provision``, by the mapping rules), so the attribute map and group mirroring stay off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ldap
from django.conf import settings
from django_auth_ldap.backend import LDAPBackend, ldap_error

from appliance.accounts.models import User
from appliance.sso import services
from appliance.sso.choices import Source
from appliance.sso.mapping import ldap_claims
from appliance.sso.models import ExternalIdentity

log = logging.getLogger(__name__)


def _setting(name: str) -> Any:
    """The settings ``console.settings`` makes of the environment only when LDAP is on (console/sso_settings.py)."""
    return getattr(settings, name)


def _first(attrs: dict[str, list[str]] | None, name: str) -> str:
    values = (attrs or {}).get(name) or (attrs or {}).get(name.lower()) or [""]
    return str(values[0])


class DirectoryBackend(LDAPBackend):
    """A user found and bound in the directory signs in as the console user the mapping rules make."""

    syncing = False  # set by the directory sync, whose look-ups are no sign-ins
    _request: Any = None

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kw: Any) -> Any:
        self._request = request
        with directory_errors() as errors:
            user = super().authenticate(request, username=username, password=password, **kw)
        if user is None and username and not errors:
            # Checked at sign-in, not only by the sync: a user the directory dropped is deactivated now.
            identity = _active_identity(username.strip().lower())
            if identity is not None:
                self.refresh(identity)
        return user

    def refresh(self, identity: ExternalIdentity) -> bool | None:
        """Look the user up again (as the sync does): True if the directory still has and a rule maps them,
        False if not (they are deactivated), None on a directory error (nothing changes)."""
        self.syncing, was = True, self.syncing
        try:
            with directory_errors() as errors:
                found = self.populate_user(identity.user.username)
        finally:
            self.syncing = was
        if errors:
            return None
        if found is None:
            services.deactivate_identity(identity.pk, "gone")
        return found is not None

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[User, bool]:
        profile = services.Profile(
            source=Source.LDAP,
            subject=str(ldap_user.dn),
            username=username.strip().lower(),
            display_name=_first(ldap_user.attrs, _setting("APPLIANCE_LDAP_DISPLAY_NAME_ATTR"))
            or _first(ldap_user.attrs, "cn"),
            email=_first(ldap_user.attrs, _setting("APPLIANCE_LDAP_EMAIL_ATTR")),
            claims=ldap_claims(ldap_user.group_dns),
            signing_in=not self.syncing,
        )
        try:
            user = services.provision(profile)
        except services.SignInRefused as exc:
            log.info("LDAP sign-in of %s refused: %s", username, exc)
            if self._request is not None:
                # The password was right: saying why is no help to someone guessing (appliance/accounts/signin.py).
                self._request.sso_refusal = (str(exc), exc.code)
            raise ldap_user.AuthenticationFailed(str(exc)) from None
        # Saved already: "not built" keeps django-auth-ldap from filling or saving it again.
        return user, False

    def get_user(self, user_id: int) -> User | None:
        # django-auth-ldap's own get_user ignores is_active: a user the sync deactivated would stay signed in.
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None


@contextmanager
def directory_errors() -> Iterator[list[BaseException]]:
    """The LDAP errors django-auth-ldap reports meanwhile (it logs them and carries on as "not found")."""
    errors: list[BaseException] = []

    def on_error(sender: Any, context: str, exception: BaseException, **_: Any) -> None:
        errors.append(exception)

    ldap_error.connect(on_error, weak=False)
    try:
        yield errors
    finally:
        ldap_error.disconnect(on_error)


def _active_identity(username: str) -> ExternalIdentity | None:
    return (
        ExternalIdentity.objects.select_related("user")
        .filter(source=Source.LDAP, user__username__iexact=username, user__is_active=True)
        .first()
    )


class DirectoryUnavailable(Exception):
    """The directory could not be searched: the sync stops without deactivating anyone."""


@dataclass
class SyncResult:
    checked: int = 0
    deactivated: int = 0


def _check_directory() -> None:
    """Bind with the service account and read the user base; raises DirectoryUnavailable if either fails."""
    conn = ldap.initialize(_setting("AUTH_LDAP_SERVER_URI"))
    try:
        for option, value in _setting("AUTH_LDAP_CONNECTION_OPTIONS").items():
            conn.set_option(option, value)
        if _setting("AUTH_LDAP_START_TLS"):
            conn.start_tls_s()
        conn.simple_bind_s(_setting("AUTH_LDAP_BIND_DN"), _setting("AUTH_LDAP_BIND_PASSWORD"))
        conn.search_s(_setting("AUTH_LDAP_USER_SEARCH").base_dn, ldap.SCOPE_BASE, attrlist=["1.1"])
    except ldap.LDAPError as exc:
        raise DirectoryUnavailable(str(exc)) from exc
    finally:
        conn.unbind_s()


def sync_directory() -> SyncResult:
    """Deactivate console users whom the directory no longer has (removed, or filtered out as disabled)
    or whom no rule maps any more; update the department and role of the others.

    A directory error on any user stops the sync: an outage must never read as "everyone is gone"."""
    if not settings.APPLIANCE_LDAP_ENABLED:
        return SyncResult()
    _check_directory()
    backend, result = DirectoryBackend(), SyncResult()
    identities = ExternalIdentity.objects.filter(source=Source.LDAP, user__is_active=True).select_related("user")
    for identity in identities:
        result.checked += 1
        found = backend.refresh(identity)
        if found is None:
            raise DirectoryUnavailable(f"looking up {identity.user.username} failed; see the log")
        result.deactivated += 0 if found else 1
    return result
