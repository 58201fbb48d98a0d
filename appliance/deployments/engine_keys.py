"""Each deployment's engine key: the Bearer token its vLLM or llama.cpp container requires.

Derived, not stored: HMAC-SHA256 of the deployment's id under ``APPLIANCE_ENGINE_KEY_SECRET``
(``…_FILE`` for a file; unset, a key derived from ``CONSOLE_SECRET_KEY``). So the database holds no
engine key to leak or to expose through the API, every web process, worker and node agent computes
the same key without a lookup, and rotating the secret (then restarting the deployments) replaces
every key at once. The key reaches the engine in its container's environment, and the gateway, the
chat portal and the health checks send it as ``Authorization: Bearer``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from django.conf import settings

_CONTEXT = b"appliance engine key v1"


def _secret() -> bytes:
    configured = settings.APPLIANCE_ENGINE_KEY_SECRET
    if configured:
        return configured.encode()
    # A key of its own, so an engine key never equals anything else signed with SECRET_KEY.
    return hmac.new(settings.SECRET_KEY.encode(), _CONTEXT, hashlib.sha256).digest()


def engine_key(deployment_id: int) -> str:
    message = f"{settings.CONSOLE_ID}:{deployment_id}".encode()
    digest = hmac.new(_secret(), message, hashlib.sha256).digest()
    return "ek_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def headers(deployment_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {engine_key(deployment_id)}"}
