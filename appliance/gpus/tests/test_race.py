"""Racing assignments on real MariaDB: one connection per thread, real row locks, no half-done state.

Transactional tests, so each thread's transaction commits for real and the others see it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from rest_framework.test import APIClient

from appliance.accounts.models import Department
from appliance.audit.models import AuditChainHead, AuditRecord
from appliance.audit.services import verify_chain
from appliance.core.exceptions import ServiceError
from appliance.gpus import services
from appliance.gpus.models import GpuUnit
from conftest import make_department

from .conftest import MakeNode, units_of

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 20


def _race(work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..19) in 20 threads released together; returns each result or exception."""
    results: list[Any] = [None] * THREADS
    barrier = threading.Barrier(THREADS)

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = work(n)
        except BaseException as exc:
            results[n] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racing request hung"
    return results


@pytest.fixture
def pools(personas: dict, departments: dict) -> list[Department]:
    AuditChainHead.objects.get_or_create(id=1)  # the migration's row, removed by the transactional flush
    return [departments["eng"], departments["fin"], make_department("ops", "运维部"), make_department("hr", "人事部")]


def test_twenty_requests_for_the_same_units_have_exactly_one_winner(
    make_node: MakeNode, personas: dict, pools: list[Department]
) -> None:
    unit_ids = [unit.pk for unit in units_of(make_node("gpu-01", "4x H100 80GB"))]
    audit_before = AuditRecord.objects.count()

    def request(n: int) -> Any:
        client = APIClient()
        client.force_authenticate(personas["root"])
        body = {"units": unit_ids, "department": pools[n % len(pools)].pk}
        return client.post("/api/v1/gpu-units/assign/", body, format="json")

    responses = _race(request)

    statuses = sorted(getattr(r, "status_code", repr(r)) for r in responses)
    assert statuses == [200] + [409] * (THREADS - 1), statuses
    [winner] = [n for n, r in enumerate(responses) if r.status_code == 200]
    losers = [r.json()["error"]["code"] for r in responses if r.status_code == 409]
    assert set(losers) == {"assigned"}
    departments = set(GpuUnit.objects.filter(pk__in=unit_ids).values_list("department_id", flat=True))
    assert departments == {pools[winner % len(pools)].pk}  # every unit went to the one winner
    assert AuditRecord.objects.filter(action="gpu_unit.assign").count() == len(unit_ids)
    assert AuditRecord.objects.count() == audit_before + len(unit_ids)
    assert verify_chain().ok


def test_overlapping_requests_under_quota_never_half_apply(
    make_node: MakeNode, personas: dict, pools: list[Department]
) -> None:
    """Requests for overlapping pairs into quota-limited pools: all-or-nothing, no deadlock, no overrun."""
    units = [unit.pk for unit in units_of(make_node("gpu-01", "8x RTX 4090 24GB"))]
    for dept in pools:
        services.set_quota(personas["root"], dept.pk, max_units=2, max_memory_gib=None)
    wanted = {n: ([units[n % 8], units[(n + 3) % 8]], pools[n % len(pools)]) for n in range(THREADS)}

    results = _race(lambda n: services.assign_units(personas["root"], *(wanted[n][0], wanted[n][1].pk)))

    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, ServiceError)]
    assert unexpected == []  # above all: no deadlock errors and no lock wait timeouts
    won = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
    assert won, "somebody must win"
    pool_of = dict(GpuUnit.objects.filter(pk__in=units).values_list("pk", "department_id"))
    for n in won:
        assert {pool_of[pk] for pk in wanted[n][0]} == {wanted[n][1].pk}
    claimed = [pk for n in won for pk in wanted[n][0]]
    assert len(claimed) == len(set(claimed))  # one winner per unit
    assert sorted(pk for pk, dept in pool_of.items() if dept is not None) == sorted(claimed)
    for dept in pools:
        assert services.usage(dept.pk)[0] <= 2
    assert AuditRecord.objects.filter(action="gpu_unit.assign").count() == len(claimed)
    assert verify_chain().ok
