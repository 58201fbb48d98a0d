"""What a node's worker decides about the containers it runs: launching one (off a busy port if need be),
probing it until it serves or its health timeout passes, stopping it, reconciling the node, tailing logs.

Every function takes ids and is idempotent: a container is always looked up by its fixed name before one
is made. The Celery tasks in ``tasks.py`` only call these; the follow-up tasks queued here (the next health
probe, the model's creation) are named, not imported, as ``appliance.core.tasks`` explains.
"""

from __future__ import annotations

import logging
import socket
import time

import httpx
from django.conf import settings
from django.utils import timezone

from appliance.core.tasks import task_named
from appliance.deployments import docker_driver, engine_keys, lifecycle, logs
from appliance.deployments.choices import Role, State
from appliance.deployments.containers import container_kwargs
from appliance.deployments.models import Instance
from appliance.deployments.reconcile import CHECK_HEALTH, reconcile
from appliance.deployments.routing import default_template_cost
from appliance.engines import Engine, HealthState, engine_for
from appliance.engines.base import connect_host
from appliance.engines.prompt import TemplateCost
from appliance.gpus.choices import node_queue
from appliance.gpus.models import Node
from appliance.images.catalog import record_node_images

log = logging.getLogger(__name__)

CREATE_MODEL = "deployments.create_model"


def fault_point(name: str) -> None:
    """Fault injection for tests of worker death: APPLIANCE_FAULT_SLEEP='after_create:30' sleeps there
    (points: before_create, after_create, model_claimed)."""
    spec = settings.APPLIANCE_FAULT_SLEEP
    if spec and spec.split(":")[0] == name:
        time.sleep(float(spec.split(":")[1]))


def port_is_free(address: str, port: int) -> bool:
    probe = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    # As docker-proxy binds (Go's listeners set SO_REUSEADDR): a stopped engine's connections lingering
    # in TIME_WAIT do not make its port busy; only a listener does.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((address, port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def engine_url(inst: Instance) -> str:
    """Where this node's worker reaches the instance's API: the host port on the engine bind address."""
    return f"http://{connect_host(settings.APPLIANCE_ENGINE_BIND_ADDRESS)}:{inst.host_port}"


def launch(instance_id: int) -> str:
    inst = lifecycle.claim_for_launch(instance_id)
    if inst is None:
        return "not scheduled (already launched, stopped or gone)"
    try:
        move_off_busy_port(inst)
        kwargs = container_kwargs(inst)
        if not docker_driver.image_present(kwargs["image"]):
            lifecycle.mark_failed(instance_id, f"image {kwargs['image']} is not on node {inst.node.name}; import it")
            return "image missing"
        fault_point("before_create")
        container, created = docker_driver.ensure_created(kwargs)
        fault_point("after_create")
        docker_driver.start(container)
    except docker_driver.DockerUnavailable as exc:
        lifecycle.mark_failed(instance_id, f"Docker engine on {inst.node.name} unreachable: {exc}")
        return "docker unavailable"
    except Exception as exc:  # the Docker API's errors carry the reason a person needs (port in use, …)
        log.exception("launch of instance %s failed", instance_id)
        lifecycle.mark_failed(
            instance_id, f"container failed to start: {_explain(exc)}", logs=docker_driver.tail(inst.container_name)
        )
        return "failed"
    lifecycle.mark_started(instance_id, container.id, adopted=not created)
    if inst.role == Role.RAY_WORKER:
        return "created" if created else "adopted existing container"  # the head's health covers it
    task_named(CHECK_HEALTH).apply_async(args=(instance_id,), queue=node_queue(inst.node.name), countdown=1)
    return "created" if created else "adopted existing container"


def move_off_busy_port(inst: Instance) -> None:
    """A process outside the console may hold the leased port: take the next free one before creating."""
    if inst.host_port is None or docker_driver.find(inst.container_name) is not None:
        return  # Ray workers publish nothing; an existing container keeps the port it was made with
    if port_is_free(settings.APPLIANCE_ENGINE_BIND_ADDRESS, inst.host_port):
        return
    lifecycle.move_port(inst.pk, inst.host_port)
    inst.refresh_from_db()


def _explain(exc: Exception) -> str:
    text = str(exc)
    if "port is already allocated" in text or "address already in use" in text:
        return f"host port clash: {text}"
    return text


def measured_template(engine: Engine, url: str, client: httpx.Client, model: str) -> TemplateCost | None:
    """The chat template's cost as the engine bills it, so reservations never count less (None: unknown)."""
    cost = engine.template_cost(url, client, model)
    if cost is not None and not engine.counts_cached_prompt:
        # Its counts leave cached prefixes out: never go below the unmeasured allowance.
        floor = default_template_cost()
        cost = TemplateCost(max(cost.template, floor.template), max(cost.per_message, floor.per_message))
    return cost


def check_health(instance_id: int) -> str:
    inst = Instance.objects.select_related("deployment", "node").filter(pk=instance_id).first()
    if inst is None or inst.state != State.STARTING:
        return "not starting"
    observed = docker_driver.find(inst.container_name)
    if observed is None or observed.status in ("exited", "dead"):
        code = observed.attrs.get("State", {}).get("ExitCode") if observed is not None else None
        lifecycle.mark_failed(
            instance_id,
            "container exited while loading the model",
            exit_code=code,
            logs=docker_driver.tail(inst.container_name),
        )
        return "exited"
    lifecycle.health_checked(instance_id)
    engine = engine_for(inst.deployment.engine, inst.deployment.image)
    url = engine_url(inst)
    model = inst.deployment.served_model_name
    # The engine's key on every probe: vLLM's /v1/models wants it, and the template is measured by a chat.
    headers = engine_keys.headers(inst.deployment_id)
    with httpx.Client(timeout=settings.APPLIANCE_HEALTH_PROBE_TIMEOUT_SECONDS, headers=headers) as client:
        result = engine.health_check(url, client, expect_model=model)
        cost = measured_template(engine, url, client, model) if result.ok else None
    elapsed = (timezone.now() - (inst.started_at or timezone.now())).total_seconds()
    if result.state is HealthState.NO_MODEL and (token := lifecycle.claim_model_creation(instance_id)):
        task_named(CREATE_MODEL).apply_async(args=(instance_id, token), queue=node_queue(inst.node.name))
    if result.ok:
        lifecycle.mark_healthy(instance_id, f"healthy after {elapsed:.0f} s: {result.detail}", template=cost)
        return "healthy"
    if elapsed > settings.APPLIANCE_HEALTH_TIMEOUT_SECONDS:
        lifecycle.mark_failed(
            instance_id,
            f"not healthy after {elapsed:.0f} s: {result.detail}",
            logs=docker_driver.tail(inst.container_name),
        )
        return "timed out"
    lifecycle.note_progress(
        instance_id, f"loading for {elapsed:.0f} s: {result.detail}", docker_driver.tail(inst.container_name, 20)
    )
    task_named(CHECK_HEALTH).apply_async(args=(instance_id,), queue=node_queue(inst.node.name), countdown=2)
    return "waiting"


def stop(instance_id: int) -> str:
    inst = Instance.objects.filter(pk=instance_id).first()
    if inst is None:
        return "gone"
    code = docker_driver.stop_and_remove(inst.container_name, settings.APPLIANCE_STOP_GRACE_SECONDS)
    lifecycle.mark_stopped(instance_id, code)
    return "stopped"


def reconcile_node(node_name: str) -> str:
    if node_name != settings.NODE_NAME:
        return "wrong node"
    node = Node.objects.filter(name=node_name).first()
    if node is None:
        return "unknown node"
    try:
        record_node_images(node, docker_driver.local_images())
        report = reconcile(node)
    except docker_driver.DockerUnavailable as exc:
        return f"docker unavailable: {exc}"
    return report


def tail_logs(instance_id: int, lines: int, reply_key: str) -> None:
    inst = Instance.objects.filter(pk=instance_id).first()
    text = docker_driver.tail(inst.container_name, lines) if inst is not None else ""
    logs.reply(reply_key, text or (inst.last_logs if inst is not None else ""))
