"""The model catalog: what the appliance can serve, with the architecture facts the planner needs.

Framework-free on purpose: the Django models, API and pages wrap this module later. The shipped
entries live in `data/catalog.json`, each figure traced to the model's own config.json or model
card in its `sources`; entries an admin adds go through `validate_entry`, which raises
`FieldError` (a `ValueError`) naming the offending field.

Units never vary: sizes in bytes, parameter counts as plain integers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

DATA_FILE = Path(__file__).parent / "data" / "catalog.json"

ATTENTION_KINDS = ("gqa", "mha", "mla")
WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4-awq", "int4-gptq", "gguf")

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HF_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

_ENTRY_KEYS = frozenset(
    {
        "slug", "display_name", "family", "hf_repo", "served_model_name", "base_model", "architecture",
        "attention", "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
        "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
        "parameters", "native_dtype", "formats", "licence", "is_reasoning", "sources", "moe", "mla",
    }
)  # fmt: skip


class FieldError(ValueError):
    """A ValueError that names the field at fault, so an API can point the admin at it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True, slots=True)
class MoE:
    """Mixture-of-experts shape: every expert's weights occupy memory, only `num_experts_per_tok` run."""

    n_routed_experts: int
    num_experts_per_tok: int
    n_shared_experts: int
    moe_intermediate_size: int | None = None
    first_k_dense_replace: int = 0  # leading layers that keep a dense MLP


@dataclass(frozen=True, slots=True)
class MLA:
    """Multi-head latent attention: the KV cache holds one compressed latent plus a RoPE key per token and layer."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None


@dataclass(frozen=True, slots=True)
class WeightFormat:
    """One published set of weights. `file_bytes` is known for GGUF files (the planner's weight size)."""

    dtype: str
    repo: str
    file_bytes: int | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One servable model. `parameters` excludes weights not loaded for serving (DeepSeek's MTP module)."""

    slug: str
    display_name: str
    family: str
    hf_repo: str
    served_model_name: str
    attention: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int | None  # None for MLA, whose q/k and v heads differ in width
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    parameters: int
    native_dtype: str
    formats: tuple[WeightFormat, ...]
    licence: str
    is_reasoning: bool  # prints its reasoning inside <think>…</think> before the answer
    sources: Mapping[str, str]  # figure -> citation; treat as read-only
    base_model: str | None = None
    architecture: str = ""
    intermediate_size: int | None = None
    moe: MoE | None = None
    mla: MLA | None = None

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings plus the LM head (one matrix when tied); quantisers keep these at 16 bits."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def gguf_file_bytes(self) -> int | None:
        return next((f.file_bytes for f in self.formats if f.dtype == "gguf"), None)

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(f.dtype for f in self.formats)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["formats"] = [asdict(f) for f in self.formats]
        data["sources"] = dict(self.sources)
        return data


def _field(data: Mapping[str, Any], name: str, prefix: str = "") -> Any:
    if name not in data:
        raise FieldError(prefix + name, "required")
    return data[name]


def _text(data: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None, prefix: str = "") -> str:
    value = _field(data, name, prefix)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(prefix + name, "must be a non-empty string")
    if pattern is not None and not pattern.fullmatch(value):
        raise FieldError(prefix + name, f"{value!r} does not match {pattern.pattern}")
    return value


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    return None if data.get(name) is None else _text(data, name)


def _count(data: Mapping[str, Any], name: str, minimum: int = 1, prefix: str = "") -> int:
    value = _field(data, name, prefix)
    # bool is an int subclass; `true` where a layer count belongs is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FieldError(prefix + name, f"must be an integer ≥ {minimum}")
    return value


def _optional_count(data: Mapping[str, Any], name: str, minimum: int = 1, prefix: str = "") -> int | None:
    return None if data.get(name) is None else _count(data, name, minimum, prefix)


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = _field(data, name)
    if not isinstance(value, bool):
        raise FieldError(name, "must be true or false")
    return value


def _choice(data: Mapping[str, Any], name: str, choices: Sequence[str]) -> str:
    value = _field(data, name)
    if value not in choices:
        raise FieldError(name, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def _block(data: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = data.get(name)
    if value is not None and not isinstance(value, Mapping):
        raise FieldError(name, "must be an object")
    return value


def _parse_moe(data: Mapping[str, Any]) -> MoE | None:
    block = _block(data, "moe")
    if block is None:
        return None
    moe = MoE(
        n_routed_experts=_count(block, "n_routed_experts", prefix="moe."),
        num_experts_per_tok=_count(block, "num_experts_per_tok", prefix="moe."),
        n_shared_experts=_count(block, "n_shared_experts", minimum=0, prefix="moe."),
        moe_intermediate_size=_optional_count(block, "moe_intermediate_size", prefix="moe."),
        first_k_dense_replace=_optional_count(block, "first_k_dense_replace", minimum=0, prefix="moe.") or 0,
    )
    if moe.num_experts_per_tok > moe.n_routed_experts:
        raise FieldError("moe.num_experts_per_tok", "cannot exceed moe.n_routed_experts")
    return moe


def _parse_mla(data: Mapping[str, Any], attention: str) -> MLA | None:
    block = _block(data, "mla")
    if attention != "mla":
        if block is not None:
            raise FieldError("mla", "only allowed when attention is 'mla'")
        return None
    if block is None:
        raise FieldError("mla", "required when attention is 'mla'")
    return MLA(
        kv_lora_rank=_count(block, "kv_lora_rank", prefix="mla."),
        qk_rope_head_dim=_count(block, "qk_rope_head_dim", prefix="mla."),
        qk_nope_head_dim=_count(block, "qk_nope_head_dim", prefix="mla."),
        v_head_dim=_count(block, "v_head_dim", prefix="mla."),
        q_lora_rank=_optional_count(block, "q_lora_rank", prefix="mla."),
    )


def _check_heads(attention: str, heads: int, kv_heads: int, head_dim: int | None) -> None:
    if attention == "mha" and kv_heads != heads:
        raise FieldError("num_key_value_heads", "must equal num_attention_heads for 'mha'")
    if attention == "gqa" and (kv_heads >= heads or heads % kv_heads):
        raise FieldError("num_key_value_heads", "must be fewer than, and divide, num_attention_heads for 'gqa'")
    if attention != "mla" and head_dim is None:
        raise FieldError("head_dim", f"required for '{attention}' attention")


def _parse_architecture(data: Mapping[str, Any]) -> dict[str, Any]:
    attention = _choice(data, "attention", ATTENTION_KINDS)
    heads = _count(data, "num_attention_heads")
    kv_heads = _count(data, "num_key_value_heads")
    head_dim = _optional_count(data, "head_dim")
    _check_heads(attention, heads, kv_heads, head_dim)
    return {
        "attention": attention,
        "num_hidden_layers": _count(data, "num_hidden_layers"),
        "hidden_size": _count(data, "hidden_size"),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": _count(data, "vocab_size"),
        "max_position_embeddings": _count(data, "max_position_embeddings"),
        "intermediate_size": _optional_count(data, "intermediate_size"),
        "tie_word_embeddings": _flag(data, "tie_word_embeddings"),
        "parameters": _count(data, "parameters"),
        "moe": _parse_moe(data),
        "mla": _parse_mla(data, attention),
    }


def _parse_format(item: Any, index: int) -> WeightFormat:
    prefix = f"formats[{index}]."
    if not isinstance(item, Mapping):
        raise FieldError(f"formats[{index}]", "must be an object")
    dtype = item.get("dtype")
    if dtype not in WEIGHT_DTYPES:
        raise FieldError(prefix + "dtype", f"{dtype!r} is not one of {', '.join(WEIGHT_DTYPES)}")
    file_bytes = _optional_count(item, "file_bytes", prefix=prefix)
    if dtype == "gguf" and file_bytes is None:
        raise FieldError(prefix + "file_bytes", "required for gguf: the file size is the weight size")
    return WeightFormat(dtype, _text(item, "repo", prefix=prefix), file_bytes, str(item.get("note") or ""))


def _parse_formats(data: Mapping[str, Any]) -> tuple[WeightFormat, ...]:
    raw = _field(data, "formats")
    if not isinstance(raw, list) or not raw:
        raise FieldError("formats", "must be a non-empty list")
    formats = tuple(_parse_format(item, i) for i, item in enumerate(raw))
    # The planner sizes GGUF weights by "the" file; two would make that ambiguous.
    if sum(f.dtype == "gguf" for f in formats) > 1:
        raise FieldError("formats", "at most one gguf file per entry; add another entry for another quant")
    native = _choice(data, "native_dtype", WEIGHT_DTYPES)
    if native not in {f.dtype for f in formats}:
        raise FieldError("native_dtype", f"{native!r} is not among the entry's formats")
    return formats


def _parse_sources(data: Mapping[str, Any]) -> Mapping[str, str]:
    raw = _field(data, "sources")
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) and v for v in raw.values()):
        raise FieldError("sources", "must map each figure to a citation string")
    if "config" not in raw:
        raise FieldError("sources", "must cite the config.json the architecture figures come from ('config')")
    return dict(raw)


def validate_entry(data: Mapping[str, Any]) -> ModelEntry:
    """Check one raw entry (shipped or admin-added) and build it; raise FieldError naming the bad field."""
    if not isinstance(data, Mapping):
        raise FieldError("entry", "must be an object")
    unknown = sorted(set(data) - _ENTRY_KEYS)
    if unknown:
        raise FieldError(unknown[0], "unknown field")
    return ModelEntry(
        slug=_text(data, "slug", SLUG_RE),
        display_name=_text(data, "display_name"),
        family=_text(data, "family", SLUG_RE),
        hf_repo=_text(data, "hf_repo", HF_REPO_RE),
        served_model_name=_text(data, "served_model_name"),
        base_model=_optional_text(data, "base_model"),
        architecture=str(data.get("architecture") or ""),
        native_dtype=_choice(data, "native_dtype", WEIGHT_DTYPES),
        formats=_parse_formats(data),
        licence=_text(data, "licence"),
        is_reasoning=_flag(data, "is_reasoning"),
        sources=_parse_sources(data),
        **_parse_architecture(data),
    )


def _resolve_extends(raw_entries: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Expand `"extends": "<slug>"`: copy that entry, override the given keys, merge `sources`."""
    by_slug = {item.get("slug"): item for item in raw_entries}
    resolved = []
    for item in raw_entries:
        base_slug = item.get("extends")
        if base_slug is None:
            resolved.append(dict(item))
            continue
        base = by_slug.get(base_slug)
        if base is None or "extends" in base:
            raise FieldError("extends", f"{base_slug!r} must name an entry that does not itself extend")
        merged = {**base, **{k: v for k, v in item.items() if k != "extends"}}
        merged["sources"] = {**base.get("sources", {}), **item.get("sources", {})}
        resolved.append(merged)
    return resolved


def load_catalog(path: Path | None = None) -> Mapping[str, ModelEntry]:
    """Read and validate a catalog file (the shipped one by default), keyed by slug."""
    document = json.loads((path or DATA_FILE).read_text(encoding="utf-8"))
    entries: dict[str, ModelEntry] = {}
    for raw in _resolve_extends(document["models"]):
        entry = validate_entry(raw)
        if entry.slug in entries:
            raise FieldError("slug", f"duplicate {entry.slug!r}")
        entries[entry.slug] = entry
    return MappingProxyType(entries)


@lru_cache(maxsize=1)
def default_catalog() -> Mapping[str, ModelEntry]:
    """The shipped catalog, read once per process."""
    return load_catalog()


def get_model(slug: str, catalog: Mapping[str, ModelEntry] | None = None) -> ModelEntry:
    """Look a model up by slug; KeyError names the slug when it is not in the catalog."""
    entries = default_catalog() if catalog is None else catalog
    try:
        return entries[slug]
    except KeyError:
        raise KeyError(f"no model {slug!r} in the catalog") from None
