"""Metrics history: rollups to 1-minute and 1-hour averages, pruning by retention, range queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from appliance.core.exceptions import InvalidInput
from appliance.gpus import metrics
from appliance.gpus.choices import Resolution
from appliance.gpus.models import Gpu, GpuMetric

from .conftest import MakeNode

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 10, 30, 45, tzinfo=UTC)


@pytest.fixture
def gpu(make_node: MakeNode) -> Gpu:
    make_node("gpu-01", "1x RTX 4090 24GB")
    GpuMetric.objects.all().delete()
    return Gpu.objects.get()


def _raw(gpu: Gpu, at: datetime, util: float, memory: int = 1000) -> None:
    GpuMetric.objects.create(gpu=gpu, resolution=Resolution.RAW, at=at, util_gpu=util, memory_used=memory)


def test_rollup_averages_complete_minutes_once(gpu: Gpu) -> None:
    minute = datetime(2026, 3, 2, 10, 28, tzinfo=UTC)
    for second, util in ((0, 10), (20, 20), (40, 60)):
        _raw(gpu, minute + timedelta(seconds=second), util, memory=100 * util)
    _raw(gpu, minute + timedelta(minutes=2, seconds=30), 99)  # 10:30, not complete yet

    assert metrics.rollup(Resolution.MINUTE, now=NOW) == 1
    assert metrics.rollup(Resolution.MINUTE, now=NOW) == 0  # nothing new to write

    point = GpuMetric.objects.get(resolution=Resolution.MINUTE)
    assert (point.at, point.samples, point.util_gpu, point.memory_used) == (minute, 3, 30.0, 3000)


def test_rollup_to_hours_from_minutes(gpu: Gpu) -> None:
    hour = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for minute, util in ((0, 40), (30, 80)):
        GpuMetric.objects.create(
            gpu=gpu, resolution=Resolution.MINUTE, at=hour + timedelta(minutes=minute), util_gpu=util, samples=6
        )
    assert metrics.rollup(Resolution.HOUR, now=NOW) == 1
    point = GpuMetric.objects.get(resolution=Resolution.HOUR)
    assert (point.at, point.samples, point.util_gpu) == (hour, 12, 60.0)


def test_prune_keeps_each_level_for_its_retention(gpu: Gpu) -> None:
    for resolution, age in (
        (Resolution.RAW, timedelta(minutes=59)),
        (Resolution.RAW, timedelta(minutes=61)),
        (Resolution.MINUTE, timedelta(days=6)),
        (Resolution.MINUTE, timedelta(days=8)),
        (Resolution.HOUR, timedelta(days=89)),
        (Resolution.HOUR, timedelta(days=91)),
    ):
        GpuMetric.objects.create(gpu=gpu, resolution=resolution, at=NOW - age)

    assert metrics.prune(now=NOW) == {"raw": 1, "1m": 1, "1h": 1}
    assert GpuMetric.objects.count() == 3


@pytest.mark.parametrize(
    ("age", "step", "expected"),
    [
        (timedelta(minutes=30), 10, Resolution.RAW),
        (timedelta(minutes=30), 60, Resolution.MINUTE),
        (timedelta(hours=3), 10, Resolution.MINUTE),  # raw no longer holds it
        (timedelta(days=2), 3600, Resolution.HOUR),
        (timedelta(days=30), 60, Resolution.HOUR),
    ],
)
def test_resolution_follows_age_and_step(age: timedelta, step: int, expected: str) -> None:
    assert metrics.choose_resolution(NOW - age, step, NOW) == expected


def test_history_buckets_points_by_step(gpu: Gpu) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    start -= timedelta(seconds=start.second % 20)
    for offset, util in ((0, 10), (10, 30), (20, 50)):
        _raw(gpu, start + timedelta(seconds=offset), util)

    result = metrics.history(gpu.pk, start, start + timedelta(minutes=1), step=20)

    assert result.resolution == Resolution.RAW
    assert [(p["util_gpu"], p["temperature_c"]) for p in result.points] == [(20.0, None), (50.0, None)]


def test_history_refuses_too_many_points_and_reversed_ranges(gpu: Gpu) -> None:
    with pytest.raises(InvalidInput):
        metrics.history(gpu.pk, NOW - timedelta(days=30), NOW, step=60)
    with pytest.raises(InvalidInput):
        metrics.history(gpu.pk, NOW, NOW - timedelta(hours=1))
