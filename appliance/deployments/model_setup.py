"""Creating an engine's model through its API once the engine answers (Ollama: push the GGUF, create it).

The node's health check sees NO_MODEL and claims the work with a token on the instance row
(`lifecycle.claim_model_creation`), then queues it. The worker swaps that token for its own as it starts,
so a second delivery of the same message finds the token changed and exits; while it works it refreshes
`model_claimed_at`, and a claim silent for the launch grace (its worker died) is taken over by the next
health check. The engine's own steps are idempotent too (`Engine.create_model`), so a take-over finishes
what the dead worker began. Each step is an event of the deployment; a refusal fails it with the
engine's own message.
"""

from __future__ import annotations

import os
import time

import httpx
from django.conf import settings

from appliance.deployments import lifecycle, node
from appliance.deployments.containers import engine_request
from appliance.deployments.models import Instance
from appliance.engines import EngineRequest, ModelCreateError, engine_for

# Reading a large GGUF's header, or writing a manifest, may keep the engine silent for a while.
TIMEOUT = httpx.Timeout(300.0, connect=5.0)


class Superseded(Exception):
    """The instance stopped, failed, or another worker took the work over: stop without a word."""


class Reporter:
    """`appliance.engines.Progress` for one claimed instance: events, and a throttled heartbeat."""

    def __init__(self, inst: Instance, token: str) -> None:
        self.instance_id, self.deployment_id, self.token = inst.pk, inst.deployment_id, token
        self.beat_every = max(1.0, settings.APPLIANCE_LAUNCH_GRACE_SECONDS / 4)
        self.last_beat = time.monotonic()

    def event(self, text: str) -> None:
        self._beat()
        lifecycle.model_event(self.deployment_id, text)

    def alive(self) -> None:
        if time.monotonic() - self.last_beat >= self.beat_every:
            self._beat()

    def _beat(self) -> None:
        self.last_beat = time.monotonic()
        if not lifecycle.model_work_alive(self.instance_id, self.token):
            raise Superseded


def model_file(req: EngineRequest, node_name: str) -> str:
    if req.models_dir is None:
        raise ModelCreateError(
            f"APPLIANCE_MODELS_DIR is not set on node {node_name}: {req.engine} gets its model file from there"
        )
    return os.path.join(req.models_dir, req.model_path)


def create_engine_model(instance_id: int, queued_token: str) -> str:
    token = lifecycle.start_model_creation(instance_id, queued_token)
    if token is None:
        return "not claimed (another delivery has it, or the instance moved on)"
    node.fault_point("model_claimed")
    inst = Instance.objects.select_related("deployment", "node").get(pk=instance_id)
    engine = engine_for(inst.deployment.engine, inst.deployment.image)
    reporter = Reporter(inst, token)
    try:
        req = engine_request(inst)
        with httpx.Client(timeout=TIMEOUT) as client:
            engine.create_model(node.engine_url(inst), client, req, model_file(req, inst.node.name), reporter)
        reporter.event(f"{req.served_model_name} created in {engine.name}")
    except Superseded:
        return "superseded"
    except ModelCreateError as exc:
        lifecycle.mark_failed(instance_id, f"{engine.name} could not create {inst.deployment.served_model_name}: {exc}")
        return "failed"
    return "created"
