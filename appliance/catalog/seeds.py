"""The profiles every console ships with: the vendor's three tiers and the CPU profile this project runs live.

Figures are the vendor's reference configurations (`/work/shared/PRODUCT.md`, "Tiers a vendor sells").
`seed_profiles` is idempotent and takes the model classes as arguments, so the data migration
(historical models) and tests (after a transactional test flushed the tables) both call it. The
migration ran once per database: changing the data here changes new installations only.
"""

from __future__ import annotations

from typing import Any

from appliance.catalog.choices import DEFAULT_CHAT_DEFAULTS

SEED_PROFILES: tuple[dict[str, Any], ...] = (
    {
        "profile": {"slug": "basic-7b", "name": "基础版 Basic 7B", "tier": "basic"},
        "version": {
            "model": "deepseek-r1-distill-qwen-7b", "engine": "vllm", "precision": "fp16",
            "nodes": 1, "gpus_per_node": 2, "min_gpu_memory_gib": 24, "gpu_model": "RTX 4090",
            "tensor_parallel": 2, "pipeline_parallel": 1, "max_model_len": 8192, "max_num_seqs": 30,
            "default_max_tokens": 2048,
            "cpu_ram_gib": 128, "reference_price_cny": 88_000, "concurrency_min": 15, "concurrency_max": 30,
            "requests_per_second_min": 10, "requests_per_second_max": 20,
        },
        "description": "1 node, 2 × RTX 4090 24 GB, 2 × Xeon 5418Y, 128 GB RAM.",
    },
    {
        "profile": {"slug": "standard-32b", "name": "标准版 Standard 32B", "tier": "standard"},
        "version": {
            "model": "deepseek-r1-distill-qwen-32b", "engine": "vllm", "precision": "fp16",
            "nodes": 1, "gpus_per_node": 4, "min_gpu_memory_gib": 24, "gpu_model": "RTX 4090",
            "tensor_parallel": 4, "pipeline_parallel": 1, "max_model_len": 4096, "max_num_seqs": 30,
            "default_max_tokens": 1536,
            "cpu_ram_gib": 256, "reference_price_cny": 168_000, "concurrency_min": 15, "concurrency_max": 30,
            "requests_per_second_min": 10, "requests_per_second_max": 15,
        },
        "description": "1 node, 4 × RTX 4090 24 GB, 256 GB RAM.",
    },
    {
        "profile": {"slug": "flagship-671b", "name": "旗舰版 Flagship 671B", "tier": "flagship"},
        "version": {
            "model": "deepseek-r1", "engine": "vllm", "precision": "fp8",
            "nodes": 2, "gpus_per_node": 8, "min_gpu_memory_gib": 96, "gpu_model": "H20",
            "tensor_parallel": 8, "pipeline_parallel": 2, "max_model_len": 8192, "max_num_seqs": 190,
            "default_max_tokens": 2048,
            "cpu_ram_gib": 1536, "reference_price_cny": 1_990_000, "concurrency_min": 90, "concurrency_max": 190,
            "requests_per_second_min": 30, "requests_per_second_max": 60,
        },
        "description": "2 nodes × HGX H20 8-GPU (96 GB each), 1.5 TB RAM each; tensor parallel inside a node, "
        "pipeline parallel across the two.",
    },
    {
        "profile": {"slug": "smollm2-cpu", "name": "SmolLM2 135M CPU", "tier": "custom"},
        "version": {
            "model": "smollm2-135m-instruct-q4_1", "engine": "llamacpp", "precision": "gguf",
            "nodes": 1, "gpus_per_node": 0, "min_gpu_memory_gib": None, "gpu_model": "",
            "tensor_parallel": 1, "pipeline_parallel": 1, "max_model_len": 2048, "max_num_seqs": 4,
            "default_max_tokens": 256,
            "cpu_ram_gib": 2,
        },
        "description": "SmolLM2-135M-Instruct Q4_1 on llama.cpp, CPU only: the model this project runs live.",
    },
)  # fmt: skip

SEED_NOTE = "seeded"


def seed_default_max_tokens(profile_model: Any, version_model: Any) -> None:
    """Give the seeded versions their answer length where nobody has set one yet (migration 0003)."""
    for seed in SEED_PROFILES:
        version_model.objects.filter(
            profile__slug=seed["profile"]["slug"], note=SEED_NOTE, default_max_tokens__isnull=True
        ).update(default_max_tokens=seed["version"]["default_max_tokens"])


def seed_profiles(profile_model: Any, version_model: Any) -> int:
    """Create the seeded profiles that are missing (by slug); returns how many were created."""
    created = 0
    # A migration passes its historical model, which may predate fields added to the seeds later.
    fields = {field.name for field in version_model._meta.get_fields()}
    for seed in SEED_PROFILES:
        if profile_model.objects.filter(slug=seed["profile"]["slug"]).exists():
            continue
        profile = profile_model.objects.create(**seed["profile"], description=seed["description"], builtin=True)
        spec = {name: value for name, value in seed["version"].items() if name in fields}
        version = version_model.objects.create(
            profile=profile, number=1, note=SEED_NOTE, chat_defaults=dict(DEFAULT_CHAT_DEFAULTS), **spec
        )
        profile.current_version = version
        profile.save(update_fields=["current_version"])
        created += 1
    return created
