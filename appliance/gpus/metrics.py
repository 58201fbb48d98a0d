"""GPU metrics history: raw samples kept 1 hour, 1-minute averages 7 days, 1-hour averages 90 days.

Each inventory stores one raw sample per GPU. A periodic task averages complete minutes of raw
samples into 1-minute points and complete hours of those into 1-hour points, and another prunes
each level past its retention. Inserts ignore conflicts on (gpu, resolution, at), so a rollup that
runs twice, or two that overlap, write each point once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, Max, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from appliance.core.exceptions import InvalidInput
from appliance.gpus.choices import RESOLUTION_SECONDS, RETENTION, Resolution
from appliance.gpus.models import Gpu, GpuMetric

READINGS = ("memory_used", "util_gpu", "util_memory", "temperature_c", "power_draw_w")
MAX_POINTS = 2000
# Samples may arrive a little late (a slow node, a queued task): roll up a bucket only this long after it ends.
_ROLLUP_GRACE = {Resolution.MINUTE: timedelta(seconds=30), Resolution.HOUR: timedelta(minutes=2)}
_SOURCE = {Resolution.MINUTE: Resolution.RAW, Resolution.HOUR: Resolution.MINUTE}
_TRUNC_KIND = {Resolution.MINUTE: "minute", Resolution.HOUR: "hour"}


def record_samples(gpus: Iterable[Gpu], at: datetime) -> int:
    """One raw point per GPU from its current readings; re-recording the same instant is a no-op."""
    rows = [
        GpuMetric(gpu=gpu, resolution=Resolution.RAW, at=at, **{name: getattr(gpu, name) for name in READINGS})
        for gpu in gpus
    ]
    GpuMetric.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def rollup(target: str, now: datetime | None = None) -> int:
    """Average complete buckets of the level below into ``target`` (1m or 1h); returns points written."""
    now = now or timezone.now()
    source, seconds = _SOURCE[Resolution(target)], RESOLUTION_SECONDS[Resolution(target)]
    end = _floor(now - _ROLLUP_GRACE[Resolution(target)], seconds)
    last = GpuMetric.objects.filter(resolution=target).aggregate(last=Max("at"))["last"]
    start = max(last + timedelta(seconds=seconds) if last else end - RETENTION[source], now - RETENTION[source])
    rows = (
        GpuMetric.objects.filter(resolution=source, at__gte=start, at__lt=end)
        .annotate(bucket=Trunc("at", _TRUNC_KIND[Resolution(target)], tzinfo=UTC))
        .values("gpu_id", "bucket")
        .annotate(n=Sum("samples"), **{name: Avg(name) for name in READINGS})
        .order_by()
    )
    points = [
        GpuMetric(
            gpu_id=row["gpu_id"],
            resolution=target,
            at=row["bucket"],
            samples=row["n"],
            memory_used=None if row["memory_used"] is None else round(row["memory_used"]),
            **{name: row[name] for name in READINGS if name != "memory_used"},
        )
        for row in rows
    ]
    GpuMetric.objects.bulk_create(points, ignore_conflicts=True, batch_size=1000)
    return len(points)


def prune(now: datetime | None = None) -> dict[str, int]:
    """Delete each level's points older than its retention; returns rows deleted per level."""
    now = now or timezone.now()
    deleted = {}
    for resolution, keep in RETENTION.items():
        count, _ = GpuMetric.objects.filter(resolution=resolution, at__lt=now - keep).delete()
        deleted[str(resolution)] = count
    return deleted


@dataclass(frozen=True)
class History:
    resolution: str
    step: int
    since: datetime
    until: datetime
    points: list[dict[str, Any]]


def choose_resolution(since: datetime, step: int, now: datetime) -> str:
    """The coarsest level still holding ``since`` whose points are no wider than ``step`` (fewest rows read)."""
    levels = (Resolution.RAW, Resolution.MINUTE, Resolution.HOUR)
    # A minute of grace: "the last hour" asked a moment ago must still be served from raw samples.
    covering = [level for level in levels if since >= now - RETENTION[level] - timedelta(minutes=1)]
    covering = covering or [Resolution.HOUR]
    fitting = [level for level in covering if RESOLUTION_SECONDS[level] <= step]
    return fitting[-1] if fitting else covering[0]


def history(gpu_id: int, since: datetime, until: datetime, step: int | None = None) -> History:
    """Points of one GPU between ``since`` and ``until``, averaged into ``step``-second buckets."""
    now = timezone.now()
    if until <= since:
        raise InvalidInput("'until' must be after 'since'.", code="invalid_range")
    span = (until - since).total_seconds()
    step = step or max(10, int(span // 300))
    if step < 1 or span / step > MAX_POINTS:
        raise InvalidInput(f"At most {MAX_POINTS} points per request; raise 'step'.", code="too_many_points")
    resolution = choose_resolution(since, step, now)
    rows = GpuMetric.objects.filter(gpu_id=gpu_id, resolution=resolution, at__gte=since, at__lt=until)
    buckets: dict[datetime, list[GpuMetric]] = defaultdict(list)
    for row in rows.order_by("at"):
        buckets[_floor(row.at, step)].append(row)
    points = [_average(at, group) for at, group in sorted(buckets.items())]
    return History(resolution=resolution, step=step, since=since, until=until, points=points)


def _average(at: datetime, group: list[GpuMetric]) -> dict[str, Any]:
    point: dict[str, Any] = {"at": at.isoformat()}
    for name in READINGS:
        values = [getattr(row, name) for row in group if getattr(row, name) is not None]
        point[name] = round(sum(values) / len(values), 2) if values else None
    return point
