"""Human labels for audit action codes and target types; pages show the label and keep the code on hover.

The codes are stable identifiers (filters, exports and the API use them); only pages translate them.
An action is ``<object>.<verb>`` (``deployment.running`` names the state the deployment reached);
an unknown code is shown as it is rather than guessed at.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

OBJECTS: dict[str, Promise] = {
    "login": _("Login"),
    "user": _("User"),
    "department": _("Department"),
    "api_key": _("API key"),
    "deployment": _("Deployment"),
    "profile": _("Profile"),
    "catalog": _("Catalog model"),
    "image": _("Image"),
    "engine_image": _("Engine image"),
    "container": _("Container"),
    "node": _("Node"),
    "gpu": _("GPU"),
    "gpu_unit": _("GPU unit"),
    "gpu_quota": _("GPU quota"),
    "quota": _("Token quota"),
    "chat": _("Chat"),
}
VERBS: dict[str, Promise] = {
    "create": _("created"),
    "update": _("changed"),
    "delete": _("deleted"),
    "disable": _("disabled"),
    "password_change": _("password changed"),
    "revoke": _("revoked"),
    "archive": _("archived"),
    "set": _("set"),
    "change": _("changed"),
    "reset": _("reset to default"),
    "success": _("succeeded"),
    "failure": _("failed"),
    "blocked": _("blocked"),
    "register": _("registered"),
    "ready": _("ready"),
    "unreachable": _("unreachable"),
    "name": _("renamed"),
    "maintenance_on": _("maintenance started"),
    "maintenance_off": _("maintenance ended"),
    "inventory_error": _("inventory failed"),
    "inventory_ok": _("inventory recovered"),
    "assign": _("assigned"),
    "move": _("moved"),
    "release": _("released"),
    "claim_revoke": _("claim revoked"),
    "discover": _("discovered"),
    "return": _("returned"),
    "missing": _("missing"),
    "orphan_removed": _("orphan removed"),
    "import": _("import queued"),
    "import.done": _("import done"),
    "import.failed": _("import failed"),
    "import.running": _("import running"),
    "conversation.delete": _("conversation deleted"),
    "restart_requested": _("restart requested"),
    "stop_requested": _("stop requested"),
}
TARGETS: dict[str, Promise] = {
    "accounts.user": _("User"),
    "accounts.department": _("Department"),
    "accounts.apikey": _("API key"),
    "deployments.deployment": _("Deployment"),
    "deployments.imageimport": _("Image import"),
    "deployments.engineimage": _("Engine image"),
    # Since the images app has its own label (records before keep the names above).
    "images.imageimport": _("Image import"),
    "images.engineimage": _("Engine image"),
    "catalog.profile": _("Profile"),
    "catalog.profileversion": _("Profile"),
    "catalog.custommodel": _("Catalog model"),
    "gpus.node": _("Node"),
    "gpus.gpu": _("GPU"),
    "gpus.gpuunit": _("GPU unit"),
    "gpus.gpuquota": _("GPU quota"),
    "quotas.quota": _("Token quota"),
    "chat.conversation": _("Conversation"),
}
VIA: dict[str, Promise] = {
    "web": _("web page"),
    "api": _("API"),
    "task": _("background task"),
    "command": _("command line"),
    "admin": _("Django admin"),
    "ws": _("WebSocket"),
}


def via_label(via: str) -> str:
    return str(VIA[via]) if via in VIA else via


def actor_label(actor_name: str) -> str:
    """Records without a person (``system:<via>``) read as "system (command line)"."""
    if actor_name.startswith("system:"):
        return _("system (%(via)s)") % {"via": via_label(actor_name.partition(":")[2])}
    return actor_name


def _state_label(code: str) -> str | None:
    from appliance.deployments.choices import State

    return str(State(code).label) if code in State.values else None


def action_label(code: str) -> str:
    """``deployment.running`` → 部署 · 运行中; an unknown code is returned unchanged."""
    obj, _dot, verb = code.partition(".")
    if obj not in OBJECTS:
        return code
    verb_label = _state_label(verb) if obj == "deployment" and verb not in VERBS else None
    if verb_label is None and verb not in VERBS:
        return code
    return f"{OBJECTS[obj]} · {verb_label or VERBS[verb]}"


def target_label(target_type: str) -> str:
    return str(TARGETS[target_type]) if target_type in TARGETS else target_type
