"""OIDC single sign-on (mozilla-django-oidc): the authorization-code flow with PKCE, users by the mapping rules.

The user is found by the provider's ``sub`` (ExternalIdentity), never by e-mail: an address an identity
provider lets a user set must not open someone else's console account.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from appliance.accounts.models import User
from appliance.audit import services as audit
from appliance.sso import services
from appliance.sso.choices import Source

log = logging.getLogger(__name__)


def _setting(name: str) -> Any:
    """Settings ``console.settings`` makes of the environment only when OIDC is on (console/sso_settings.py)."""
    return getattr(settings, name)


class SsoBackend(OIDCAuthenticationBackend):
    """Claims → console user, by the mapping rules (``services.provision``)."""

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User | None:
        claims = {**payload, **self.get_userinfo(access_token, id_token, payload)}
        subject = str(claims.get("sub") or "")
        username = str(claims.get(_setting("APPLIANCE_OIDC_USERNAME_CLAIM")) or claims.get("email") or "").strip()
        if not subject or not username:
            self._refuse("no_username", _("The identity provider sent no user name."), username)
            return None
        profile = services.Profile(
            source=Source.OIDC,
            subject=f"{payload.get('iss', '')}|{subject}",
            username=username,
            display_name=str(claims.get(_setting("APPLIANCE_OIDC_DISPLAY_NAME_CLAIM")) or ""),
            email=str(claims.get("email") or ""),
            claims=claims,
        )
        try:
            return services.provision(profile)
        except services.SignInRefused as exc:
            self._refuse(exc.code, str(exc), username)
            return None

    def _refuse(self, code: str, message: str, username: str) -> None:
        log.info("OIDC sign-in of %r refused: %s", username, code)
        self.request.sso_refusal = (message, code, username)

    def get_user(self, user_id: int) -> User | None:
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None


def _require_oidc() -> None:
    if not settings.APPLIANCE_OIDC_ENABLED:
        raise Http404("OIDC sign-in is not configured.")


def sso_start(request: HttpRequest) -> HttpResponse:
    """Sends the browser to the identity provider (state, nonce and PKCE verifier kept in the session)."""
    _require_oidc()  # before the view exists: mozilla-django-oidc reads its settings when it is made
    return OIDCAuthenticationRequestView.as_view()(request)


def sso_callback(request: HttpRequest) -> HttpResponse:
    _require_oidc()
    return SsoCallbackView.as_view()(request)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back; every outcome is audited."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().dispatch(request, *args, **kwargs)
        except requests.RequestException as exc:
            log.warning("OIDC provider error: %s", exc)
            request.sso_refusal = (_("The identity provider could not be reached."), "provider_error", "")  # type: ignore[attr-defined]
            return self.login_failure()

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        _audit_sign_in("success", self.user.get_username(), self.user)
        return response

    def login_failure(self) -> HttpResponse:
        from django.contrib import messages

        message, code, username = getattr(self.request, "sso_refusal", (_("Single sign-on failed."), "failed", ""))
        if {"code", "error"} & set(self.request.GET):
            # A sign-in that reached the provider; a bare visit of the callback is no sign-in to record.
            _audit_sign_in("failure", username, None, code)
        messages.error(self.request, message)
        return super().login_failure()


def _audit_sign_in(result: str, username: str, user: User | None, reason: str = "") -> None:
    after = {"username": username, "result": result, "method": Source.OIDC}
    if reason:
        after["reason"] = reason
    with transaction.atomic():
        audit.record(
            f"login.{result}",
            actor=user,
            target=user,
            target_type="accounts.user",
            target_label=username,
            after=after,
        )
