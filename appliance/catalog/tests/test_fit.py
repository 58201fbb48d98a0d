"""Fit checks: the pure decision over free units, the inventory it reads, and the API around it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import translation
from rest_framework.test import APIClient

from appliance.catalog.catalog import default_catalog
from appliance.catalog.choices import FitStatus
from appliance.catalog.fit import FreeUnit, HostNode, check_fit, gpu_model_matches
from appliance.catalog.inventory import free_nodes
from appliance.catalog.models import Profile
from appliance.catalog.seeds import SEED_PROFILES
from appliance.catalog.services import DEFAULT_SPEC
from appliance.catalog.specs import chat_defaults
from appliance.catalog.tests.conftest import MakeNode, give_pool
from appliance.gpus.choices import NodeState
from appliance.gpus.models import GpuUnit, Node, UnitClaim

Api = Callable[[str], APIClient]
SPECS = {
    seed["profile"]["slug"]: {**DEFAULT_SPEC, **seed["version"], "chat_defaults": chat_defaults(None)}
    for seed in SEED_PROFILES
}


def node(name: str, count: int, gpu: str, memory: float, ram: float | None = 512) -> HostNode:
    return HostNode(name, ram, tuple(FreeUnit(gpu, memory) for _ in range(count)))


def fit(slug: str, *nodes: HostNode) -> Any:
    with translation.override("en"):
        return check_fit(SPECS[slug], default_catalog(), nodes, where="the appliance")


@pytest.mark.parametrize(
    ("model", "name", "expected"),
    [
        ("H20", "NVIDIA H20 96GB", True),
        ("H20", "NVIDIA H200 141GB", False),
        ("RTX 4090", "NVIDIA GeForce RTX 4090", True),
        ("rtx 4090", "NVIDIA RTX 4090 24GB", True),
        ("RTX 4090", "NVIDIA RTX 4090D", False),
        ("", "anything", True),
    ],
)
def test_gpu_model_matching(model: str, name: str, expected: bool) -> None:
    assert gpu_model_matches(model, name) is expected


def test_fits_as_specified_on_its_own_hardware() -> None:
    # A real RTX 4090 reports 23.99 GiB: within the tolerance for a 24 GiB minimum.
    result = fit("basic-7b", node("gpu-01", 2, "NVIDIA GeForce RTX 4090", 23.99))
    assert result.status == FitStatus.FITS and result.changes == ()
    assert result.placement is not None and result.placement["nodes"] == ["gpu-01"]
    assert result.plan is not None and result.plan.tensor_parallel == 2


def test_flagship_fits_as_specified_on_two_h20_nodes() -> None:
    result = fit("flagship-671b", node("a", 8, "NVIDIA H20 96GB", 96), node("b", 8, "NVIDIA H20 96GB", 96))
    assert result.status == FitStatus.FITS
    assert result.plan is not None and result.plan.max_concurrent_sequences == 167  # docs/capacity.md, 8K
    assert result.placement is not None and result.placement["nodes"] == ["a", "b"]


def test_other_gpu_type_fits_adapted_and_says_so() -> None:
    result = fit("basic-7b", node("gpu-01", 2, "NVIDIA H20 96GB", 96))
    assert result.status == FitStatus.ADAPTED
    assert len(result.changes) == 1 and "NVIDIA H20 96GB" in result.changes[0] and "RTX 4090" in result.changes[0]


def test_smaller_tensor_parallel_on_a_big_gpu_fits_adapted() -> None:
    result = fit("standard-32b", node("gpu-01", 1, "NVIDIA H100 80GB HBM3", 79.65))
    assert result.status == FitStatus.ADAPTED
    assert result.plan is not None and (result.plan.tensor_parallel, result.plan.max_concurrent_sequences) == (1, 9)
    assert any("tensor parallel 1 instead of 4" in change for change in result.changes)


def test_flagship_on_one_big_node_is_adapted_to_one_node() -> None:
    result = fit("flagship-671b", node("a", 8, "NVIDIA H200 141GB", 141))
    assert result.status == FitStatus.ADAPTED
    assert any("nodes 1 instead of 2" in change for change in result.changes)


def test_does_not_fit_says_what_was_needed_and_found() -> None:
    result = fit("standard-32b", node("gpu-01", 2, "NVIDIA RTX 4090 24GB", 24))
    assert result.status == FitStatus.NO_FIT
    assert "4 free RTX 4090 GPUs" in result.summary and "gpu-01: 2 × NVIDIA RTX 4090 24GB" in result.summary
    assert "weights need 30.5 GiB per GPU" in result.summary


def test_flagship_does_not_fit_one_h100_node() -> None:
    result = fit("flagship-671b", node("a", 8, "NVIDIA H100 80GB HBM3", 79.65))
    assert result.status == FitStatus.NO_FIT and "does not fit" in result.summary


def test_no_free_gpus() -> None:
    result = fit("basic-7b", node("gpu-01", 0, "x", 0))
    assert result.status == FitStatus.NO_FIT and "no free GPUs" in result.summary


def test_mig_slices_are_units_of_their_own() -> None:
    result = fit("basic-7b", node("a", 2, "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40))
    assert result.status == FitStatus.ADAPTED  # a 40 GiB slice runs the 7B alone, on one slice
    assert result.placement is not None and "MIG 3g.40gb" in result.placement["gpu_name"]


def test_cpu_profile_fits_any_ready_node_with_ram() -> None:
    assert fit("smollm2-cpu", node("cpu-01", 0, "x", 0, ram=4)).status == FitStatus.FITS
    assert fit("smollm2-cpu", node("cpu-01", 0, "x", 0, ram=None)).status == FitStatus.FITS  # the profile's 2 GiB
    assert fit("smollm2-cpu", node("cpu-01", 0, "x", 0, ram=0.25)).status == FitStatus.NO_FIT
    assert fit("smollm2-cpu").status == FitStatus.NO_FIT


# --- the inventory ------------------------------------------------------------------------


@pytest.mark.django_db
def test_free_nodes_reads_pools_claims_and_node_state(make_node: MakeNode, departments: dict) -> None:
    gpu01 = make_node("gpu-01", "4x RTX 4090 24GB")
    give_pool(gpu01, departments["eng"], 2)
    units = list(GpuUnit.objects.filter(department=departments["eng"]))
    UnitClaim.objects.create(unit=units[0], deployment_id=1)
    everything = {n.name: n for n in free_nodes()}
    assert len(everything["gpu-01"].units) == 3 and everything["gpu-01"].ram_gib == 128
    assert everything["gpu-01"].units[0] == FreeUnit("NVIDIA RTX 4090 24GB", 24.0)
    assert [len(n.units) for n in free_nodes(departments["eng"])] == [1]
    assert [len(n.units) for n in free_nodes(departments["fin"])] == [0]
    Node.objects.filter(pk=gpu01.pk).update(state=NodeState.MAINTENANCE)
    assert free_nodes() == ()


@pytest.mark.django_db
def test_mig_inventory_gives_slices(make_node: MakeNode) -> None:
    make_node("gpu-01", "1x H100 80GB mig:3g.40gb,3g.40gb")
    (host,) = free_nodes()
    assert [unit.gpu_name for unit in host.units] == ["NVIDIA H100 80GB MIG 3g.40gb"] * 2


# --- the API ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_profiles_api_fit_follows_the_department_pool(
    api_as: Api, seeded: dict[str, Profile], make_node: MakeNode, departments: dict
) -> None:
    give_pool(make_node("gpu-01", "2x RTX 4090 24GB"), departments["eng"])
    pk = seeded["basic-7b"].pk
    whole = {r["slug"]: r["fit"] for r in api_as("root").get("/api/v1/profiles/").json()["results"]}
    assert whole["basic-7b"]["status"] == "fits" and whole["standard-32b"]["status"] == "no_fit"
    assert whole["smollm2-cpu"]["status"] == "fits"
    # bob (eng) defaults to his department's pool; charlie (fin) has none.
    assert api_as("bob").get(f"/api/v1/profiles/{pk}/").json()["fit"]["status"] == "fits"
    assert api_as("charlie").get(f"/api/v1/profiles/{pk}/").json()["fit"]["status"] == "no_fit"
    data = api_as("root").get(f"/api/v1/profiles/{pk}/fit/", {"department": departments["fin"].pk}).json()
    assert data["status"] == "no_fit" and data["department"] == departments["fin"].pk
    assert "研发部" not in data["summary"] and "财务部" in data["summary"]


@pytest.mark.django_db
def test_fit_of_another_department_is_refused(api_as: Api, seeded: dict[str, Profile], departments: dict) -> None:
    pk = seeded["basic-7b"].pk
    resp = api_as("alice").get(f"/api/v1/profiles/{pk}/fit/", {"department": departments["fin"].pk})
    assert resp.status_code == 400 and "department" in resp.json()["error"]["details"]
    resp = api_as("alice").get(f"/api/v1/profiles/{pk}/fit/", {"department": departments["eng_ml"].pk})
    assert resp.status_code == 200  # her subtree
    assert api_as("eve").get("/api/v1/profiles/", {"department": "x"}).status_code == 400
