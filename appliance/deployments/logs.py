"""Container logs, read by the node's worker (only it talks to that node's Docker engine) and
handed back to the web process through a short-lived Redis list.
"""

from __future__ import annotations

import json
import uuid

import redis
from django.conf import settings

from appliance.core.exceptions import ServiceError
from appliance.core.tasks import task_named
from appliance.deployments.models import Deployment
from appliance.gpus.choices import node_queue

REPLY_TTL_SECONDS = 30

TAIL_LOGS = "deployments.tail_logs"


class LogsUnavailable(ServiceError):
    status_code = 504
    code = "logs_unavailable"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.APPLIANCE_LOGS_WAIT_SECONDS + 2)


def fetch(dep: Deployment, lines: int) -> list[dict[str, object]]:
    """The last ``lines`` of every instance's container, asked of each node's worker in parallel."""
    client = _redis()
    asks = []
    for inst in dep.instances.select_related("node"):
        key = f"appliance:logs:{uuid.uuid4().hex}"
        task_named(TAIL_LOGS).apply_async(
            args=(
                inst.pk,
                lines,
                key,
            ),
            queue=node_queue(inst.node.name),
            expires=settings.APPLIANCE_LOGS_WAIT_SECONDS,
        )
        asks.append((inst, key))
    result = []
    for inst, key in asks:
        reply = client.blpop([key], timeout=settings.APPLIANCE_LOGS_WAIT_SECONDS)
        if reply is None:
            raise LogsUnavailable(
                f"The worker of node {inst.node.name} did not answer within {settings.APPLIANCE_LOGS_WAIT_SECONDS} s."
            )
        result.append(
            {
                "instance": inst.pk,
                "node": inst.node.name,
                "container": inst.container_name,
                "text": json.loads(reply[1])["text"],
            }
        )
    return result


def reply(key: str, text: str) -> None:
    client = _redis()
    client.rpush(key, json.dumps({"text": text}))
    client.expire(key, REPLY_TTL_SECONDS)
