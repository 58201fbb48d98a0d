"""Planner formulas against numbers worked out by hand (the arithmetic is in the comments), and every refusal.

GiB = 1,073,741,824 bytes. The vLLM budget per GPU is int(memory × GiB × utilisation) − 1.5 GiB reserve
(1,610,612,736); llama.cpp's reserve is 1 GiB and its host reserve 512 MiB (536,870,912).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from django.utils import translation

from appliance.catalog.catalog import FieldError, get_model
from appliance.catalog.planner import (
    PLAN_KEYS,
    Plan,
    PlanRequest,
    kv_bytes_per_token,
    kv_bytes_per_token_per_gpu,
    plan,
    unsloth_gpu_layers,
    weights_bytes,
)

GIB = 1024**3


@pytest.fixture(autouse=True)
def _english() -> Any:
    """The reasons are translated; these tests read the English text."""
    with translation.override("en"):
        yield


def qwen32(**changes: Any) -> PlanRequest:
    """The Standard tier: R1-Distill-Qwen-32B in FP16 on 4 × RTX 4090 24 GB, tensor parallel 4, 4K context."""
    request = PlanRequest("deepseek-r1-distill-qwen-32b", 4, 24, 4096, dtype="fp16", tensor_parallel=4)
    return replace(request, **changes)


# --- GQA: DeepSeek-R1-Distill-Qwen-32B ------------------------------------------------------------------------


def test_qwen32_weights_and_kv_per_token() -> None:
    entry = get_model("deepseek-r1-distill-qwen-32b")
    # 32,763,876,352 parameters × 2 bytes
    assert weights_bytes(entry, "fp16") == 65_527_752_704
    # 2 (K and V) × 64 layers × 8 KV heads × 128 head_dim × 2 bytes = 262,144 = 256 KiB
    assert kv_bytes_per_token(entry, 2) == 262_144


def test_qwen32_standard_tier_at_4k() -> None:
    result = plan(qwen32())
    assert result.weights_bytes == 65_527_752_704
    assert result.weights_bytes_per_gpu == 16_381_938_176  # 65,527,752,704 / 4
    # budget: int(24 GiB × 0.9) = 23,192,823,398 − 1,610,612,736 = 21,582,210,662
    # KV free per GPU: 21,582,210,662 − 16,381,938,176 = 5,200,272,486 (4.84 GiB)
    assert result.kv_cache_bytes == 20_801_089_944  # 5,200,272,486 × 4 GPUs
    # per GPU a token takes 2 × 64 layers × (8 / 4 = 2 heads) × 128 × 2 bytes = 65,536
    # 5,200,272,486 // 65,536 = 79,349 (79,349 × 65,536 = 5,200,216,064; 56,422 left over)
    assert result.kv_bytes_per_token == 262_144
    assert result.max_tokens_in_cache == 79_349
    assert result.max_concurrent_sequences == 19  # 79,349 // 4,096 (19 × 4,096 = 77,824)
    assert result.fits and result.tensor_parallel == 4 and result.gpus_used == 4
    assert result.kv_dtype == "fp16"  # auto follows the fp16 weights
    assert result.suggested_tensor_parallel == 4
    assert result.reason.startswith("found 4 × 24 GiB GPUs: fits with tensor parallel 4")
    assert "79,349 tokens = 19 concurrent sequences of 4,096 tokens" in result.reason


def test_qwen32_standard_tier_at_8k_halves_the_streams() -> None:
    result = plan(qwen32(context_length=8192))
    assert result.max_tokens_in_cache == 79_349  # the cache does not depend on the context
    assert result.max_concurrent_sequences == 9  # 79,349 // 8,192 (9 × 8,192 = 73,728)


def test_qwen32_on_eight_gpus_uses_them_all() -> None:
    result = plan(qwen32(gpu_count=8, tensor_parallel=None))
    # per GPU: weights 65,527,752,704 / 8 = 8,190,969,088; free 21,582,210,662 − 8,190,969,088 = 13,391,241,574
    # a token: 2 × 64 × 1 head × 128 × 2 = 32,768 → 13,391,241,574 // 32,768 = 408,668
    assert result.tensor_parallel == 8 and result.suggested_tensor_parallel == 4
    assert result.max_tokens_in_cache == 408_668
    assert result.max_concurrent_sequences == 99  # 408,668 // 4,096


def test_qwen32_on_one_80gb_gpu() -> None:
    result = plan(qwen32(gpu_count=1, memory_per_gpu_gib=80, tensor_parallel=None))
    # budget int(80 GiB × 0.9) = 77,309,411,328 − 1,610,612,736 = 75,698,798,592
    # free 75,698,798,592 − 65,527,752,704 = 10,171,045,888 → // 262,144 = 38,799 tokens
    assert result.max_tokens_in_cache == 38_799
    assert result.max_concurrent_sequences == 9
    assert result.reason.startswith("found 1 × 80 GiB GPU: fits with tensor parallel 1")


def test_qwen32_does_not_fit_two_gpus() -> None:
    result = plan(qwen32(gpu_count=2, tensor_parallel=None))
    # weights per GPU 65,527,752,704 / 2 = 32,763,876,352 (30.5 GiB) > budget 21,582,210,662 (20.1 GiB)
    assert not result.fits
    assert result.max_tokens_in_cache == 0 and result.max_concurrent_sequences == 0 and result.kv_cache_bytes == 0
    assert result.suggested_tensor_parallel is None
    assert result.reason == (
        "needs 4 × 24 GiB GPUs (tensor parallel 4); found 2 × 24 GiB GPUs: does not fit with tensor parallel 2: "
        "weights need 30.5 GiB per GPU but only 20.1 GiB is left after 90% utilisation and the 1.5 GiB engine reserve"
    )


def test_context_longer_than_the_cache_does_not_fit() -> None:
    result = plan(qwen32(context_length=100_000))
    assert not result.fits and result.max_tokens_in_cache == 79_349
    assert "the KV cache holds 79,349 tokens, less than one sequence of 100,000" in result.reason


def test_quantised_weights_keep_embeddings_at_16_bits() -> None:
    llama70 = get_model("deepseek-r1-distill-llama-70b")
    # embeddings + LM head: 2 × 128,256 × 8,192 = 2,101,346,304 parameters, kept at 2 bytes = 4,202,692,608
    # the rest: 70,553,706,496 − 2,101,346,304 = 68,452,360,192 × 0.5 × 1.04 = 35,595,227,299.84 → 35,595,227,300
    assert weights_bytes(llama70, "int4-awq") == 39_797_919_908
    qwen14 = get_model("deepseek-r1-distill-qwen-14b")
    # (14,770,033,664 − 1,557,135,360) × 1 + 1,557,135,360 × 2
    assert weights_bytes(qwen14, "fp8") == 16_327_169_024


# --- MLA: DeepSeek-R1 671B in FP8 -----------------------------------------------------------------------------


def r1(**changes: Any) -> PlanRequest:
    """The Flagship tier: R1 in FP8 on 2 nodes × 8 H20 96 GB, tensor parallel 8 within a node, pipeline 2 across."""
    request = PlanRequest("deepseek-r1", 16, 96, 8192, tensor_parallel=8, pipeline_parallel=2)
    return replace(request, **changes)


def test_r1_fp8_weights_and_mla_kv_per_token() -> None:
    entry = get_model("deepseek-r1")
    # (671,026,419,200 − 1,853,358,080 embedding params) × 1 byte + 1,853,358,080 × 2 bytes
    assert weights_bytes(entry, "fp8") == 672_879_777_280
    # (kv_lora_rank 512 + qk_rope_head_dim 64) × 61 layers × 2 bytes
    assert kv_bytes_per_token(entry, 2) == 70_272
    assert kv_bytes_per_token(entry, 1) == 35_136


def test_r1_fp8_on_two_h20_nodes() -> None:
    result = plan(r1())
    assert result.dtype == "fp8" and result.kv_dtype == "bf16"  # auto: native weights, 16-bit cache
    assert result.weights_bytes_per_gpu == 42_054_986_080  # 672,879,777,280 / 16
    # budget int(96 GiB × 0.9) = 92,771,293,593 − 1,610,612,736 = 91,160,680,857
    # free 91,160,680,857 − 42,054,986,080 = 49,105,694,777
    # the latent is not split by TP: a GPU holds 576 × ceil(61 / 2) = 31 layers × 2 bytes = 35,712 per token
    # 49,105,694,777 // 35,712 = 1,375,047
    assert result.max_tokens_in_cache == 1_375_047
    assert result.max_concurrent_sequences == 167  # 1,375,047 // 8,192 (167 × 8,192 = 1,368,064)
    assert result.kv_cache_bytes == 49_105_694_777 * 16
    assert result.fits and result.gpus_used == 16
    assert "fits with tensor parallel 8, pipeline parallel 2" in result.reason
    # The smallest layout is a footnote, never a "needs 8 GPUs, tensor parallel 4" beside a layout of 16.
    assert "needs" not in result.reason
    assert result.reason.endswith(
        "(the smallest layout that fits: 8 × 96 GiB GPUs, tensor parallel 4, pipeline parallel 2)"
    )


def test_r1_fp8_kv_cache_doubles_the_tokens() -> None:
    result = plan(r1(kv_dtype="fp8"))
    # 576 × 31 × 1 byte = 17,856 per token; 49,105,694,777 // 17,856 = 2,750,094
    assert result.kv_bytes_per_token == 35_136
    assert result.max_tokens_in_cache == 2_750_094
    assert result.max_concurrent_sequences == 335


def test_r1_fp8_does_not_fit_one_h100_node() -> None:
    result = plan(r1(gpu_count=8, memory_per_gpu_gib=80, tensor_parallel=None, pipeline_parallel=1))
    # 672,879,777,280 / 8 = 84,109,972,160 (78.3 GiB) > 75,698,798,592 (70.5 GiB);
    # at tensor parallel 16: 42,054,986,080 per GPU fits, so 16 GPUs are needed
    assert not result.fits
    assert result.reason.startswith(
        "needs 16 × 80 GiB GPUs (tensor parallel 16); found 8 × 80 GiB GPUs: does not fit with tensor parallel 8"
    )


# --- GGUF: Unsloth's UD-IQ1_S on llama.cpp --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_gib", "vram_gib", "layers"),
    [
        # Unsloth's published table for R1's 61 layers: floor(VRAM / size × 61) − 4
        (131, 24, 7),  # 24 / 131 × 61 = 11.18
        (131, 80, 33),  # 37.25
        (131, 160, 61),  # 74.50 − 4 = 70, clamped to all 61 layers
        (158, 24, 5),  # 9.27
        (158, 80, 26),  # 30.89
        (158, 160, 57),  # 61.77
        (183, 24, 4),  # 8.00
        (183, 80, 22),  # 26.67
        (183, 160, 49),  # 53.33
        (212, 24, 2),  # 6.91
        (212, 80, 19),  # 23.02
        (212, 160, 42),  # 46.04; the blog's table prints 32 here, which its own formula does not give
    ],
)
def test_unsloth_rule_reproduces_the_published_table(file_gib: int, vram_gib: int, layers: int) -> None:
    assert unsloth_gpu_layers(vram_gib, file_gib * GIB, 61) == layers


def test_iq1_s_kv_cache_is_expanded_on_llama_cpp() -> None:
    entry = get_model("deepseek-r1-ud-iq1_s")
    # January 2025 GGUFs predate llama.cpp's MLA cache: every head's K (128 + 64) and V (128) is kept,
    # 61 layers × 128 heads × 320 × 2 bytes = 4,997,120 per token, against the latent's 70,272
    assert kv_bytes_per_token(entry, 2, latent=False) == 4_997_120
    assert plan(PlanRequest(entry, 1, 80, 4096, engine="llamacpp", cpu_ram_gib=256)).kv_bytes_per_token == 4_997_120


def test_iq1_s_on_one_80gb_gpu() -> None:
    result = plan(PlanRequest("deepseek-r1-ud-iq1_s", 1, 80, 4096, engine="llamacpp", cpu_ram_gib=256))
    # Unsloth: file 140,200,000,000 bytes = 130.57 GiB; floor(80 / 130.57 × 61) = floor(37.37) = 37; − 4 = 33.
    # Step-down: weights plus one 4,096-token context, 140,200,000,000 + 4,997,120 × 4,096 = 160,668,203,520,
    #   must fit the pool int(80 GiB × 0.9) − 1 GiB = 76,235,669,504 for the offloaded share:
    #   29 layers: ceil(160,668,203,520 × 29 / 61) = 76,383,244,297 > pool; 28 layers: 73,749,339,321 fits.
    assert result.n_gpu_layers == 28
    assert result.weights_bytes == 140_200_000_000
    assert result.weights_bytes_per_gpu == 64_354_098_361  # ceil(140,200,000,000 × 28 / 61)
    # GPU side: (76,235,669,504 − 64,354,098,361) × 61 // (4,997,120 × 28) = 11,881,571,143 × 61 // 139,919,360
    #   = 5,179 tokens; host side: (256 GiB − 512 MiB − 75,845,901,639) × 61 // (4,997,120 × 33) = 73,425
    assert result.max_tokens_in_cache == 5_179
    assert result.max_concurrent_sequences == 1
    # host: 75,845,901,639 weights + ceil(20,468,203,520 × 33 / 61) = 11,072,962,560 KV + 536,870,912
    assert result.cpu_ram_bytes == 87_455_735_111
    assert result.fits and result.kv_dtype == "fp16"
    assert result.reason.startswith(
        "28 of 61 layers on 1 × 80 GiB GPU, stepped down from Unsloth's 33 to fit; "
        "needs 81.4 GiB of host RAM, found 256 GiB: fits"
    )


def test_iq1_s_on_two_24gb_gpus() -> None:
    result = plan(PlanRequest("deepseek-r1-ud-iq1_s", 2, 24, 4096, engine="llamacpp"))
    # Unsloth: floor(48 / 130.57 × 61) = floor(22.42) = 22; − 4 = 18.
    # pool 2 × (23,192,823,398 − 1,073,741,824) = 44,238,163,148;
    #   17 layers: ceil(160,668,203,520 × 17 / 61) = 44,776,384,588 > pool; 16 layers: 42,142,479,612 fits
    assert result.n_gpu_layers == 16
    # GPU weights ceil(140,200,000,000 × 16 / 61) = 36,773,770,492;
    # (44,238,163,148 − 36,773,770,492) × 61 // (4,997,120 × 16) = 7,464,392,656 × 61 // 79,953,920 = 5,694
    assert result.max_tokens_in_cache == 5_694
    assert result.max_concurrent_sequences == 1
    # host: 103,426,229,508 weights + ceil(20,468,203,520 × 45 / 61) = 15,099,494,400 + 536,870,912
    assert result.cpu_ram_bytes == 119_062_594_820
    assert result.gpus_used == 2 and result.weights_bytes_per_gpu == 36_773_770_492 // 2
    assert "needs 110.9 GiB of host RAM (not checked: cpu_ram_gib not given): fits" in result.reason


def test_gguf_steps_down_when_the_rule_overfills_the_gpu() -> None:
    # At 0.5 utilisation the rule's 33 layers (70.6 GiB) exceed the 39 GiB pool: layers are dropped until they fit.
    result = plan(
        PlanRequest("deepseek-r1-ud-iq1_s", 1, 80, 4096, gpu_memory_utilization=0.5, engine="llamacpp", cpu_ram_gib=256)
    )
    assert result.n_gpu_layers is not None and result.n_gpu_layers < 33
    assert result.weights_bytes_per_gpu <= int(80 * GIB * 0.5) - GIB
    assert "stepped down from Unsloth's 33 to fit" in result.reason


def test_gguf_too_little_host_ram_does_not_fit() -> None:
    result = plan(PlanRequest("deepseek-r1-ud-iq1_s", 2, 24, 4096, engine="llamacpp", cpu_ram_gib=64))
    # 110.9 GiB needed for the 45 CPU layers, their KV cache and the process; 64 GiB given
    assert not result.fits and result.max_tokens_in_cache == 0
    assert "needs 110.9 GiB of host RAM, found 64 GiB: does not fit" in result.reason


# --- SmolLM2 on CPU -------------------------------------------------------------------------------------------


def test_smollm2_on_cpu() -> None:
    result = plan(PlanRequest("smollm2-135m-instruct-q4_1", 0, 0, 8192, engine="llamacpp", cpu_ram_gib=4))
    # 2 × 30 layers × 3 KV heads × 64 head_dim × 2 bytes (f16 cache) = 23,040 per token
    assert result.kv_bytes_per_token == 23_040
    assert result.n_gpu_layers == 0 and result.gpus_used == 0 and result.weights_bytes_per_gpu == 0
    # host: 98,362,432 file + 23,040 × 8,192 = 188,743,680 + 536,870,912 reserve
    assert result.cpu_ram_bytes == 823_977_024
    # 4 GiB − 536,870,912 − 98,362,432 = 3,659,733,952 // 23,040 = 158,842 (14,272 left over)
    assert result.max_tokens_in_cache == 158_842
    assert result.max_concurrent_sequences == 19  # 158,842 // 8,192 (19 × 8,192 = 155,648)
    assert result.fits
    assert result.reason.startswith("CPU only: all 30 layers in host RAM; needs 0.8 GiB of host RAM, found 4 GiB: fits")


def test_smollm2_on_ollama_with_a_small_gpu() -> None:
    result = plan(PlanRequest("smollm2-135m-instruct-q4_1", 1, 8, 8192, engine="ollama"))
    # floor(8 / (98,362,432 / GiB) × 30) − 4 is far above 30: every layer goes to the GPU
    assert result.n_gpu_layers == 30 and result.fits


# --- output shape ---------------------------------------------------------------------------------------------


def test_to_dict_has_exactly_the_plan_keys() -> None:
    data = plan(qwen32()).to_dict()
    assert tuple(data) == PLAN_KEYS
    documented = {"weights_bytes", "kv_bytes_per_token", "kv_cache_bytes", "max_tokens_in_cache"}
    documented |= {"max_concurrent_sequences", "fits", "reason", "n_gpu_layers", "cpu_ram_bytes"}
    assert documented <= set(data)
    assert data["n_gpu_layers"] is None and data["cpu_ram_bytes"] is None


def test_a_custom_entry_can_be_planned_before_it_is_saved() -> None:
    entry = replace(get_model("deepseek-r1-distill-qwen-32b"), slug="acme-32b")
    assert isinstance(plan(qwen32(model=entry)), Plan)


# --- refusals -------------------------------------------------------------------------------------------------


def test_tensor_parallel_may_exceed_kv_heads_when_vllm_can_replicate_them() -> None:
    # Qwen-1.5B: 12 query heads, 2 KV heads. tp 4 divides 12, and 4 is a multiple of 2: each rank gets a copy.
    result = plan(PlanRequest("deepseek-r1-distill-qwen-1.5b", 4, 24, 4096, tensor_parallel=4))
    assert result.fits and result.kv_bytes_per_token == 28_672  # 2 × 28 layers × 2 heads × 128 × 2 bytes
    # per GPU: 2 × 28 layers × max(2 // 4, 1) = 1 head × 128 × 2 bytes: half the model's, not a quarter
    assert kv_bytes_per_token_per_gpu(get_model("deepseek-r1-distill-qwen-1.5b"), 2, 4, 1) == 14_336


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (qwen32(model="deepseek-r2"), "model"),
        (qwen32(engine="tgi"), "engine"),
        (qwen32(gpu_count=0, tensor_parallel=None), "gpu_count"),  # vLLM needs a GPU
        (qwen32(gpu_count=True, tensor_parallel=None), "gpu_count"),
        (qwen32(memory_per_gpu_gib=0), "memory_per_gpu_gib"),
        (qwen32(gpu_memory_utilization=0), "gpu_memory_utilization"),
        (qwen32(gpu_memory_utilization=1.2), "gpu_memory_utilization"),
        (qwen32(context_length=0), "context_length"),
        (qwen32(context_length=131_073), "context_length"),  # max_position_embeddings 131,072
        (qwen32(pipeline_parallel=0), "pipeline_parallel"),
        (qwen32(tensor_parallel=0), "tensor_parallel"),
        (qwen32(tensor_parallel=8), "tensor_parallel"),  # 8 × 1 > 4 GPUs
        (qwen32(tensor_parallel=2, pipeline_parallel=4), "tensor_parallel"),  # 2 × 4 > 4 GPUs
        (qwen32(tensor_parallel=None, pipeline_parallel=8), "pipeline_parallel"),
        (qwen32(gpu_count=8, tensor_parallel=3), "tensor_parallel"),  # 40 heads % 3
        (qwen32(gpu_count=16, tensor_parallel=16), "tensor_parallel"),  # 40 heads % 16
        (PlanRequest("deepseek-r1-distill-qwen-1.5b", 4, 24, tensor_parallel=3), "tensor_parallel"),  # 2 KV heads
        (qwen32(dtype="fp4"), "dtype"),
        (qwen32(dtype="gguf"), "dtype"),  # no GGUF file for the 32B entry
        (qwen32(kv_dtype="int4"), "kv_dtype"),
        (PlanRequest("deepseek-r1-ud-iq1_s", 2, 80, engine="llamacpp", kv_dtype="fp8"), "kv_dtype"),
        (qwen32(engine="llamacpp", tensor_parallel=None), "dtype"),  # llama.cpp needs a GGUF file
        (PlanRequest("deepseek-r1-ud-iq1_s", 2, 80), "dtype"),  # vLLM is not planned for GGUF
        (PlanRequest("deepseek-r1-ud-iq1_s", 2, 80, engine="llamacpp", tensor_parallel=2), "tensor_parallel"),
        (PlanRequest("deepseek-r1-ud-iq1_s", 2, 80, engine="ollama", pipeline_parallel=2), "pipeline_parallel"),
        (PlanRequest("smollm2-135m-instruct-q4_1", 0, 0, 4096, engine="llamacpp"), "cpu_ram_gib"),
        (PlanRequest("smollm2-135m-instruct-q4_1", 0, 0, 4096, engine="llamacpp", cpu_ram_gib=0), "cpu_ram_gib"),
        (PlanRequest("smollm2-135m-instruct-q4_1", 0, 0, 8193, engine="llamacpp", cpu_ram_gib=4), "context_length"),
    ],
)
def test_refusals_name_the_field(request_: PlanRequest, field: str) -> None:
    with pytest.raises(FieldError) as excinfo:
        plan(request_)
    assert excinfo.value.field == field
    assert isinstance(excinfo.value, ValueError) and str(excinfo.value).startswith(f"{field}: ")


def test_utilisation_of_one_is_allowed() -> None:
    assert plan(qwen32(gpu_memory_utilization=1.0)).fits
