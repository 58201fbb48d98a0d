"""The node agent: what a worker consuming its node's queue does besides running tasks.

When the worker is ready, and only if it consumes ``node.<APPLIANCE_NODE_NAME>``, a daemon thread in
the worker's main process registers the node (host facts), then heartbeats every
APPLIANCE_HEARTBEAT_SECONDS and queues an inventory run on the node's queue every
APPLIANCE_INVENTORY_INTERVAL_SECONDS. Living in the worker process, the heartbeats stop when the
worker does, and the ``gpus.reconcile_nodes`` beat task marks the node unreachable.

The heartbeat is written directly rather than through the queue so that a long task occupying
the pool cannot make a healthy node look dead. The thread opens a database connection per tick
and closes it again, so pool processes forked later never inherit an open connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)


class NodeAgent(threading.Thread):
    def __init__(self, node_name: str) -> None:
        super().__init__(name=f"node-agent-{node_name}", daemon=True)
        self.node_name = node_name
        self.node_id: int | None = None
        self._stopping = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.join(timeout)

    def run(self) -> None:
        from appliance.core.context import RequestContext, new_request_id, set_context

        set_context(RequestContext(request_id=new_request_id(), via="task"))
        heartbeat_every = settings.APPLIANCE_HEARTBEAT_SECONDS
        inventory_every = settings.APPLIANCE_INVENTORY_INTERVAL_SECONDS
        next_beat = next_inventory = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self._tick(self._heartbeat)
                next_beat = now + heartbeat_every
            if now >= next_inventory and self.node_id is not None:
                self._tick(self._queue_inventory)
                next_inventory = now + inventory_every
            self._stopping.wait(max(0.05, min(next_beat, next_inventory) - time.monotonic()))

    def _tick(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:
            # The database or broker being away must not kill the agent: it retries on the next tick.
            log.exception("node agent %s: %s failed", self.node_name, step.__name__)
        finally:
            connection.close()

    def _heartbeat(self) -> None:
        from appliance.gpus import nodes
        from appliance.gpus.hostinfo import collect_host_facts

        # Registering again also covers a node row removed while the worker ran.
        if self.node_id is None or not nodes.heartbeat(self.node_id):
            self.node_id = nodes.register_node(self.node_name, collect_host_facts()).pk
            log.info("node %s registered (id %s)", self.node_name, self.node_id)

    def _queue_inventory(self) -> None:
        from appliance.gpus.models import Node
        from appliance.gpus.tasks import queue_collection

        queue_collection(Node(pk=self.node_id, name=self.node_name))


_agent: NodeAgent | None = None


def consumes_node_queue(consumer: Any, node_name: str) -> bool:
    from appliance.gpus.choices import node_queue

    queues = getattr(consumer.app.amqp.queues, "consume_from", None) or {}
    return node_queue(node_name) in queues


@worker_ready.connect
def start_agent(sender: Any = None, **_: Any) -> None:
    global _agent
    if sender is None or not consumes_node_queue(sender, settings.NODE_NAME):
        log.info("this worker does not consume node.%s: no node agent", settings.NODE_NAME)
        return
    _agent = NodeAgent(settings.NODE_NAME)
    _agent.start()


@worker_shutdown.connect
def stop_agent(**_: Any) -> None:
    global _agent
    if _agent is not None:
        _agent.stop()
        _agent = None
