"""Rules about the console as a whole, asked of any request's user (anonymous included)."""

from __future__ import annotations

from typing import Any


def may_administer(user: Any) -> bool:
    """An active platform admin: the Django admin (when switched on), /readyz's failure details."""
    return bool(getattr(user, "is_active", False) and getattr(user, "is_platform_admin", False))
