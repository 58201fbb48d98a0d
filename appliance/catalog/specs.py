"""Checking a profile's spec, with every error naming the profile's own field.

The numbers go through the capacity planner's validation (one set of rules for the calculator, the
CLI and profiles); the planner's field names are translated to the profile's (`gpu_count` is
`gpus_per_node` here, `context_length` is `max_model_len`). Extra engine arguments go through the
engine adapter's own check, so a profile is refused for exactly the flags a deployment would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from appliance.catalog.catalog import FieldError, ModelEntry
from appliance.catalog.choices import CHAT_TASKS, DEFAULT_CHAT_DEFAULTS, GPU_OPTIONAL_ENGINES, TEMPERATURE_MAX
from appliance.catalog.planner import Plan, PlanRequest, plan

# Planner field -> profile field, for the fields whose names differ.
PLANNER_FIELDS = {
    "gpu_count": "gpus_per_node",
    "memory_per_gpu_gib": "min_gpu_memory_gib",
    "context_length": "max_model_len",
    "dtype": "precision",
}


class ExtraArgsError(FieldError):
    """Extra engine arguments the engine would refuse; carries the engine's known flags."""

    def __init__(self, message: str, known: list[str], unknown: list[str]) -> None:
        super().__init__("extra_args", message)
        self.message = message
        self.known = known
        self.unknown = unknown


def field_message(exc: FieldError) -> str:
    """The message of a FieldError without its "field: " prefix."""
    return str(exc).removeprefix(f"{exc.field}: ")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plan_request(spec: Mapping[str, Any], **overrides: Any) -> PlanRequest:
    """The planner's question for a spec (all its GPUs, its minimum memory); `overrides` replace fields."""
    request = PlanRequest(
        model=spec["model"],
        gpu_count=spec["nodes"] * spec["gpus_per_node"],
        memory_per_gpu_gib=spec.get("min_gpu_memory_gib") or 0,
        context_length=spec["max_model_len"],
        gpu_memory_utilization=spec["gpu_memory_utilization"],
        tensor_parallel=spec["tensor_parallel"],
        pipeline_parallel=spec["pipeline_parallel"],
        dtype=spec["precision"],
        kv_dtype=spec["kv_dtype"],
        engine=spec["engine"],
        cpu_ram_gib=spec.get("cpu_ram_gib"),
    )
    return replace(request, **overrides)


def planned(request: PlanRequest, catalog: Mapping[str, ModelEntry]) -> Plan:
    """`plan()` with the planner's field names turned into the profile's."""
    try:
        return plan(request, catalog)
    except FieldError as exc:
        raise FieldError(PLANNER_FIELDS.get(exc.field, exc.field), field_message(exc)) from None


def _check_layout(spec: Mapping[str, Any]) -> None:
    nodes, gpus, engine = spec["nodes"], spec["gpus_per_node"], spec["engine"]
    if not _is_int(nodes) or nodes < 1:
        raise FieldError("nodes", "must be an integer ≥ 1")
    if engine in GPU_OPTIONAL_ENGINES and nodes != 1:
        raise FieldError("nodes", f"{engine} runs on one node")
    if not _is_int(gpus) or gpus < 0:
        raise FieldError("gpus_per_node", "must be an integer ≥ 0")
    memory = spec.get("min_gpu_memory_gib")
    if gpus and memory is None:
        raise FieldError("min_gpu_memory_gib", "required when the profile has GPUs")
    if memory is not None and (not _is_number(memory) or memory <= 0):
        raise FieldError("min_gpu_memory_gib", "must be > 0")
    tp = spec["tensor_parallel"]
    if nodes > 1 and _is_int(tp) and tp > gpus:
        raise FieldError("tensor_parallel", f"must be ≤ gpus_per_node ({gpus}): tensor parallel stays inside a node")


def _check_optional_counts(spec: Mapping[str, Any]) -> None:
    for name in ("max_num_seqs", "reference_price_cny", *_RANGES, *_RANGES.values()):
        value = spec.get(name)
        if value is not None and (not _is_int(value) or value < (1 if name == "max_num_seqs" else 0)):
            raise FieldError(name, f"must be an integer ≥ {1 if name == 'max_num_seqs' else 0}")
    for low, high in _RANGES.items():
        if spec.get(low) is not None and spec.get(high) is not None and spec[low] > spec[high]:
            raise FieldError(high, f"must be ≥ {low}")


_RANGES = {"concurrency_min": "concurrency_max", "requests_per_second_min": "requests_per_second_max"}


def chat_defaults(value: Any) -> dict[str, float]:
    """DeepSeek's defaults overridden by `value`; refuses unknown tasks and temperatures outside [0, 2]."""
    if value is None:
        return dict(DEFAULT_CHAT_DEFAULTS)
    if not isinstance(value, Mapping):
        raise FieldError("chat_defaults", "must be an object mapping a task to a temperature")
    unknown = sorted(set(value) - set(CHAT_TASKS))
    if unknown:
        raise FieldError("chat_defaults", f"unknown task {unknown[0]!r}; tasks are {', '.join(CHAT_TASKS)}")
    for task, temperature in value.items():
        if not _is_number(temperature) or not 0 <= temperature <= TEMPERATURE_MAX:
            raise FieldError("chat_defaults", f"{task}: temperature must be a number from 0 to {TEMPERATURE_MAX:g}")
    return {**DEFAULT_CHAT_DEFAULTS, **{task: float(t) for task, t in value.items()}}


def check_extra_args(engine: str, args: Any) -> None:
    """Refuse arguments the engine does not know, listing the ones it does."""
    from appliance.engines import FlagError, LlamaCppPythonEngine, engine_for

    if isinstance(args, Mapping):
        bad = [key for key, value in args.items() if not (_is_number(value) or isinstance(value, str | bool))]
        if bad:
            raise FieldError("extra_args", f"{bad[0]}: values must be strings, numbers or true for a switch")
    elif not isinstance(args, list) or not all(isinstance(token, str) for token in args):
        raise FieldError("extra_args", "must be an object {'--flag': value} or a list of string tokens")
    try:
        engine_for(engine).validate_extra_args(args)
    except FlagError as exc:
        # llama.cpp's flags depend on the image a deployment picks; the deployment checks again.
        if engine == "llamacpp" and _accepted(LlamaCppPythonEngine(), args):
            return
        raise ExtraArgsError(str(exc), exc.known, exc.unknown or exc.managed) from None


def _accepted(adapter: Any, args: Any) -> bool:
    from appliance.engines import FlagError

    try:
        adapter.validate_extra_args(args)
    except FlagError:
        return False
    return True


def validate_spec(spec: Mapping[str, Any], catalog: Mapping[str, ModelEntry]) -> Plan:
    """Check a complete spec; return the plan for its own hardware. FieldError names the profile field."""
    if spec["model"] not in catalog:
        raise FieldError("model", f"no model {spec['model']!r} in the catalog")
    _check_layout(spec)
    _check_optional_counts(spec)
    result = planned(plan_request(spec), catalog)
    check_extra_args(spec["engine"], spec["extra_args"])
    return result
