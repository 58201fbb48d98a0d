"""Deployment tasks. They run on the queue of the node whose Docker engine they drive, take ids, and only
call :mod:`appliance.deployments.node`, where the decisions are; the beat's run on the shared queue.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from appliance.deployments import model_setup, node, ondemand, reconcile
from appliance.gpus.choices import node_queue


@shared_task(name="deployments.launch_instance", ignore_result=True, acks_late=True)
def launch_instance(instance_id: int) -> str:
    return node.launch(instance_id)


@shared_task(name="deployments.check_health", ignore_result=True)
def check_health(instance_id: int) -> str:
    return node.check_health(instance_id)


@shared_task(name="deployments.create_model", ignore_result=True, acks_late=True)
def create_model(instance_id: int, token: str) -> str:
    """Create the engine's model through its API (Ollama); see model_setup.py for the claims."""
    return model_setup.create_engine_model(instance_id, token)


@shared_task(name="deployments.stop_instance", ignore_result=True, acks_late=True)
def stop_instance(instance_id: int) -> str:
    return node.stop(instance_id)


@shared_task(name="deployments.reconcile_node", ignore_result=True)
def reconcile_node(node_name: str) -> str:
    return node.reconcile_node(node_name)


@shared_task(name="deployments.reconcile_all", ignore_result=True)
def reconcile_all() -> int:
    """Beat: queue a reconciliation on every node that answers, and restart what is due."""
    return reconcile.reconcile_everywhere()


@shared_task(name="deployments.stop_idle", ignore_result=True)
def stop_idle() -> list[int]:
    """Beat: stop the on-demand deployments idle past their timeout. Each row is claimed by a
    conditional UPDATE, so two checks at once (or a request waking it) never stop it twice."""
    return ondemand.stop_idle_deployments()


@shared_task(name="deployments.tail_logs", ignore_result=True)
def tail_logs(instance_id: int, lines: int, reply_key: str) -> None:
    node.tail_logs(instance_id, lines, reply_key)


@worker_ready.connect
def _report_on_start(sender: Any = None, **_: Any) -> None:
    """A node's worker reports its images and reconciles as soon as it is up, not at the next beat."""
    queues = {q.name for q in sender.app.amqp.queues.values()} if sender is not None else set()
    if node_queue(settings.NODE_NAME) in queues:
        reconcile_node.apply_async(args=(settings.NODE_NAME,), queue=node_queue(settings.NODE_NAME), countdown=2)
