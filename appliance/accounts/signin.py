"""Signing in: every try stored and audited, and throttled per (account, address) and per address."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from appliance.accounts.choices import LoginResult
from appliance.accounts.models import LoginAttempt, User
from appliance.audit import services as audit
from appliance.core.clientip import client_ip


def login_blocked_until(username: str, source_ip: str | None) -> datetime | None:
    """When the next try of ``username`` from ``source_ip`` is allowed, or None if it is now.

    Failures count per (account, address) and per address, never per account alone: otherwise
    anyone could keep the real admin out by failing on purpose. Past the limit each failure doubles
    the wait; tries refused while blocked are not failures, so they never extend it.
    """
    now = timezone.now()
    since = now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    address = Q(source_ip=source_ip) if source_ip else Q(source_ip__isnull=True)
    latest: datetime | None = None
    for cond in (Q(username=username) & address, address):
        failures = list(
            LoginAttempt.objects.filter(cond, result=LoginResult.FAILURE, created_at__gte=since)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[: settings.LOGIN_FAILURE_LIMIT + 16]
        )
        excess = len(failures) - settings.LOGIN_FAILURE_LIMIT
        if excess < 0:
            continue
        delay = min(settings.LOGIN_DELAY_SECONDS * 2**excess, settings.LOGIN_MAX_DELAY_SECONDS)
        until = failures[0] + timedelta(seconds=delay)
        if until > now and (latest is None or until > latest):
            latest = until
    return latest


def attempt_login(request: Any, username: str, password: str) -> tuple[User | None, str]:
    """Authenticate with throttling; every attempt is stored and audited. Returns (user, error)."""
    ip = client_ip(request)
    username = username[:150]
    blocked = login_blocked_until(username, ip)
    target = User.objects.filter(username=username).first()
    if blocked is not None:
        minutes = max(1, math.ceil((blocked - timezone.now()).total_seconds() / 60))
        _log_attempt(username, ip, LoginResult.BLOCKED, target)
        return None, _("Too many failed logins. Try again in %(minutes)d minutes.") % {"minutes": minutes}
    user = authenticate(request, username=username, password=password)
    if user is None or getattr(user, "is_service_account", False):
        # A directory that knew the password but refused the user (no mapping rule, ...) says why.
        refusal = getattr(request, "sso_refusal", None)
        _log_attempt(username, ip, LoginResult.FAILURE, target, refusal[1] if refusal else "")
        return None, refusal[0] if refusal else _("Wrong username or password.")
    _log_attempt(username, ip, LoginResult.SUCCESS, user)
    return user, ""


def _method(user: User | None) -> str:
    """How a user signed in: ``ldap`` through the directory backend, ``local`` with the console's password."""
    backend = getattr(user, "backend", "") or ""
    return "ldap" if backend.endswith("DirectoryBackend") else "local"


def _log_attempt(username: str, ip: str | None, result: str, target: User | None, reason: str = "") -> None:
    with transaction.atomic():
        LoginAttempt.objects.create(username=username, source_ip=ip, result=result)
        audit.record(
            f"login.{result}",
            actor=target if result == LoginResult.SUCCESS else None,
            target=target,
            target_type="accounts.user",
            target_label=username,
            after={
                "username": username,
                "result": result,
                **({"method": _method(target)} if result == LoginResult.SUCCESS else {}),
                **({"reason": reason} if reason else {}),
            },
        )
