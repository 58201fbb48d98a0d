"""Simulated GPUs for development, CI and demos: `APPLIANCE_SIMULATED_GPUS` describes them.

Grammar (keywords and units are case-insensitive, spaces around separators are free)::

    spec    := group { ";" group }
    group   := count "x" model memory [ mig ]
    count   := 1..64                                   GPUs in this group; at most 64 in all
    model   := words of letters, digits, "-", "."      "H100", "RTX 4090", "A100-SXM4"
    memory  := integer "GB"                            "80GB"; simulated as that many GiB
    mig     := "mig" [ ":" profile { "," profile } ]   MIG on, with these instances on every GPU
    profile := <compute slices> "g." <memory> "gb"     "3g.40gb", as nvidia-smi names them

    "8x RTX 4090 24GB"   "8x H20 96GB mig"   "2x H100 80GB; 1x A100 40GB"   "1x H100 80GB mig:3g.40gb,3g.40gb"

GPUs are numbered in spec order. A spec that does not parse raises ValueError naming the bad part.

MIG is simulated for the 7-slice data-centre family (A100, A800, H100, H800, H200, H20, B200). Rather
than a per-model table of profiles, every GPU gets NVIDIA's own scheme: 7 compute slices and 8 memory
eighths, with profiles 1g (1/8 of memory), 1g double-memory (2/8), 2g (2/8), 3g (4/8), 4g (4/8) and
7g (8/8), named with go-nvlib's rounding of the memory share. That reproduces the names real drivers
print (1g.10gb..7g.80gb on H100 80GB, 1g.12gb..7g.96gb on H20, 1g.5gb..7g.40gb on A100 40GB, 3g.71gb on
H200) and works for any memory size; sizes are exact eighths, ~2% above real profiles, which keep some
memory back. Placement rules are not simulated: a layout only has to fit in 7 slices and 8 eighths.
"mig" alone gives 7 x 1g, the layout with the most devices (what `nvidia-smi mig -cgi 19,...` makes).
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass

from . import nvml
from .inventory import GpuReading, MigReading, NodeInventory

MAX_GPUS = 64
GIB = 1024**3
_MIG_COMPUTE_SLICES = 7
_MIG_MEMORY_EIGHTHS = 8
# (compute slices, memory eighths) of each GPU instance profile; 1g exists with one and two eighths.
_MIG_SHAPES = ((1, 1), (1, 2), (2, 2), (3, 4), (4, 4), (7, 8))
# What an idle H100 showed in the recorded fixture: the driver keeps this much back.
_RESERVED_BYTES = 503316480
_DRIVER_VERSION, _CUDA_VERSION, _NVML_VERSION = "580.159.04", "13.0", "13.580.159.04"
# Fixed so that UUIDs survive restarts and stay equal across processes.
_UUID_NAMESPACE = uuid.UUID("0c6f1e6a-3b8e-5d2a-9f47-51a2d0c0ffee")

_GROUP = re.compile(
    r"(?P<count>\d+)\s*x\s+(?P<model>[a-z0-9][a-z0-9 .-]*?)\s+(?P<memory>\d+)\s*gb(?:\s+(?P<mig>mig\b.*))?",
    re.IGNORECASE,
)
_MIG = re.compile(r"mig(?:\s*:\s*(?P<profiles>.*))?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Model:
    power_limit_w: float
    compute_capability: str | None
    mig: bool = False
    ecc: bool = True


_DEFAULT_MODEL = _Model(power_limit_w=300.0, compute_capability=None)
_MODELS = {
    "A100": _Model(400.0, "8.0", mig=True),
    "A800": _Model(400.0, "8.0", mig=True),
    "H100": _Model(700.0, "9.0", mig=True),
    "H800": _Model(700.0, "9.0", mig=True),
    "H200": _Model(700.0, "9.0", mig=True),
    "H20": _Model(500.0, "9.0", mig=True),
    "B200": _Model(1000.0, "10.0", mig=True),
    "L4": _Model(72.0, "8.9"),
    "L40S": _Model(350.0, "8.9"),
    "RTX 3090": _Model(350.0, "8.6", ecc=False),
    "RTX 4090": _Model(450.0, "8.9", ecc=False),
    "RTX 5090": _Model(575.0, "12.0", ecc=False),
}


@dataclass(frozen=True, slots=True)
class SimulatedGpu:
    """One GPU of a parsed spec; `mig` is None with MIG off, else the profiles of its instances."""

    model: str
    memory_gb: int
    mig: tuple[str, ...] | None = None


def parse_spec(spec: str) -> list[SimulatedGpu]:
    """The GPUs `spec` describes, in order; ValueError naming the bad part. Settings can call it to fail early."""
    if not spec.strip():
        raise ValueError("empty GPU spec: expected e.g. '8x H100 80GB' or '2x H100 80GB; 1x A100 40GB mig'")
    gpus: list[SimulatedGpu] = []
    for group in spec.split(";"):
        if not group.strip():
            raise ValueError(f"empty part in GPU spec {spec!r}: expected groups separated by ';'")
        count, gpu = _parse_group(group.strip())
        gpus.extend([gpu] * count)
    if len(gpus) > MAX_GPUS:
        raise ValueError(f"GPU spec {spec!r} describes {len(gpus)} GPUs; at most {MAX_GPUS} are simulated")
    return gpus


def collect_simulated(spec: str, node_name: str) -> NodeInventory:
    """A NodeInventory for the GPUs of `spec`; UUIDs are stable for the same node name and GPU index."""
    gpus = [_reading(index, gpu, node_name) for index, gpu in enumerate(parse_spec(spec))]
    return NodeInventory(
        driver_version=_DRIVER_VERSION,
        cuda_driver_version=_CUDA_VERSION,
        nvml_version=_NVML_VERSION,
        error=None,
        gpus=gpus,
        simulated=True,
    )


def collect_for_settings(simulated_spec: str | None, node_name: str) -> NodeInventory:
    """Simulated GPUs when a spec is set (blank counts as unset), the real ones through NVML otherwise."""
    if simulated_spec and simulated_spec.strip():
        return collect_simulated(simulated_spec, node_name)
    return nvml.collect()


def mig_profiles(memory_gb: int) -> dict[str, tuple[int, int]]:
    """Profile name -> (compute slices, memory eighths) for a MIG-capable GPU of `memory_gb`."""
    return {f"{slices}g.{_profile_gb(memory_gb, eighths)}gb": (slices, eighths) for slices, eighths in _MIG_SHAPES}


def _profile_gb(memory_gb: int, eighths: int) -> int:
    # go-nvlib rounds half away from zero (math.Round), Python's round() would go to even: 70.5 -> 71.
    return math.floor(memory_gb * eighths / _MIG_MEMORY_EIGHTHS + 0.5)


def _parse_group(group: str) -> tuple[int, SimulatedGpu]:
    match = _GROUP.fullmatch(group)
    if match is None:
        raise ValueError(f"bad GPU spec part {group!r}: expected '<count>x <model> <memory>GB [mig[:<profile>,...]]'")
    count, memory_gb = int(match["count"]), int(match["memory"])
    if not 1 <= count <= MAX_GPUS:
        raise ValueError(f"bad GPU count in {group!r}: expected 1 to {MAX_GPUS}")
    if memory_gb == 0:
        raise ValueError(f"bad GPU memory in {group!r}: expected at least 1GB")
    model = " ".join(match["model"].upper().split())
    mig = None if match["mig"] is None else _parse_mig(match["mig"], model, memory_gb, group)
    return count, SimulatedGpu(model=model, memory_gb=memory_gb, mig=mig)


def _parse_mig(text: str, model: str, memory_gb: int, group: str) -> tuple[str, ...]:
    match = _MIG.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad MIG part {text!r} in {group!r}: expected 'mig' or 'mig:<profile>,...'")
    if not _model(model).mig:
        raise ValueError(f"{model} in {group!r} has no MIG; simulated MIG GPUs: {', '.join(_mig_models())}")
    known = mig_profiles(memory_gb)
    if match["profiles"] is None:
        return (next(iter(known)),) * _MIG_COMPUTE_SLICES  # the first shape: 1g with one eighth
    profiles = tuple(name.strip().lower() for name in match["profiles"].split(","))
    for name in profiles:
        if name not in known:
            raise ValueError(f"MIG profile {name!r} in {group!r} is not one of {', '.join(known)}")
    _check_fits(profiles, known, group)
    return profiles


def _check_fits(profiles: tuple[str, ...], known: dict[str, tuple[int, int]], group: str) -> None:
    slices = sum(known[name][0] for name in profiles)
    eighths = sum(known[name][1] for name in profiles)
    if slices > _MIG_COMPUTE_SLICES or eighths > _MIG_MEMORY_EIGHTHS:
        raise ValueError(
            f"MIG layout in {group!r} needs {slices} compute slices and {eighths}/8 of memory; "
            f"a GPU has {_MIG_COMPUTE_SLICES} and 8/8"
        )


def _model(model: str) -> _Model:
    # "H100 NVL" or "A100-SXM4" are still an H100 and an A100.
    return _MODELS.get(model) or _MODELS.get(re.split(r"[ -]", model)[0], _DEFAULT_MODEL)


def _mig_models() -> list[str]:
    return [name for name, model in _MODELS.items() if model.mig]


def _uuid(prefix: str, node_name: str, path: str) -> str:
    return f"{prefix}-{uuid.uuid5(_UUID_NAMESPACE, f'{node_name}/{path}')}"


def _reading(index: int, gpu: SimulatedGpu, node_name: str) -> GpuReading:
    gpu_uuid = _uuid("GPU", node_name, f"gpu/{index}")
    model = _model(gpu.model)
    total = gpu.memory_gb * GIB
    mig_on = gpu.mig is not None
    # A stable per-GPU wobble, so eight simulated GPUs do not all read the same.
    wobble = hashlib.sha256(gpu_uuid.encode()).digest()[0] / 255
    return GpuReading(
        index=index,
        uuid=gpu_uuid,
        name=f"NVIDIA {gpu.model} {gpu.memory_gb}GB",
        pci_bus_id=f"00000000:{0x10 + index:02X}:00.0",
        memory_total=total,
        memory_used=0,
        memory_free=total - _RESERVED_BYTES,
        memory_reserved=_RESERVED_BYTES,
        util_gpu=None if mig_on else 0,  # as NVML: no utilisation for a GPU in MIG mode
        util_memory=None if mig_on else 0,
        temperature_c=33 + round(wobble * 5),
        power_draw_w=round(model.power_limit_w * (0.1 + 0.05 * wobble), 3),
        power_limit_w=model.power_limit_w,
        ecc_uncorrected=0 if model.ecc else None,
        ecc_corrected=0 if model.ecc else None,
        compute_capability=model.compute_capability,
        mig_capable=model.mig,
        mig_mode_current=mig_on,
        mig_mode_pending=mig_on,
        mig_devices=_mig_readings(gpu, index, gpu_uuid, node_name),
        simulated=True,
    )


def _mig_readings(gpu: SimulatedGpu, index: int, parent_uuid: str, node_name: str) -> list[MigReading]:
    known = mig_profiles(gpu.memory_gb)
    return [
        MigReading(
            uuid=_uuid("MIG", node_name, f"gpu/{index}/mig/{slot}"),
            profile=profile,
            memory_total=gpu.memory_gb * GIB * known[profile][1] // _MIG_MEMORY_EIGHTHS,
            memory_used=0,
            gi_id=slot + 1,
            ci_id=0,
            parent_uuid=parent_uuid,
        )
        for slot, profile in enumerate(gpu.mig or ())
    ]
