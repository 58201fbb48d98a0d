"""Who may change GPUs and nodes. Which GPUs and nodes a user sees is ``restrict(user, VIEW)``."""

from __future__ import annotations

from appliance.accounts.models import User


def may_manage_gpus(actor: User) -> bool:
    """Assign GPUs to departments, set GPU quotas, put nodes into maintenance."""
    return actor.is_platform_admin
