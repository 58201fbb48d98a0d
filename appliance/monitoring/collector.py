"""Gauges read from the database and Redis at scrape time, in the process that answers /metrics.

They describe the appliance rather than one process (deployments, GPUs, nodes, queues), so they
are computed once per scrape instead of being kept in the multi-process files. Everything is read
in a handful of queries whose count does not grow with the data.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from appliance.accounts.models import Department
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment
from appliance.gpus.choices import PresenceState, UnitKind
from appliance.gpus.models import Gpu, GpuUnit, Node

TASK_FAILURES_KEY = "metrics:celery:task_failures"
Family = GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)


def note_task_failure(task_name: str) -> None:
    """Called from the Celery workers (any node): a counter in Redis, so every node's failures add up."""
    try:
        _redis().hincrby(TASK_FAILURES_KEY, task_name[:100], 1)
    except redis.RedisError:
        pass  # a metric must never turn a failed task into a crashed worker


def deployments() -> Iterator[Family]:
    family = GaugeMetricFamily("console_deployments", "Deployments by state.", labels=["state"])
    counts = dict(Deployment.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    for state in State.values:
        family.add_metric([state], counts.get(state, 0))
    yield family
    restarts = GaugeMetricFamily(
        "console_deployment_restarts", "Restarts since the deployment was last started.", labels=["deployment"]
    )
    for name, count in Deployment.objects.values_list("name", "restart_count"):
        restarts.add_metric([name], count)
    yield restarts


def _gpu_families() -> dict[str, GaugeMetricFamily]:
    labels = ["node", "gpu", "name"]
    return {
        "util_gpu": GaugeMetricFamily("console_gpu_utilization_ratio", "GPU busy fraction (0-1).", labels=labels),
        "memory_used": GaugeMetricFamily("console_gpu_memory_used_bytes", "GPU memory in use.", labels=labels),
        "memory_total": GaugeMetricFamily("console_gpu_memory_total_bytes", "GPU memory size.", labels=labels),
        "temperature_c": GaugeMetricFamily("console_gpu_temperature_celsius", "GPU temperature.", labels=labels),
        "power_draw_w": GaugeMetricFamily("console_gpu_power_watts", "GPU power draw.", labels=labels),
        "power_limit_w": GaugeMetricFamily("console_gpu_power_limit_watts", "GPU power limit.", labels=labels),
    }


def gpus() -> Iterator[Family]:
    families = _gpu_families()
    rows = Gpu.objects.filter(state=PresenceState.PRESENT).values("node__name", "index", "name", *families.keys())
    for row in rows:
        labels = [row["node__name"], str(row["index"]), row["name"]]
        for field, family in families.items():
            value = row[field]
            if value is not None:
                family.add_metric(labels, value / 100 if field == "util_gpu" else value)
    yield from families.values()
    yield from mig_slices()


def mig_slices() -> Iterator[Family]:
    labels = ["node", "gpu", "slice", "profile"]
    used = GaugeMetricFamily("console_mig_memory_used_bytes", "MIG slice memory in use.", labels=labels)
    total = GaugeMetricFamily("console_mig_memory_total_bytes", "MIG slice memory size.", labels=labels)
    rows = GpuUnit.objects.filter(kind=UnitKind.MIG, state=PresenceState.PRESENT).values(
        "gpu__node__name", "gpu__index", "gi_id", "profile", "memory_used", "memory_total"
    )
    for row in rows:
        key = [row["gpu__node__name"], str(row["gpu__index"]), str(row["gi_id"]), row["profile"]]
        if row["memory_used"] is not None:
            used.add_metric(key, row["memory_used"])
        if row["memory_total"] is not None:
            total.add_metric(key, row["memory_total"])
    yield used
    yield total


def nodes() -> Iterator[Family]:
    age = GaugeMetricFamily(
        "console_node_heartbeat_age_seconds", "Seconds since the node's last heartbeat.", labels=["node"]
    )
    state = GaugeMetricFamily("console_node_state", "1 for the node's current state.", labels=["node", "state"])
    now = time.time()
    for name, last, current in Node.objects.values_list("name", "last_heartbeat", "state"):
        if last is not None:
            age.add_metric([name], max(0.0, now - last.timestamp()))
        state.add_metric([name, current], 1)
    yield age
    yield state


def departments() -> Iterator[Family]:
    info = InfoMetricFamily("console_department", "Department id to code (join other series on it).", labels=[])
    for pk, code in Department.objects.values_list("pk", "code"):
        info.add_metric([], {"department": str(pk), "code": code})
    yield info


def disks() -> Iterator[Family]:
    free = GaugeMetricFamily(
        "console_disk_free_bytes", "Free space where the console keeps data.", labels=["directory"]
    )
    size = GaugeMetricFamily("console_disk_size_bytes", "Size of that file system.", labels=["directory"])
    for path in settings.APPLIANCE_METRICS_DISK_PATHS:
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        free.add_metric([path], usage.free)
        size.add_metric([path], usage.total)
    yield free
    yield size


def _queues() -> list[str]:
    return [settings.CELERY_TASK_DEFAULT_QUEUE, *(f"node.{n}" for n in Node.objects.values_list("name", flat=True))]


def celery() -> Iterator[Family]:
    length = GaugeMetricFamily("console_celery_queue_length", "Tasks waiting in a Celery queue.", labels=["queue"])
    failures = CounterMetricFamily("console_celery_task_failures", "Celery tasks that raised.", labels=["task"])
    up = GaugeMetricFamily("console_redis_up", "1 when the console reached Redis for this scrape.")
    try:
        client = _redis()
        queues = _queues()
        pipe = client.pipeline()
        for queue in queues:
            pipe.llen(queue)
        pipe.hgetall(TASK_FAILURES_KEY)
        *lengths, failed = pipe.execute()
    except redis.RedisError:
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    for queue, count in zip(queues, lengths, strict=True):
        length.add_metric([queue], count)
    for task, count in failed.items():
        failures.add_metric([task.decode()], int(count))
    yield from (up, length, failures)


def quotas() -> Iterator[Family]:
    from appliance.quotas.monitoring import quota_usage_ratios

    ratio = GaugeMetricFamily(
        "console_quota_usage_ratio", "Share of a department's token quota used.", labels=["department", "limit"]
    )
    for department_id, limit, value in quota_usage_ratios():
        ratio.add_metric([str(department_id), limit], value)
    yield ratio


class ApplianceCollector(Collector):
    def collect(self) -> Iterator[Any]:
        for part in (deployments, gpus, nodes, departments, disks, celery, quotas):
            yield from part()
