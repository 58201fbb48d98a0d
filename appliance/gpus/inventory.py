"""What one node's GPUs look like at one instant: plain dataclasses, no Django, no NVML.

The NVML collector (`nvml.py`) and the simulator (`simulated.py`) both produce a `NodeInventory`;
the Django side stores `to_dict()` as JSON and reconciles GPU rows by `uuid`.

Units are fixed so that consumers never guess: memory in bytes, power in watts, temperature in
degrees Celsius, utilisation in percent. A reading the hardware or driver does not offer
(NVML's NOT_SUPPORTED, e.g. ECC on a GeForce card or utilisation of a GPU in MIG mode) is `None`,
never 0, so "not measured" and "measured zero" stay distinguishable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """A compute process holding memory on a GPU or MIG device."""

    pid: int
    # None where the driver cannot attribute memory to the process (Windows WDDM, some containers).
    used_memory: int | None


@dataclass(frozen=True, slots=True)
class MigReading:
    """One MIG device (a GPU instance + compute instance pair) carved out of a physical GPU."""

    uuid: str
    profile: str | None  # "3g.40gb", as nvidia-smi prints it; None if the driver did not name it
    memory_total: int | None
    memory_used: int | None
    gi_id: int | None
    ci_id: int | None
    parent_uuid: str


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One physical GPU. `index` is NVML's enumeration order, which may change across reboots: key on `uuid`."""

    index: int
    uuid: str
    name: str | None
    pci_bus_id: str | None
    memory_total: int | None
    memory_used: int | None
    memory_free: int | None
    # Driver/firmware reservation, reported apart from `memory_used` as nvidia-smi does (NVML memory_v2);
    # None with drivers that only offer the v1 call, where it is folded into `memory_used`.
    memory_reserved: int | None
    util_gpu: int | None
    util_memory: int | None
    temperature_c: int | None
    power_draw_w: float | None
    power_limit_w: float | None
    ecc_uncorrected: int | None  # volatile: since the driver loaded; non-zero means the GPU needs attention now
    ecc_corrected: int | None  # aggregate: lifetime count, a wear trend
    compute_capability: str | None  # "9.0"
    mig_capable: bool
    mig_mode_current: bool
    mig_mode_pending: bool  # differs from current until the GPU is reset
    mig_devices: list[MigReading] = field(default_factory=list)
    processes: list[ProcessReading] = field(default_factory=list)
    simulated: bool = False


@dataclass(frozen=True, slots=True)
class NodeInventory:
    """Everything collected from one node in one pass; `error` set means `gpus` could not be read at all."""

    driver_version: str | None
    cuda_driver_version: str | None  # "13.0", the CUDA version the driver supports
    nvml_version: str | None
    error: str | None
    gpus: list[GpuReading]
    simulated: bool
    collected_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: same keys as the dataclass fields, `collected_at` as ISO 8601."""
        data = asdict(self)
        data["collected_at"] = self.collected_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeInventory:
        """Inverse of `to_dict()`, for inventories that travelled as JSON (task results, stored snapshots)."""
        gpus = [_gpu_from_dict(gpu) for gpu in data["gpus"]]
        collected_at = datetime.fromisoformat(data["collected_at"])
        return cls(**{**data, "gpus": gpus, "collected_at": collected_at})


def _gpu_from_dict(data: dict[str, Any]) -> GpuReading:
    mig_devices = [MigReading(**mig) for mig in data["mig_devices"]]
    processes = [ProcessReading(**proc) for proc in data["processes"]]
    return GpuReading(**{**data, "mig_devices": mig_devices, "processes": processes})
