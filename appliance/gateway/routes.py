"""What admission resolves a key and a model to: who calls, where the model runs, what limits apply.

Plain data, apart from admission (which builds it) and metering (which reserves against it): both import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.deployments.routing import Endpoint
from appliance.quotas.limiter import QuotaScope
from appliance.safety.matcher import Matcher


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    department_id: int | None
    api_key_id: int


@dataclass(frozen=True)
class Route:
    principal: Principal
    endpoints: tuple[Endpoint, ...]
    scopes: tuple[QuotaScope, ...]
    # No endpoint yet: the on-demand deployments a request starts and waits for (gateway.starting).
    starting: tuple[int, ...] = ()
    safety: Matcher | None = None  # the content-safety rules of the caller's department; None: none apply
    ai_label: bool = True  # answers carry the X-AI-Generated header (department setting)
