"""`manage.py capacity`: the capacity planner on the command line (see docs/capacity.md)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from collections.abc import Mapping
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from appliance.catalog.catalog import FieldError, ModelEntry, default_catalog
from appliance.catalog.planner import DTYPE_CHOICES, KV_DTYPE_CHOICES, PLAN_KEYS, Plan, PlanRequest, plan
from appliance.catalog.specs import field_message
from appliance.engines.registry import ENGINES

# Planner field -> this command's option, so an error names what the admin typed.
OPTIONS = {
    "model": "--model",
    "gpu_count": "--gpus",
    "memory_per_gpu_gib": "--gpu-memory",
    "context_length": "--context",
    "dtype": "--dtype",
    "kv_dtype": "--kv-dtype",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "tensor_parallel": "--tp",
    "pipeline_parallel": "--pp",
    "engine": "--engine",
    "cpu_ram_gib": "--cpu-ram",
}
GIB = 1024**3


def _catalog() -> Mapping[str, ModelEntry]:
    """Shipped and custom entries; the shipped ones alone when the database is not reachable or migrated."""
    from appliance.catalog.services import merged_catalog

    try:
        return merged_catalog()
    except DatabaseError:
        return default_catalog()


def _value(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and "bytes" in key:
        return f"{value:,} B ({value / GIB:.2f} GiB)" if value >= GIB else f"{value:,} B"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_table(result: Plan) -> str:
    data = result.to_dict()
    width = max(len(key) for key in PLAN_KEYS)
    return "\n".join(f"{key.ljust(width)}  {_value(key, data[key])}" for key in PLAN_KEYS)


class Command(BaseCommand):
    help = "Plan a model on GPUs: weights, KV cache, tokens in cache, concurrent sequences, fit."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--model", required=True, help="catalog slug, e.g. deepseek-r1-distill-qwen-32b")
        parser.add_argument("--gpus", type=int, required=True, help="number of GPUs (0: CPU only, GGUF engines)")
        parser.add_argument("--gpu-memory", type=float, default=0.0, help="memory per GPU in GiB")
        parser.add_argument("--context", type=int, required=True, help="context length in tokens")
        parser.add_argument("--dtype", default="auto", help=f"weights: {', '.join(DTYPE_CHOICES)}")
        parser.add_argument("--kv-dtype", default="auto", help=f"KV cache: {', '.join(KV_DTYPE_CHOICES)}")
        parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
        parser.add_argument("--tp", type=int, default=None, help="tensor parallel size (default: all GPUs / pp)")
        parser.add_argument("--pp", type=int, default=1, help="pipeline parallel size")
        parser.add_argument("--engine", default="vllm", help=f"one of {', '.join(ENGINES)}")
        parser.add_argument("--cpu-ram", type=float, default=None, help="host RAM in GiB (llama.cpp, Ollama)")
        parser.add_argument("--json", action="store_true", help="print Plan.to_dict() as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        request = PlanRequest(
            model=options["model"],
            gpu_count=options["gpus"],
            memory_per_gpu_gib=options["gpu_memory"],
            context_length=options["context"],
            gpu_memory_utilization=options["gpu_memory_utilization"],
            tensor_parallel=options["tp"],
            pipeline_parallel=options["pp"],
            dtype=options["dtype"],
            kv_dtype=options["kv_dtype"],
            engine=options["engine"],
            cpu_ram_gib=options["cpu_ram"],
        )
        try:
            result = plan(request, _catalog())
        except FieldError as exc:
            raise CommandError(f"{OPTIONS.get(exc.field, exc.field)} ({exc.field}): {field_message(exc)}") from None
        if options["json"]:
            self.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        else:
            self.stdout.write(render_table(result))
