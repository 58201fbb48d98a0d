"""The catalog API (shipped entries merged with custom ones) and the capacity planner API."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from appliance.audit.models import AuditRecord
from appliance.catalog.catalog import default_catalog, validate_entry
from appliance.catalog.models import CustomModel
from appliance.catalog.planner import PLAN_KEYS

pytestmark = pytest.mark.django_db

Api = Callable[[str], APIClient]


def custom_entry(slug: str = "acme-qwen-7b-chat") -> dict[str, Any]:
    """A fine-tune of the 7B distill: the shipped entry's facts under a new slug."""
    entry = default_catalog()["deepseek-r1-distill-qwen-7b"].to_dict()
    entry.update(slug=slug, display_name="ACME Qwen 7B chat", hf_repo="acme/qwen-7b-chat", served_model_name=slug)
    return entry


def test_list_merges_builtin_and_custom(api_as: Api) -> None:
    assert api_as("root").post("/api/v1/catalog/", custom_entry(), format="json").status_code == 201
    resp = api_as("bob").get("/api/v1/catalog/?page_size=100")
    assert resp.status_code == 200
    rows = {row["slug"]: row for row in resp.json()["results"]}
    assert len(rows) == len(default_catalog()) + 1
    assert rows["deepseek-r1"]["builtin"] is True and rows["deepseek-r1"]["mla"]["kv_lora_rank"] == 512
    assert rows["acme-qwen-7b-chat"]["builtin"] is False
    for slug in ("deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-70b", "deepseek-r1-ud-iq1_s"):
        assert slug in rows
    assert rows["smollm2-135m-instruct-q4_1"]["num_hidden_layers"] == 30


def test_retrieve_by_slug_with_dots(api_as: Api) -> None:
    resp = api_as("eve").get("/api/v1/catalog/deepseek-r1-distill-qwen-1.5b/")
    assert resp.status_code == 200 and resp.json()["num_key_value_heads"] == 2
    assert api_as("eve").get("/api/v1/catalog/no-such-model/").status_code == 404


@pytest.mark.parametrize(("persona", "expected"), [("root", 201), ("alice", 403), ("bob", 403), ("eve", 403)])
def test_only_platform_admins_add_entries(api_as: Api, persona: str, expected: int) -> None:
    assert api_as(persona).post("/api/v1/catalog/", custom_entry(), format="json").status_code == expected
    assert CustomModel.objects.exists() is (expected == 201)


def test_custom_entry_round_trips_and_is_audited(api_as: Api) -> None:
    data = api_as("root").post("/api/v1/catalog/", custom_entry(), format="json").json()
    stored = CustomModel.objects.get(slug="acme-qwen-7b-chat")
    assert validate_entry(stored.spec).to_dict() == stored.spec
    assert data["served_model_name"] == "acme-qwen-7b-chat"
    rec = AuditRecord.objects.get(action="catalog.create")
    assert rec.after is not None and rec.after["slug"] == "acme-qwen-7b-chat"


def _broken(path: str, value: Any) -> dict[str, Any]:
    entry = copy.deepcopy(custom_entry())
    target = entry
    *parents, leaf = path.split(".")
    for part in parents:
        target = target[part]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return entry


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("num_hidden_layers", 0, "num_hidden_layers"),
        ("num_key_value_heads", 5, "num_key_value_heads"),
        ("hidden_size", KeyError, "hidden_size"),
        ("slug", "Not A Slug", "slug"),
        ("attention", "linear", "attention"),
        ("colour", "red", "colour"),
        ("native_dtype", "fp8", "native_dtype"),
        ("sources", {"licence": "x"}, "sources"),
    ],
)
def test_bad_entry_is_400_naming_the_field(api_as: Api, path: str, value: Any, field: str) -> None:
    resp = api_as("root").post("/api/v1/catalog/", _broken(path, value), format="json")
    assert resp.status_code == 400, resp.content
    assert field in resp.json()["error"]["details"]
    assert not CustomModel.objects.exists()


def test_builtin_slug_and_duplicates_are_409(api_as: Api) -> None:
    resp = api_as("root").post("/api/v1/catalog/", custom_entry("deepseek-r1"), format="json")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "builtin_model"
    api_as("root").post("/api/v1/catalog/", custom_entry(), format="json")
    assert api_as("root").post("/api/v1/catalog/", custom_entry(), format="json").status_code == 409


def test_builtins_are_read_only(api_as: Api) -> None:
    entry = default_catalog()["deepseek-r1"].to_dict()
    assert api_as("root").put("/api/v1/catalog/deepseek-r1/", entry, format="json").status_code == 409
    assert api_as("root").delete("/api/v1/catalog/deepseek-r1/").status_code == 409
    assert api_as("bob").delete("/api/v1/catalog/deepseek-r1/").status_code == 403


def test_replace_and_delete_custom_entry(api_as: Api) -> None:
    client = api_as("root")
    client.post("/api/v1/catalog/", custom_entry(), format="json")
    changed = {**custom_entry(), "display_name": "ACME Qwen 7B v2"}
    resp = client.put("/api/v1/catalog/acme-qwen-7b-chat/", changed, format="json")
    assert resp.status_code == 200 and resp.json()["display_name"] == "ACME Qwen 7B v2"
    resp = client.put("/api/v1/catalog/acme-qwen-7b-chat/", custom_entry("other-slug"), format="json")
    assert resp.status_code == 400 and "slug" in resp.json()["error"]["details"]
    assert client.delete("/api/v1/catalog/acme-qwen-7b-chat/").status_code == 204
    actions = set(AuditRecord.objects.filter(action__startswith="catalog.").values_list("action", flat=True))
    assert actions == {"catalog.create", "catalog.update", "catalog.delete"}


def test_custom_model_in_use_by_a_profile_cannot_change(api_as: Api) -> None:
    client = api_as("root")
    client.post("/api/v1/catalog/", custom_entry(), format="json")
    profile = {
        "slug": "acme",
        "name": "ACME",
        "model": "acme-qwen-7b-chat",
        "engine": "vllm",
        "gpus_per_node": 1,
        "min_gpu_memory_gib": 24,
        "max_model_len": 4096,
    }
    assert client.post("/api/v1/profiles/", profile, format="json").status_code == 201
    assert client.delete("/api/v1/catalog/acme-qwen-7b-chat/").status_code == 409
    resp = client.put("/api/v1/catalog/acme-qwen-7b-chat/", custom_entry(), format="json")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "model_in_use"


def test_catalog_list_query_count_is_constant(api_as: Api) -> None:
    client = api_as("root")

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/v1/catalog/").status_code == 200
        return len(ctx.captured_queries)

    first = count()
    for i in range(5):
        client.post("/api/v1/catalog/", custom_entry(f"acme-{i}"), format="json")
    assert count() == first


# --- capacity -----------------------------------------------------------------------------

STANDARD = {
    "model": "deepseek-r1-distill-qwen-32b",
    "gpu_count": 4,
    "memory_per_gpu_gib": 24,
    "context_length": 4096,
    "dtype": "fp16",
    "tensor_parallel": 4,
}


@pytest.mark.parametrize("persona", ["root", "alice", "bob", "eve"])
def test_capacity_post_returns_the_plan_keys(api_as: Api, persona: str) -> None:
    resp = api_as(persona).post("/api/v1/capacity/", STANDARD, format="json")
    assert resp.status_code == 200
    data = resp.json()
    assert tuple(data) == PLAN_KEYS
    assert data["max_tokens_in_cache"] == 79_349 and data["max_concurrent_sequences"] == 19 and data["fits"] is True


def test_capacity_get_with_query_parameters(api_as: Api) -> None:
    resp = api_as("bob").get("/api/v1/capacity/", {**STANDARD, "context_length": 8192})  # type: ignore[arg-type]
    assert resp.status_code == 200 and resp.json()["max_concurrent_sequences"] == 9


def test_capacity_gguf_gives_gpu_layers(api_as: Api) -> None:
    body = {"model": "deepseek-r1-ud-iq1_s", "engine": "llamacpp", "gpu_count": 1, "memory_per_gpu_gib": 24}
    data = api_as("bob").post("/api/v1/capacity/", {**body, "context_length": 2048}, format="json").json()
    assert data["n_gpu_layers"] == 7 and data["cpu_ram_bytes"] > 0


def test_capacity_sees_custom_models(api_as: Api) -> None:
    api_as("root").post("/api/v1/catalog/", custom_entry(), format="json")
    body = {**STANDARD, "model": "acme-qwen-7b-chat", "gpu_count": 1, "tensor_parallel": 1}
    assert api_as("bob").post("/api/v1/capacity/", body, format="json").status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gpu_count": 0}, "gpu_count"),
        ({"memory_per_gpu_gib": -1}, "memory_per_gpu_gib"),
        ({"tensor_parallel": 3}, "tensor_parallel"),
        ({"context_length": 200_000}, "context_length"),
        ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": 1.01}, "gpu_memory_utilization"),
        ({"model": "gpt-5"}, "model"),
        ({"dtype": "int3"}, "dtype"),
        ({"engine": "tgi"}, "engine"),
        ({"gpu_count": "four"}, "gpu_count"),
        ({"wat": 1}, "wat"),
    ],
)
def test_capacity_bad_input_is_400_naming_the_field(api_as: Api, change: dict[str, Any], field: str) -> None:
    resp = api_as("bob").post("/api/v1/capacity/", {**STANDARD, **change}, format="json")
    assert resp.status_code == 400, resp.content
    assert field in resp.json()["error"]["details"]


def test_capacity_needs_authentication() -> None:
    assert APIClient().post("/api/v1/capacity/", STANDARD, format="json").status_code == 401
