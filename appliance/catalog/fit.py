"""Fit check: can a profile run on the GPUs that are free, in the whole inventory or in one department's pool?

Three answers. *Fits as specified*: enough nodes hold enough free units of the profile's GPU type and
minimum memory, and the planner says its tensor × pipeline layout fits there. *Fits adapted*: the
planner finds a layout on what is free, with another tensor-parallel size, GPU count, node count or GPU
type; the changes are listed. *Does not fit*: what was needed, what is free, and the planner's reason.

The caller passes the free units per node (`HostNode`), so this module never touches the database;
`appliance.catalog.inventory` builds them from the GPU inventory. A profile without GPUs (llama.cpp or
Ollama on CPU) fits on any ready node whose RAM holds it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from appliance.catalog.catalog import FieldError, ModelEntry
from appliance.catalog.choices import MEMORY_TOLERANCE, FitStatus
from appliance.catalog.planner import Plan, plan
from appliance.catalog.specs import plan_request
from appliance.engines.registry import GGUF_ENGINES

_RANK = {FitStatus.FITS: 0, FitStatus.ADAPTED: 1, FitStatus.NO_FIT: 2}


@dataclass(frozen=True, slots=True)
class FreeUnit:
    """A free assignable unit: a whole GPU, or a MIG slice (its name then says so)."""

    gpu_name: str
    memory_gib: float


@dataclass(frozen=True, slots=True)
class HostNode:
    """A ready node with the free units this check may use."""

    name: str
    ram_gib: float | None
    units: tuple[FreeUnit, ...] = ()


@dataclass(frozen=True, slots=True)
class Fit:
    status: str
    summary: str
    changes: tuple[str, ...] = ()
    placement: Mapping[str, Any] | None = None
    plan: Plan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "summary": self.summary,
            "changes": list(self.changes),
            "placement": dict(self.placement) if self.placement else None,
            "plan": self.plan.to_dict() if self.plan else None,
        }


@dataclass(frozen=True, slots=True)
class _Kind:
    """Free units of one GPU type: (node, count) pairs, most first."""

    gpu_name: str
    memory_gib: float
    counts: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class _Option:
    kind: _Kind
    nodes: tuple[str, ...]
    gpus_per_node: int
    plan: Plan


def gpu_model_matches(gpu_model: str, gpu_name: str) -> bool:
    """'H20' matches 'NVIDIA H20 96GB' but not 'NVIDIA H200'; 'RTX 4090' matches 'NVIDIA GeForce RTX 4090'."""
    if not gpu_model.strip():
        return True
    words = r"\s*".join(re.escape(part) for part in gpu_model.split())
    return re.search(rf"(?<![a-z0-9]){words}(?![a-z0-9])", gpu_name, re.IGNORECASE) is not None


def _matches(spec: Mapping[str, Any], kind: _Kind) -> bool:
    enough = kind.memory_gib >= (spec["min_gpu_memory_gib"] or 0) * MEMORY_TOLERANCE
    return enough and gpu_model_matches(spec["gpu_model"], kind.gpu_name)


def _kinds(nodes: Sequence[HostNode]) -> list[_Kind]:
    per_kind: dict[tuple[str, float], dict[str, int]] = {}
    for node in nodes:
        for unit in node.units:
            key = (unit.gpu_name, round(unit.memory_gib, 2))
            per_kind.setdefault(key, {}).setdefault(node.name, 0)
            per_kind[key][node.name] += 1
    kinds = [
        _Kind(name, memory, tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0]))))
        for (name, memory), counts in per_kind.items()
    ]
    return sorted(kinds, key=lambda kind: (-kind.memory_gib, kind.gpu_name))


def _plan(spec: Mapping[str, Any], catalog: Mapping[str, ModelEntry], **overrides: Any) -> Plan | None:
    try:
        return plan(plan_request(spec, **overrides), catalog)
    except FieldError:
        return None  # a layout the planner refuses is simply not an option


def _ram(nodes: Sequence[HostNode], names: Sequence[str], spec: Mapping[str, Any]) -> float | None:
    known = [node.ram_gib for node in nodes if node.name in names and node.ram_gib]
    return min(known) if known else spec.get("cpu_ram_gib")


def _smallest(
    spec: Mapping[str, Any], catalog: Mapping[str, ModelEntry], kind: _Kind, names: tuple[str, ...], per_node: int
) -> _Option | None:
    """The fewest GPUs of `kind` on `names` that the planner fits (one pipeline stage per node)."""
    pp, gguf = len(names), spec["engine"] in GGUF_ENGINES
    base = {"memory_per_gpu_gib": kind.memory_gib, "pipeline_parallel": pp, "tensor_parallel": 1 if gguf else None}
    first = _plan(spec, catalog, gpu_count=per_node * pp, **base)
    if first is None or gguf or first.suggested_tensor_parallel is None:
        return None if first is None else _Option(kind, names, per_node, first)
    tp = first.suggested_tensor_parallel
    second = _plan(spec, catalog, gpu_count=tp * pp, **{**base, "tensor_parallel": tp})
    return None if second is None else _Option(kind, names, tp, second)


def _options(spec: Mapping[str, Any], catalog: Mapping[str, ModelEntry], kind: _Kind) -> list[_Option]:
    options: list[_Option | None] = []
    wanted, node_count = spec["gpus_per_node"], spec["nodes"]
    roomy = tuple(name for name, count in kind.counts if count >= wanted)
    if len(roomy) >= node_count:
        as_specified = _plan(spec, catalog, memory_per_gpu_gib=kind.memory_gib)
        if as_specified is not None:
            options.append(_Option(kind, roomy[:node_count], wanted, as_specified))
    best_node, best_count = kind.counts[0]
    options.append(_smallest(spec, catalog, kind, (best_node,), best_count))
    if node_count > 1 and len(kind.counts) >= node_count and spec["engine"] not in GGUF_ENGINES:
        top = kind.counts[:node_count]
        options.append(_smallest(spec, catalog, kind, tuple(n for n, _ in top), min(c for _, c in top)))
    return [option for option in options if option is not None]


def _changes(spec: Mapping[str, Any], option: _Option) -> tuple[str, ...]:
    changes = []
    if not _matches(spec, option.kind):
        wanted = f"{spec['gpu_model'] or 'GPU'} ≥ {spec['min_gpu_memory_gib']:g} GiB"
        changes.append(_("GPU %(have)s (%(memory)g GiB) instead of %(wanted)s") % _kind_words(option.kind, wanted))
    pairs = (
        (_("nodes"), len(option.nodes), spec["nodes"]),
        (_("GPUs per node"), option.gpus_per_node, spec["gpus_per_node"]),
        (_("tensor parallel"), option.plan.tensor_parallel, spec["tensor_parallel"]),
        (_("pipeline parallel"), option.plan.pipeline_parallel, spec["pipeline_parallel"]),
    )
    for label, have, wanted_value in pairs:
        if have != wanted_value:
            changes.append(
                _("%(what)s %(have)s instead of %(wanted)s") % {"what": label, "have": have, "wanted": wanted_value}
            )
    return tuple(changes)


def _kind_words(kind: _Kind, wanted: str) -> dict[str, Any]:
    return {"have": kind.gpu_name, "memory": round(kind.memory_gib, 1), "wanted": wanted}


def _to_fit(spec: Mapping[str, Any], option: _Option) -> Fit:
    changes = _changes(spec, option)
    status = FitStatus.ADAPTED if changes else FitStatus.FITS
    placement = {
        "nodes": list(option.nodes),
        "gpu_name": option.kind.gpu_name,
        "memory_gib": round(option.kind.memory_gib, 2),
        "gpus_per_node": option.gpus_per_node,
        "tensor_parallel": option.plan.tensor_parallel,
        "pipeline_parallel": option.plan.pipeline_parallel,
        "n_gpu_layers": option.plan.n_gpu_layers,
    }
    where = _("%(count)d × %(gpu)s on %(nodes)s") % {
        "count": option.gpus_per_node,
        "gpu": option.kind.gpu_name,
        "nodes": ", ".join(option.nodes),
    }
    streams = _("%(n)d concurrent sequences") % {"n": option.plan.max_concurrent_sequences}
    label = _("Fits as specified") if status == FitStatus.FITS else _("Fits adapted")
    return Fit(status, f"{label}: {where}; {streams}", changes, placement, option.plan)


def _rank(fit: Fit) -> tuple[int, int, int]:
    streams = fit.plan.max_concurrent_sequences if fit.plan else 0
    return _RANK[FitStatus(fit.status)], len(fit.changes), -streams


def _needs(spec: Mapping[str, Any]) -> str:
    return _("needs %(nodes)d node(s) with %(gpus)d free %(model)s GPUs of ≥ %(memory)g GiB") % {
        "nodes": spec["nodes"],
        "gpus": spec["gpus_per_node"],
        "model": spec["gpu_model"] or "",
        "memory": spec["min_gpu_memory_gib"] or 0,
    }


def _free_words(kinds: Sequence[_Kind]) -> str:
    return "; ".join(
        f"{node}: {count} × {kind.gpu_name} ({kind.memory_gib:.1f} GiB)"
        for kind in kinds
        for node, count in kind.counts
    )


def _no_fit(spec: Mapping[str, Any], kinds: Sequence[_Kind], options: Sequence[_Option], where: str) -> Fit:
    # The reason worth reading is the one for the most GPU memory the inventory could offer.
    largest = max(options, key=lambda o: max(o.plan.gpus_used, 1) * o.kind.memory_gib, default=None)
    reason = f" {largest.plan.reason}" if largest is not None else ""
    free = _("free in %(where)s: %(units)s") % {"where": where, "units": _free_words(kinds)}
    return Fit(
        FitStatus.NO_FIT,
        f"{_('Does not fit')}: {_needs(spec)}; {free}.{reason}",
        plan=largest.plan if largest else None,
    )


def _fit_cpu(spec: Mapping[str, Any], catalog: Mapping[str, ModelEntry], nodes: Sequence[HostNode]) -> Fit:
    last: Plan | None = None
    for node in nodes:
        last = _plan(spec, catalog, gpu_count=0, cpu_ram_gib=_ram(nodes, [node.name], spec)) or last
        if last is not None and last.fits:
            placement = {"nodes": [node.name], "gpu_name": None, "memory_gib": None, "gpus_per_node": 0}
            summary = _("Fits as specified: CPU only on %(node)s") % {"node": node.name}
            return Fit(FitStatus.FITS, summary, (), {**placement, "n_gpu_layers": 0}, last)
    why = last.reason if last is not None else _("no ready node")
    return Fit(FitStatus.NO_FIT, f"{_('Does not fit')}: {why}", plan=last)


def check_fit(
    spec: Mapping[str, Any], catalog: Mapping[str, ModelEntry], nodes: Sequence[HostNode], *, where: str
) -> Fit:
    """The best answer for `spec` on the free units of `nodes`; `where` names them ("研发部's pool")."""
    if spec["gpus_per_node"] == 0:
        return _fit_cpu(spec, catalog, nodes)
    kinds = _kinds(nodes)
    if not kinds:
        return Fit(
            FitStatus.NO_FIT,
            f"{_('Does not fit')}: {_needs(spec)}; " + _("no free GPUs in %(where)s") % {"where": where},
        )
    options = [option for kind in kinds for option in _options(spec, catalog, kind)]
    fitting = [_to_fit(spec, option) for option in options if option.plan.fits]
    if fitting:
        return min(fitting, key=_rank)
    return _no_fit(spec, kinds, options, where)
