"""SKU profiles over the API: who may do what, bad input per field, versioning, audit, query counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from appliance.audit.models import AuditRecord
from appliance.catalog.models import ImmutableError, Profile, ProfileVersion
from appliance.catalog.planner import PLAN_KEYS
from appliance.catalog.tests.conftest import MakeNode

pytestmark = pytest.mark.django_db

Api = Callable[[str], APIClient]

QWEN14 = {
    "slug": "qwen14-awq",
    "name": "14B AWQ on one 4090",
    "tier": "custom",
    "model": "deepseek-r1-distill-qwen-14b",
    "engine": "vllm",
    "precision": "int4-awq",
    "gpus_per_node": 1,
    "min_gpu_memory_gib": 24,
    "gpu_model": "RTX 4090",
    "max_model_len": 8192,
}


def test_seeded_profiles_are_listed_with_spec_and_fit(api_as: Api, seeded: dict[str, Profile]) -> None:
    resp = api_as("bob").get("/api/v1/profiles/")
    assert resp.status_code == 200
    rows = {row["slug"]: row for row in resp.json()["results"]}
    assert set(rows) == {"basic-7b", "standard-32b", "flagship-671b", "smollm2-cpu"}
    basic = rows["basic-7b"]
    assert basic["name"] == "基础版 Basic 7B" and basic["tier"] == "basic" and basic["version"] == 1
    assert (basic["model"], basic["precision"], basic["gpus_per_node"], basic["min_gpu_memory_gib"]) == (
        "deepseek-r1-distill-qwen-7b",
        "fp16",
        2,
        24,
    )
    assert (basic["reference_price_cny"], basic["concurrency_min"], basic["concurrency_max"]) == (88_000, 15, 30)
    assert basic["chat_defaults"]["code"] == 0.0 and basic["chat_defaults"]["creative_writing"] == 1.5
    flagship = rows["flagship-671b"]
    assert (flagship["nodes"], flagship["gpus_per_node"], flagship["tensor_parallel"], flagship["precision"]) == (
        2,
        8,
        8,
        "fp8",
    )
    cpu = rows["smollm2-cpu"]
    assert (cpu["engine"], cpu["gpus_per_node"], cpu["max_model_len"]) == ("llamacpp", 0, 2048)
    assert basic["fit"]["status"] == "no_fit"  # no GPUs in the test inventory


def test_detail_has_the_plan_on_its_reference_hardware(api_as: Api, seeded: dict[str, Profile]) -> None:
    data = api_as("eve").get(f"/api/v1/profiles/{seeded['standard-32b'].pk}/").json()
    assert set(data["plan"]) == set(PLAN_KEYS)
    assert data["plan"]["max_tokens_in_cache"] == 79_349 and data["plan"]["max_concurrent_sequences"] == 19


@pytest.mark.parametrize(("persona", "expected"), [("root", 201), ("alice", 403), ("bob", 403), ("eve", 403)])
def test_only_platform_admins_create_profiles(api_as: Api, seeded: dict, persona: str, expected: int) -> None:
    resp = api_as(persona).post("/api/v1/profiles/", QWEN14, format="json")
    assert resp.status_code == expected, resp.content
    assert Profile.objects.filter(slug="qwen14-awq").exists() is (expected == 201)


@pytest.mark.parametrize("persona", ["alice", "bob", "eve"])
def test_others_cannot_edit_or_archive(api_as: Api, seeded: dict[str, Profile], persona: str) -> None:
    pk = seeded["basic-7b"].pk
    assert api_as(persona).patch(f"/api/v1/profiles/{pk}/", {"max_model_len": 4096}, format="json").status_code == 403
    assert api_as(persona).delete(f"/api/v1/profiles/{pk}/").status_code == 403
    assert ProfileVersion.objects.filter(profile_id=pk).count() == 1


def test_unauthenticated_is_401(seeded: dict) -> None:
    assert APIClient().get("/api/v1/profiles/").status_code == 401


def test_create_defaults_and_audit(api_as: Api, seeded: dict) -> None:
    data = api_as("root").post("/api/v1/profiles/", QWEN14, format="json").json()
    assert data["version"] == 1 and data["tensor_parallel"] == 1 and data["kv_dtype"] == "auto"
    assert data["chat_defaults"] == {
        "code": 0.0,
        "math": 0.0,
        "data_analysis": 1.0,
        "conversation": 1.3,
        "translation": 1.3,
        "creative_writing": 1.5,
    }
    assert data["plan"]["fits"] is True
    rec = AuditRecord.objects.get(action="profile.create")
    assert rec.after is not None and rec.after["model"] == "deepseek-r1-distill-qwen-14b" and rec.actor_name == "root"


BAD_INPUT = [
    ({"gpus_per_node": 0}, "gpus_per_node"),
    ({"min_gpu_memory_gib": -24}, "min_gpu_memory_gib"),
    ({"min_gpu_memory_gib": None}, "min_gpu_memory_gib"),
    ({"gpus_per_node": 4, "tensor_parallel": 3}, "tensor_parallel"),
    ({"max_model_len": 200_000}, "max_model_len"),
    ({"max_model_len": 0}, "max_model_len"),
    ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ({"model": "gpt-5"}, "model"),
    ({"engine": "tgi"}, "engine"),
    ({"precision": "int3"}, "precision"),
    ({"engine": "llamacpp"}, "precision"),
    ({"nodes": 0}, "nodes"),
    ({"pipeline_parallel": 0}, "pipeline_parallel"),
    ({"max_num_seqs": 0}, "max_num_seqs"),
    ({"concurrency_min": 30, "concurrency_max": 15}, "concurrency_max"),
    ({"chat_defaults": {"code": 3}}, "chat_defaults"),
    ({"chat_defaults": {"poetry": 1.0}}, "chat_defaults"),
    ({"slug": "Bad Slug"}, "slug"),
    ({"colour": "red"}, "colour"),
    ({"extra_args": "--enforce-eager"}, "extra_args"),
]


@pytest.mark.parametrize(("change", "field"), BAD_INPUT)
def test_bad_input_is_400_naming_the_field(api_as: Api, seeded: dict, change: dict[str, Any], field: str) -> None:
    resp = api_as("root").post("/api/v1/profiles/", {**QWEN14, **change}, format="json")
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert field in error["details"], error
    assert not Profile.objects.filter(slug=QWEN14["slug"]).exists()


def test_missing_required_fields_are_named(api_as: Api, seeded: dict) -> None:
    resp = api_as("root").post("/api/v1/profiles/", {"slug": "x", "name": "X"}, format="json")
    assert resp.status_code == 400
    assert {"model", "engine", "gpus_per_node", "max_model_len"} <= set(resp.json()["error"]["details"])


def test_unknown_engine_flag_lists_the_known_ones(api_as: Api, seeded: dict) -> None:
    body = {**QWEN14, "extra_args": {"--enable-prefix-caching": True, "--turbo-mode": "on"}}
    resp = api_as("root").post("/api/v1/profiles/", body, format="json")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "unknown_flags" and "--turbo-mode" in error["message"]
    assert error["details"]["unknown_flags"] == ["--turbo-mode"]
    assert "--enable-prefix-caching" in error["details"]["known_flags"]
    assert "--max-num-batched-tokens" in error["message"]


def test_console_owned_flag_is_refused(api_as: Api, seeded: dict) -> None:
    body = {**QWEN14, "extra_args": ["--tensor-parallel-size", "2"]}
    resp = api_as("root").post("/api/v1/profiles/", body, format="json")
    assert resp.status_code == 400 and "extra_args" in resp.json()["error"]["details"]


def test_known_flags_are_accepted_per_engine(api_as: Api, seeded: dict) -> None:
    vllm = {**QWEN14, "extra_args": {"--enable-prefix-caching": True, "--max-num-batched-tokens": 8192}}
    assert api_as("root").post("/api/v1/profiles/", vllm, format="json").status_code == 201
    pk = api_as("root").get("/api/v1/profiles/?slug=smollm2-cpu").json()["results"][0]["id"]
    resp = api_as("root").patch(f"/api/v1/profiles/{pk}/", {"extra_args": {"--n_batch": 256}}, format="json")
    assert resp.status_code == 200, resp.content
    resp = api_as("root").patch(f"/api/v1/profiles/{pk}/", {"extra_args": {"--max-num-seqs": 2}}, format="json")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_flags"


def test_duplicate_slug_is_409(api_as: Api, seeded: dict) -> None:
    resp = api_as("root").post("/api/v1/profiles/", {**QWEN14, "slug": "basic-7b"}, format="json")
    assert resp.status_code == 409


def test_editing_the_spec_makes_a_new_version_and_keeps_the_old(api_as: Api, seeded: dict[str, Profile]) -> None:
    profile = seeded["standard-32b"]
    first = profile.current_version
    assert first is not None
    resp = api_as("root").patch(
        f"/api/v1/profiles/{profile.pk}/", {"max_model_len": 8192, "note": "longer R1 reasoning"}, format="json"
    )
    assert resp.status_code == 200, resp.content
    data = resp.json()
    assert data["version"] == 2 and data["max_model_len"] == 8192 and data["plan"]["max_concurrent_sequences"] == 9
    first.refresh_from_db()
    assert first.max_model_len == 4096 and first.number == 1  # the deployment's version is untouched
    versions = api_as("bob").get(f"/api/v1/profiles/{profile.pk}/versions/").json()["results"]
    assert [(v["number"], v["max_model_len"], v["note"]) for v in versions] == [
        (2, 8192, "longer R1 reasoning"),
        (1, 4096, "seeded"),
    ]
    rec = AuditRecord.objects.get(action="profile.update")
    assert rec.before is not None and rec.after is not None
    assert (rec.before["max_model_len"], rec.after["max_model_len"]) == (4096, 8192)
    assert (rec.before["version"], rec.after["version"]) == (1, 2)


def test_renaming_and_no_op_edits_make_no_version(api_as: Api, seeded: dict[str, Profile]) -> None:
    pk = seeded["basic-7b"].pk
    client = api_as("root")
    assert client.patch(f"/api/v1/profiles/{pk}/", {"name": "基础版 7B"}, format="json").json()["version"] == 1
    assert client.patch(f"/api/v1/profiles/{pk}/", {"max_model_len": 8192}, format="json").json()["version"] == 1
    assert ProfileVersion.objects.filter(profile_id=pk).count() == 1
    assert AuditRecord.objects.filter(action="profile.update").count() == 1  # the rename only
    partial = client.patch(f"/api/v1/profiles/{pk}/", {"chat_defaults": {"code": 0.2}}, format="json").json()
    assert partial["version"] == 2 and partial["chat_defaults"]["code"] == 0.2
    assert partial["chat_defaults"]["creative_writing"] == 1.5


def test_bad_edit_changes_nothing(api_as: Api, seeded: dict[str, Profile]) -> None:
    pk = seeded["basic-7b"].pk
    resp = api_as("root").patch(f"/api/v1/profiles/{pk}/", {"tensor_parallel": 5}, format="json")
    assert resp.status_code == 400 and "tensor_parallel" in resp.json()["error"]["details"]
    resp = api_as("root").patch(f"/api/v1/profiles/{pk}/", {"slug": "other"}, format="json")
    assert resp.status_code == 400 and "slug" in resp.json()["error"]["details"]
    assert ProfileVersion.objects.filter(profile_id=pk).count() == 1


def test_versions_are_immutable(seeded: dict[str, Profile]) -> None:
    version = seeded["basic-7b"].current_version
    assert version is not None
    version.max_model_len = 1
    with pytest.raises(ImmutableError):
        version.save()
    with pytest.raises(ImmutableError):
        version.delete()


def test_archive_hides_the_profile_and_keeps_versions(api_as: Api, seeded: dict[str, Profile]) -> None:
    pk = seeded["basic-7b"].pk
    assert api_as("root").delete(f"/api/v1/profiles/{pk}/").status_code == 204
    assert api_as("root").get(f"/api/v1/profiles/{pk}/").status_code == 404
    assert ProfileVersion.objects.filter(profile_id=pk).exists()
    assert AuditRecord.objects.filter(action="profile.archive", target_id=str(pk)).exists()


def test_list_query_count_is_constant(api_as: Api, seeded: dict, make_node: MakeNode) -> None:
    client = api_as("root")
    make_node("gpu-01", "2x RTX 4090 24GB")

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/v1/profiles/").status_code == 200
        return len(ctx.captured_queries)

    first = count()
    for i in range(5):
        client.post("/api/v1/profiles/", {**QWEN14, "slug": f"q{i}", "name": f"Q{i}"}, format="json")
    make_node("gpu-02", "8x H20 96GB")
    assert count() == first
