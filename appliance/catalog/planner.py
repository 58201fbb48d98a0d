"""Capacity planner: will a catalog model fit on these GPUs, and how many streams will its KV cache hold?

Arithmetic over catalog facts only: no Django, no GPU access. `docs/capacity.md` explains every
constant below with its source and walks through the 32B Standard tier by hand.

The model, per GPU (vLLM): `memory × gpu_memory_utilization − engine reserve` is the budget; the
weights' share (`weights / (tensor_parallel × pipeline_parallel)`) comes out first and the rest is
KV cache. Tokens in cache = KV bytes free per GPU ÷ KV bytes one token takes on that GPU; concurrent
sequences = tokens ÷ context length (every sequence may grow to the full context).

For GGUF on llama.cpp or Ollama, layers rather than tensors are split: Unsloth's rule picks how many
layers go to the GPUs, the rest (weights and their share of the KV cache) stays in host RAM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from appliance.catalog.catalog import WEIGHT_DTYPES, FieldError, ModelEntry, get_model
from appliance.engines.registry import ENGINES, GGUF_ENGINES

GIB = 1024**3
MIB = 1024**2

# Bytes per parameter of weights held on the GPU (NVIDIA NIM's sizing table uses the same figures).
BYTES_PER_PARAM: Mapping[str, float] = {
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "int4-awq": 0.5,
    "int4-gptq": 0.5,
}
# AWQ and GPTQ store a 16-bit scale and a 4-bit zero point per group of 128 weights: 20 bits over 128
# weights is 0.16 bit per weight, 3.9 % on top of 4 bits; rounded up.
INT4_GROUP_OVERHEAD = 0.04
# Quantised checkpoints (DeepSeek's native FP8, AWQ, GPTQ, W8A8) leave the input embeddings and LM head in
# 16 bits. With a 152k-token vocabulary that is a quarter of a 1.5B model, so it is counted, not ignored.
EMBEDDING_BYTES_PER_PARAM = 2

KV_DTYPE_BYTES: Mapping[str, int] = {"bf16": 2, "fp16": 2, "fp8": 1}
# kv_dtype "auto" is the activation dtype, 16-bit for every catalog model even when its weights are FP8,
# INT4 or GGUF: vLLM's --kv-cache-dtype auto follows the model dtype (fp16 when served with --dtype half,
# otherwise bfloat16 as in each config.json) and llama.cpp's default --cache-type-k/-v is f16.
AUTO_KV_DTYPE: Mapping[str, str] = {"vllm": "bf16", "ollama": "fp16", "llamacpp": "fp16"}

# llama.cpp caches MLA's compressed latent only for GGUFs converted after its MLA support (PR #12801, April
# 2025); older files, such as Unsloth's January 2025 R1 quants in the catalog, make it cache the expanded
# per-head K (192) and V (128) of all 128 heads: 71 times the latent. The planner assumes the older files.
GGUF_MLA_LATENT_CACHE = False

# Per-GPU memory an engine needs besides weights and KV cache, taken out of the utilisation share.
ENGINE_RESERVE_BYTES: Mapping[str, int] = {
    # vLLM profiles a forward pass at --max-num-batched-tokens and keeps its activation peak (about 1 GiB,
    # mostly the sampler's logits) plus non-torch memory (NCCL buffers, cuBLAS workspace, a few hundred MiB)
    # out of the KV cache. CUDA graphs are captured afterwards in the (1 − utilisation) headroom.
    "vllm": int(1.5 * GIB),
    # llama.cpp (and Ollama, which runs it) allocates compute buffers on each GPU; with a 2048-token batch
    # they stay under 1 GiB even for DeepSeek-R1.
    "ollama": 1 * GIB,
    "llamacpp": 1 * GIB,
}
# Host RAM the llama.cpp/Ollama process needs besides CPU-resident layers and their KV cache: the CPU
# compute buffer, tokenizer and process itself.
HOST_RESERVE_BYTES = 512 * MIB

# Unsloth's rule for DeepSeek-R1 dynamic quants: n_offload = floor(VRAM / file size × n_layers) − 4.
UNSLOTH_LAYER_MARGIN = 4
# Largest GPU count searched when stating how many GPUs a model needs.
MAX_SEARCH_GPUS = 64

DTYPE_CHOICES = ("auto", *WEIGHT_DTYPES)
KV_DTYPE_CHOICES = ("auto", *KV_DTYPE_BYTES)


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What the admin asks about. `model` is a catalog slug or an entry (e.g. a custom one not yet saved)."""

    model: str | ModelEntry
    gpu_count: int
    memory_per_gpu_gib: float
    context_length: int = 4096
    gpu_memory_utilization: float = 0.9  # vLLM's default
    tensor_parallel: int | None = None  # None: the largest vLLM accepts on gpu_count / pipeline_parallel GPUs
    pipeline_parallel: int = 1
    dtype: str = "auto"  # auto: the entry's native format
    kv_dtype: str = "auto"
    engine: str = "vllm"
    cpu_ram_gib: float | None = None  # host RAM, checked for GGUF engines only


@dataclass(frozen=True, slots=True)
class Plan:
    """The answer, sizes in bytes. `kv_bytes_per_token` is the whole model's, before any sharding."""

    model: str
    engine: str
    dtype: str
    kv_dtype: str
    context_length: int
    gpus_used: int
    tensor_parallel: int
    pipeline_parallel: int
    suggested_tensor_parallel: int | None  # smallest that fits on the GPUs given; None if none does
    weights_bytes: int
    weights_bytes_per_gpu: int
    reserve_bytes_per_gpu: int
    kv_bytes_per_token: int
    kv_cache_bytes: int  # usable for KV, summed over GPUs (and host RAM for GGUF engines)
    max_tokens_in_cache: int
    max_concurrent_sequences: int  # at `context_length` each
    fits: bool
    reason: str
    n_gpu_layers: int | None  # GGUF engines only
    cpu_ram_bytes: int | None  # GGUF engines only: host RAM for CPU layers, their KV and the process

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The keys of `Plan.to_dict()`, in order; the API serialises exactly these.
PLAN_KEYS = tuple(f.name for f in fields(Plan))


# --- formulas ------------------------------------------------------------------------------------------------


def weights_bytes(entry: ModelEntry, dtype: str) -> int:
    """Bytes the weights take in `dtype`; for GGUF the file size, which already includes every overhead."""
    if dtype == "gguf":
        if entry.gguf_file_bytes is None:
            raise FieldError("dtype", f"{entry.slug} has no GGUF file")
        return entry.gguf_file_bytes
    per_param = BYTES_PER_PARAM[dtype]
    if per_param >= EMBEDDING_BYTES_PER_PARAM:
        return math.ceil(entry.parameters * per_param)
    body = entry.parameters - entry.embedding_parameters
    overhead = 1 + INT4_GROUP_OVERHEAD if per_param < 1 else 1.0
    return math.ceil(body * per_param * overhead) + entry.embedding_parameters * EMBEDDING_BYTES_PER_PARAM


def kv_bytes_per_token(entry: ModelEntry, kv_dtype_bytes: int, latent: bool = True) -> int:
    """KV cache bytes of one token over all layers: 2·layers·kv_heads·head_dim·b, or (rank + rope)·layers·b for MLA.

    `latent=False` is MLA cached the pre-MLA way, every head's K (nope + rope) and V: layers·heads·(192 + 128)·b.
    """
    mla, layers = entry.mla, entry.num_hidden_layers
    if mla is not None and latent:
        return (mla.kv_lora_rank + mla.qk_rope_head_dim) * layers * kv_dtype_bytes
    if mla is not None:
        head_bytes = mla.qk_nope_head_dim + mla.qk_rope_head_dim + mla.v_head_dim
        return layers * entry.num_attention_heads * head_bytes * kv_dtype_bytes
    assert entry.head_dim is not None  # validate_entry requires it for gqa/mha
    return 2 * entry.num_hidden_layers * entry.num_key_value_heads * entry.head_dim * kv_dtype_bytes


def kv_bytes_per_token_per_gpu(entry: ModelEntry, kv_dtype_bytes: int, tp: int, pp: int) -> int:
    """The share of one token's KV cache that the busiest GPU holds under tensor × pipeline parallelism."""
    layers = math.ceil(entry.num_hidden_layers / pp)
    if entry.mla is not None:
        # The latent is one vector per token, not per head, so it cannot be split: every TP rank keeps all of it.
        return (entry.mla.kv_lora_rank + entry.mla.qk_rope_head_dim) * layers * kv_dtype_bytes
    assert entry.head_dim is not None
    # With more ranks than KV heads, vLLM gives each rank a copy of one head rather than a fraction.
    heads = max(entry.num_key_value_heads // tp, 1)
    return 2 * layers * heads * entry.head_dim * kv_dtype_bytes


def tensor_parallel_error(entry: ModelEntry, tp: int) -> str | None:
    """Why vLLM would refuse this tensor-parallel size for the model, or None if it accepts it."""
    if entry.num_attention_heads % tp:
        return f"must divide the {entry.num_attention_heads} attention heads"
    kv_heads = entry.num_key_value_heads
    if entry.mla is None and kv_heads % tp and tp % kv_heads:
        return f"must divide the {kv_heads} KV heads, or be a multiple of them"
    return None


def unsloth_gpu_layers(vram_gib: float, file_bytes: int, n_layers: int) -> int:
    """Unsloth's published rule, floor(VRAM / file size × n_layers) − 4, clamped to [0, n_layers].

    Both sizes in GiB: Unsloth's "131GB" for UD-IQ1_S is 130.6 GiB of shards and its "24GB GPU" a 24 GiB card.
    """
    offload = math.floor(vram_gib / (file_bytes / GIB) * n_layers) - UNSLOTH_LAYER_MARGIN
    return min(max(offload, 0), n_layers)


# --- validation ----------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_hardware(req: PlanRequest) -> None:
    if req.engine not in ENGINES:
        raise FieldError("engine", f"{req.engine!r} is not one of {', '.join(ENGINES)}")
    minimum = 0 if req.engine in GGUF_ENGINES else 1  # llama.cpp and Ollama also run on CPU alone
    if not _is_int(req.gpu_count) or req.gpu_count < minimum:
        raise FieldError("gpu_count", f"must be an integer ≥ {minimum} for {req.engine}")
    if req.gpu_count and not req.memory_per_gpu_gib > 0:
        raise FieldError("memory_per_gpu_gib", "must be > 0")
    if not 0 < req.gpu_memory_utilization <= 1:
        raise FieldError("gpu_memory_utilization", "must be in (0, 1]")
    if req.cpu_ram_gib is not None and not req.cpu_ram_gib > 0:
        raise FieldError("cpu_ram_gib", "must be > 0 when given")
    if req.gpu_count == 0 and req.cpu_ram_gib is None:
        raise FieldError("cpu_ram_gib", "required for a CPU-only plan (gpu_count 0)")


def _validate_context(req: PlanRequest, entry: ModelEntry) -> None:
    if not _is_int(req.context_length) or req.context_length < 1:
        raise FieldError("context_length", "must be an integer ≥ 1")
    if req.context_length > entry.max_position_embeddings:
        raise FieldError(
            "context_length",
            f"{req.context_length} exceeds {entry.slug}'s max_position_embeddings {entry.max_position_embeddings}",
        )


def _validate_parallelism(req: PlanRequest, entry: ModelEntry) -> None:
    tp, pp = req.tensor_parallel, req.pipeline_parallel
    if not _is_int(pp) or not 1 <= pp <= entry.num_hidden_layers:
        raise FieldError("pipeline_parallel", f"must be an integer from 1 to {entry.num_hidden_layers} (layers)")
    if tp is not None and (not _is_int(tp) or tp < 1):
        raise FieldError("tensor_parallel", "must be an integer ≥ 1")
    if req.engine in GGUF_ENGINES:
        if (tp or 1) > 1 or pp > 1:
            field = "tensor_parallel" if (tp or 1) > 1 else "pipeline_parallel"
            raise FieldError(field, f"{req.engine} splits layers across GPUs by itself: leave it at 1")
        return
    used = (tp or 1) * pp
    if used > req.gpu_count:
        field = "tensor_parallel" if tp else "pipeline_parallel"
        raise FieldError(field, f"tensor_parallel × pipeline_parallel = {used} exceeds gpu_count {req.gpu_count}")
    error = tensor_parallel_error(entry, tp) if tp else None
    if error:
        raise FieldError("tensor_parallel", f"{tp} {error}")


def _resolve_dtypes(req: PlanRequest, entry: ModelEntry) -> tuple[str, str]:
    """The weight and KV dtypes the plan uses, after checking they suit the model and engine."""
    if req.dtype not in DTYPE_CHOICES:
        raise FieldError("dtype", f"{req.dtype!r} is not one of {', '.join(DTYPE_CHOICES)}")
    if req.kv_dtype not in KV_DTYPE_CHOICES:
        raise FieldError("kv_dtype", f"{req.kv_dtype!r} is not one of {', '.join(KV_DTYPE_CHOICES)}")
    dtype = entry.native_dtype if req.dtype == "auto" else req.dtype
    wants_gguf = req.engine in GGUF_ENGINES
    if wants_gguf and req.kv_dtype == "fp8":
        raise FieldError("kv_dtype", f"{req.engine} caches in f16 or bf16 (its q8_0/q4_0 caches are not modelled)")
    if wants_gguf and (dtype != "gguf" or entry.gguf_file_bytes is None):
        raise FieldError("dtype", f"{req.engine} serves GGUF files: choose a catalog entry that has one")
    if not wants_gguf and dtype == "gguf":
        raise FieldError("dtype", f"{entry.slug} is a GGUF file: plan it for llamacpp or ollama, or pick a dtype")
    kv_dtype = req.kv_dtype
    if kv_dtype == "auto":
        # vLLM's cache follows --dtype: half when the weights are served in fp16, bfloat16 otherwise.
        kv_dtype = "fp16" if dtype == "fp16" else AUTO_KV_DTYPE[req.engine]
    return dtype, kv_dtype


def _entry(req: PlanRequest, catalog: Mapping[str, ModelEntry] | None) -> ModelEntry:
    if isinstance(req.model, ModelEntry):
        return req.model
    try:
        return get_model(req.model, catalog)
    except KeyError as exc:
        raise FieldError("model", str(exc.args[0])) from None


# --- planning ------------------------------------------------------------------------------------------------


def plan(request: PlanRequest, catalog: Mapping[str, ModelEntry] | None = None) -> Plan:
    """Validate the request (FieldError names the field) and size the deployment."""
    entry = _entry(request, catalog)
    _validate_hardware(request)
    _validate_context(request, entry)
    _validate_parallelism(request, entry)
    dtype, kv_dtype = _resolve_dtypes(request, entry)
    if request.engine in GGUF_ENGINES:
        return _plan_gguf(request, entry, kv_dtype)
    return _plan_vllm(request, entry, dtype, kv_dtype)


def _gpu_budget(req: PlanRequest) -> int:
    """Bytes per GPU the engine may fill with weights and KV cache."""
    return int(req.memory_per_gpu_gib * GIB * req.gpu_memory_utilization) - ENGINE_RESERVE_BYTES[req.engine]


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


def _gpus(count: int, memory_gib: float) -> str:
    return ngettext("%(count)d × %(memory)s GiB GPU", "%(count)d × %(memory)s GiB GPUs", count) % {
        "count": count,
        "memory": f"{memory_gib:g}",
    }


@dataclass(frozen=True, slots=True)
class _Layout:
    """One tensor × pipeline split evaluated on one GPU (all GPUs alike; the busiest pipeline stage)."""

    tp: int
    pp: int
    budget: int
    weights_per_gpu: int
    kv_per_token_per_gpu: int

    @property
    def kv_free_per_gpu(self) -> int:
        return max(self.budget - self.weights_per_gpu, 0)

    @property
    def max_tokens(self) -> int:
        return self.kv_free_per_gpu // self.kv_per_token_per_gpu

    def fits(self, context_length: int) -> bool:
        return self.weights_per_gpu <= self.budget and self.max_tokens >= context_length

    def describe(self) -> str:
        if self.pp > 1:
            return _("tensor parallel %(tp)d, pipeline parallel %(pp)d") % {"tp": self.tp, "pp": self.pp}
        return _("tensor parallel %(tp)d") % {"tp": self.tp}


def _layouts(req: PlanRequest, entry: ModelEntry, weights: int, kv_dtype: str, up_to: int) -> list[_Layout]:
    """Every tensor-parallel size vLLM accepts for this model, with up to `up_to` GPUs in all."""
    pp, budget, kv_bytes = req.pipeline_parallel, _gpu_budget(req), KV_DTYPE_BYTES[kv_dtype]
    return [
        _Layout(tp, pp, budget, -(-weights // (tp * pp)), kv_bytes_per_token_per_gpu(entry, kv_bytes, tp, pp))
        for tp in range(1, up_to // pp + 1)
        if tensor_parallel_error(entry, tp) is None
    ]


def _plan_vllm(req: PlanRequest, entry: ModelEntry, dtype: str, kv_dtype: str) -> Plan:
    weights, context = weights_bytes(entry, dtype), req.context_length
    candidates = _layouts(req, entry, weights, kv_dtype, max(MAX_SEARCH_GPUS, req.gpu_count))
    available = [layout for layout in candidates if layout.tp * layout.pp <= req.gpu_count]
    fitting = [layout for layout in available if layout.fits(context)]
    needed = next((layout for layout in candidates if layout.fits(context)), None)
    # Unless told otherwise, one engine spans all the GPUs given: more tensor parallelism leaves more room for KV.
    wanted = req.tensor_parallel or available[-1].tp
    chosen = next(layout for layout in available if layout.tp == wanted)
    tokens = chosen.max_tokens if chosen.weights_per_gpu <= chosen.budget else 0
    gpus_used = chosen.tp * chosen.pp
    return Plan(
        model=entry.slug, engine=req.engine, dtype=dtype, kv_dtype=kv_dtype, context_length=context,
        gpus_used=gpus_used, tensor_parallel=chosen.tp, pipeline_parallel=chosen.pp,
        suggested_tensor_parallel=fitting[0].tp if fitting else None,
        weights_bytes=weights, weights_bytes_per_gpu=chosen.weights_per_gpu,
        reserve_bytes_per_gpu=ENGINE_RESERVE_BYTES[req.engine],
        kv_bytes_per_token=kv_bytes_per_token(entry, KV_DTYPE_BYTES[kv_dtype]),
        kv_cache_bytes=chosen.kv_free_per_gpu * gpus_used if tokens else 0,
        max_tokens_in_cache=tokens, max_concurrent_sequences=tokens // context,
        fits=chosen.fits(context), reason=_vllm_reason(req, chosen, needed, tokens),
        n_gpu_layers=None, cpu_ram_bytes=None,
    )  # fmt: skip


def _vllm_reason(req: PlanRequest, chosen: _Layout, needed: _Layout | None, tokens: int) -> str:
    memory, context = req.memory_per_gpu_gib, req.context_length
    found = _("found %(gpus)s") % {"gpus": _gpus(req.gpu_count, memory)}
    if chosen.fits(context):
        return found + _fits_words(chosen, needed, tokens, context, memory)
    if needed is None:
        need = _("does not fit on up to %(gpus)s") % {"gpus": _gpus(MAX_SEARCH_GPUS, memory)}
    else:
        need = _("needs %(gpus)s (%(layout)s)") % {
            "gpus": _gpus(needed.tp * needed.pp, memory),
            "layout": needed.describe(),
        }
    if chosen.weights_per_gpu > chosen.budget:
        why = _(
            "weights need %(weights)s per GPU but only %(budget)s is left after %(utilisation)s utilisation and "
            "the %(reserve)s engine reserve"
        ) % {
            "weights": _gib(chosen.weights_per_gpu), "budget": _gib(chosen.budget),
            "utilisation": f"{req.gpu_memory_utilization:.0%}", "reserve": _gib(ENGINE_RESERVE_BYTES[req.engine]),
        }  # fmt: skip
    else:
        why = _("the KV cache holds %(tokens)s tokens, less than one sequence of %(context)s") % {
            "tokens": f"{tokens:,}", "context": f"{context:,}",
        }  # fmt: skip
    return _("%(need)s; %(found)s: does not fit with %(layout)s: %(why)s") % {
        "need": need, "found": found, "layout": chosen.describe(), "why": why,
    }  # fmt: skip


def _fits_words(chosen: _Layout, needed: _Layout | None, tokens: int, context: int, memory: float) -> str:
    """What runs comes first; the smallest layout that would also fit is a footnote, not a "needs" that
    reads as if it contradicted the chosen one (which spans all the GPUs given, for more KV cache)."""
    text = _(
        ": fits with %(layout)s; %(weights)s of weights and %(kv)s of KV cache per GPU hold %(tokens)s tokens = "
        "%(sequences)d concurrent sequences of %(context)s tokens"
    ) % {
        "layout": chosen.describe(), "weights": _gib(chosen.weights_per_gpu), "kv": _gib(chosen.kv_free_per_gpu),
        "tokens": f"{tokens:,}", "sequences": tokens // context, "context": f"{context:,}",
    }  # fmt: skip
    if needed is not None and (needed.tp, needed.pp) != (chosen.tp, chosen.pp):
        text += _(" (the smallest layout that fits: %(gpus)s, %(layout)s)") % {
            "gpus": _gpus(needed.tp * needed.pp, memory), "layout": needed.describe(),
        }  # fmt: skip
    return text


# --- GGUF on llama.cpp / Ollama ------------------------------------------------------------------------------


def _share(total: int, part: int, whole: int) -> int:
    """`part`/`whole` of `total`, rounded up (bytes of the layers on one side of the GPU/CPU split)."""
    return -(-total * part // whole)


def _gguf_gpu_layers(req: PlanRequest, entry: ModelEntry, file_bytes: int, kv_per_token: int) -> tuple[int, int]:
    """(Unsloth's figure, layers actually offloaded): following Unsloth's advice, step down while it would not fit."""
    if req.gpu_count == 0:
        return 0, 0
    layers, pool = entry.num_hidden_layers, req.gpu_count * _gpu_budget(req)
    rule = unsloth_gpu_layers(req.gpu_count * req.memory_per_gpu_gib, file_bytes, layers)
    offload = rule
    # Unsloth: "reduce by 1 if it goes out of memory"; done here, against the weights plus one full context.
    while offload and _share(file_bytes + kv_per_token * req.context_length, offload, layers) > pool:
        offload -= 1
    return rule, offload


def _gguf_tokens(req: PlanRequest, entry: ModelEntry, file_bytes: int, kv_per_token: int, offload: int) -> int:
    """Tokens of KV cache that fit on both sides: GPU layers' KV on the GPUs, the rest in host RAM."""
    layers, limits = entry.num_hidden_layers, []
    if offload:
        gpu_free = req.gpu_count * _gpu_budget(req) - _share(file_bytes, offload, layers)
        limits.append(max(gpu_free, 0) * layers // (kv_per_token * offload))
    if offload < layers and req.cpu_ram_gib is not None:
        cpu_weights = file_bytes - _share(file_bytes, offload, layers)
        host_free = int(req.cpu_ram_gib * GIB) - HOST_RESERVE_BYTES - cpu_weights
        limits.append(max(host_free, 0) * layers // (kv_per_token * (layers - offload)))
    return min(limits) if limits else 0


def _plan_gguf(req: PlanRequest, entry: ModelEntry, kv_dtype: str) -> Plan:
    file_bytes, layers, context = entry.gguf_file_bytes or 0, entry.num_hidden_layers, req.context_length
    kv_per_token = kv_bytes_per_token(entry, KV_DTYPE_BYTES[kv_dtype], latent=GGUF_MLA_LATENT_CACHE)
    rule, offload = _gguf_gpu_layers(req, entry, file_bytes, kv_per_token)
    gpu_weights = _share(file_bytes, offload, layers)
    cpu_ram = file_bytes - gpu_weights + _share(kv_per_token * context, layers - offload, layers) + HOST_RESERVE_BYTES
    tokens = _gguf_tokens(req, entry, file_bytes, kv_per_token, offload)
    host_ok = req.cpu_ram_gib is None or cpu_ram <= req.cpu_ram_gib * GIB
    fits = tokens >= context and host_ok
    return Plan(
        model=entry.slug, engine=req.engine, dtype="gguf", kv_dtype=kv_dtype, context_length=context,
        gpus_used=req.gpu_count if offload else 0, tensor_parallel=1, pipeline_parallel=1,
        suggested_tensor_parallel=None, weights_bytes=file_bytes,
        weights_bytes_per_gpu=gpu_weights // req.gpu_count if req.gpu_count else 0,
        reserve_bytes_per_gpu=ENGINE_RESERVE_BYTES[req.engine], kv_bytes_per_token=kv_per_token,
        kv_cache_bytes=tokens * kv_per_token, max_tokens_in_cache=tokens, max_concurrent_sequences=tokens // context,
        fits=fits, reason=_gguf_reason(req, layers, (rule, offload), cpu_ram, tokens, fits),
        n_gpu_layers=offload, cpu_ram_bytes=cpu_ram,
    )  # fmt: skip


def _gguf_reason(req: PlanRequest, layers: int, offload: tuple[int, int], cpu_ram: int, tokens: int, fits: bool) -> str:
    rule, on_gpu = offload
    if req.gpu_count == 0:
        split = _("CPU only: all %(layers)d layers in host RAM") % {"layers": layers}
    else:
        words = {"on_gpu": on_gpu, "layers": layers, "gpus": _gpus(req.gpu_count, req.memory_per_gpu_gib), "rule": rule}
        if on_gpu < rule:
            split = (
                _("%(on_gpu)d of %(layers)d layers on %(gpus)s, stepped down from Unsloth's %(rule)d to fit") % words
            )
        else:
            split = _("%(on_gpu)d of %(layers)d layers on %(gpus)s (Unsloth's rule)") % words
    if req.cpu_ram_gib is None:
        host = _("needs %(ram)s of host RAM (not checked: cpu_ram_gib not given)") % {"ram": _gib(cpu_ram)}
    else:
        host = _("needs %(ram)s of host RAM, found %(found)s GiB") % {
            "ram": _gib(cpu_ram), "found": f"{req.cpu_ram_gib:g}",
        }  # fmt: skip
    context = req.context_length
    cache = _("the KV cache holds %(tokens)s tokens = %(sequences)d concurrent sequences of %(context)s tokens") % {
        "tokens": f"{tokens:,}", "sequences": tokens // context, "context": f"{context:,}",
    }  # fmt: skip
    verdict = _("fits") if fits else _("does not fit")
    return f"{split}; {host}: {verdict}; {cache}"
