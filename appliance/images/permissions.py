"""Who may manage engine images: the rule that is not a queryset filter (which images and imports a user
sees is ``restrict(user, action)`` on the images' models)."""

from __future__ import annotations

from appliance.accounts.models import User


def may_manage_images(actor: User) -> bool:
    """Import engine images and change the engine catalog."""
    return actor.is_platform_admin
