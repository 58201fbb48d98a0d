"""Read the node's NVIDIA GPUs through NVML (the `pynvml` bindings of nvidia-ml-py).

`collect()` never raises: a missing driver or library becomes `NodeInventory(error=...)`, a reading the
GPU does not offer becomes `None`, and a GPU that disappears mid-read is left out (the caller reconciles
by UUID and sees it missing). It initialises and shuts NVML down on every call; init costs ~15 ms on an
H100 node, the per-GPU reads a few tens of microseconds, so a poll every few seconds is cheap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import pynvml
from django.utils.translation import gettext as _

from .inventory import GpuReading, MigReading, NodeInventory, ProcessReading

log = logging.getLogger(__name__)

T = TypeVar("T")

ERROR_PREFIX = "no NVIDIA GPU / NVML error: "
# NVML's own messages (stored after ERROR_PREFIX) that mean "there is no NVIDIA GPU or driver here".
_NO_DRIVER = ("Shared Library Not Found", "Driver Not Loaded", "libnvidia-ml", "No such file")

# NVML names a MIG device "<parent name> MIG <profile>", e.g. "NVIDIA H100 80GB HBM3 MIG 3g.40gb".
_MIG_PROFILE_IN_NAME = re.compile(r"\bMIG\s+(\S+)\s*$")


class _Memory(NamedTuple):
    total: int
    used: int
    free: int
    reserved: int | None


def explain_inventory_error(error: str) -> str:
    """A node's stored inventory error in the reader's language; NVML's own words stay in brackets."""
    if not error.startswith(ERROR_PREFIX):
        return error
    detail = error[len(ERROR_PREFIX) :]
    if any(marker in detail for marker in _NO_DRIVER):
        text = _("No NVIDIA GPU or driver on this node (NVML: %(detail)s); models can run here on the CPU only.")
    else:
        text = _("The NVIDIA driver could not be read (NVML: %(detail)s); its GPUs are not offered until it can.")
    return text % {"detail": detail}


def collect() -> NodeInventory:
    """One pass over every GPU of this node; see the module docstring for the error contract."""
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError, or OSError/AttributeError from a broken install
        return _failed(exc)
    try:
        return _collect_initialised()
    except Exception as exc:
        # Anything left here is NVML failing as a whole (e.g. GetCount) or a bug; the poller must keep
        # running either way, and the message reaches the operator through `error`.
        log.warning("NVML collection failed", exc_info=True)
        return _failed(exc)
    finally:
        _shutdown()


def _collect_initialised() -> NodeInventory:
    count = pynvml.nvmlDeviceGetCount()
    gpus = [gpu for index in range(count) if (gpu := _read_gpu(index)) is not None]
    return NodeInventory(
        driver_version=_optional_text(pynvml.nvmlSystemGetDriverVersion),
        cuda_driver_version=_cuda_version(_optional(pynvml.nvmlSystemGetCudaDriverVersion)),
        nvml_version=_optional_text(pynvml.nvmlSystemGetNVMLVersion),
        error=None,
        gpus=gpus,
        simulated=False,
    )


def _failed(exc: BaseException) -> NodeInventory:
    return NodeInventory(
        driver_version=None,
        cuda_driver_version=None,
        nvml_version=None,
        error=f"{ERROR_PREFIX}{exc}",
        gpus=[],
        simulated=False,
    )


def _shutdown() -> None:
    try:
        pynvml.nvmlShutdown()
    except Exception:
        # Failing init leaves nothing to shut down; a failing shutdown leaves nothing to do either.
        log.debug("nvmlShutdown failed", exc_info=True)


def _read_gpu(index: int) -> GpuReading | None:
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
        return _read_gpu_fields(index, handle, uuid)
    except pynvml.NVMLError as exc:
        # The GPU went away between GetCount and now (hot-unplug, "fallen off the bus"): without a
        # trustworthy identity or readings, leave it out and let the caller notice it missing.
        log.warning("GPU %d skipped: %s", index, exc)
        return None


def _read_gpu_fields(index: int, handle: Any, uuid: str) -> GpuReading:
    memory = _memory(handle)
    util = _optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
    mig_capable, mig_current, mig_pending = _mig_mode(handle)
    return GpuReading(
        index=index,
        uuid=uuid,
        name=_optional_text(pynvml.nvmlDeviceGetName, handle),
        pci_bus_id=_pci_bus_id(handle),
        memory_total=memory.total if memory else None,
        memory_used=memory.used if memory else None,
        memory_free=memory.free if memory else None,
        memory_reserved=memory.reserved if memory else None,
        util_gpu=util.gpu if util else None,
        util_memory=util.memory if util else None,
        temperature_c=_temperature(handle),
        power_draw_w=_watts(_optional(pynvml.nvmlDeviceGetPowerUsage, handle)),
        power_limit_w=_watts(_power_limit(handle)),
        ecc_uncorrected=_ecc(handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC),
        ecc_corrected=_ecc(handle, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_AGGREGATE_ECC),
        compute_capability=_compute_capability(handle),
        mig_capable=mig_capable,
        mig_mode_current=mig_current,
        mig_mode_pending=mig_pending,
        mig_devices=_mig_devices(handle, uuid) if mig_current else [],
        processes=_processes(handle),
    )


def _optional(fn: Callable[..., T], *args: Any) -> T | None:
    """Call one NVML getter; a reading the GPU cannot give becomes None."""
    try:
        return fn(*args)
    except pynvml.NVMLError_GpuIsLost:
        raise  # the whole GPU is gone, not just this reading: _read_gpu drops it
    except pynvml.NVMLError as exc:
        if not isinstance(exc, pynvml.NVMLError_NotSupported):
            log.debug("%s failed: %s", getattr(fn, "__name__", fn), exc)
        return None


def _optional_text(fn: Callable[..., Any], *args: Any) -> str | None:
    value = _optional(fn, *args)
    return None if value is None else _text(value)


def _text(value: str | bytes) -> str:
    # nvidia-ml-py < 11.515 returns bytes for strings, later versions str; struct char fields are always bytes.
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _cuda_version(value: int | None) -> str | None:
    # NVML encodes CUDA 13.0 as 13000 and 12.4 as 12040.
    return None if value is None else f"{value // 1000}.{value % 1000 // 10}"


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000


def _memory(handle: Any) -> _Memory | None:
    """memory_v2 reports the driver reservation apart from `used` (as nvidia-smi shows it); v1 folds it in."""
    try:
        info = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
        return _Memory(info.total, info.used, info.free, info.reserved)
    except pynvml.NVMLError_GpuIsLost:
        raise
    except pynvml.NVMLError:
        pass  # drivers before R510 lack the v2 call, or answer a version mismatch
    info = _optional(pynvml.nvmlDeviceGetMemoryInfo, handle)
    return None if info is None else _Memory(info.total, info.used, info.free, None)


def _pci_bus_id(handle: Any) -> str | None:
    info = _optional(pynvml.nvmlDeviceGetPciInfo, handle)
    return None if info is None else _text(info.busId)


def _temperature(handle: Any) -> int | None:
    # nvmlDeviceGetTemperature is deprecated and leaves with CUDA 14 drivers; its replacement is
    # missing from older drivers and pynvml releases, so try the new one first.
    getter = getattr(pynvml, "nvmlDeviceGetTemperatureV", None)
    if getter is not None:
        try:
            return int(getter(handle, pynvml.NVML_TEMPERATURE_GPU))
        except pynvml.NVMLError_GpuIsLost:
            raise
        except pynvml.NVMLError:
            pass
    return _optional(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)


def _power_limit(handle: Any) -> int | None:
    # The enforced limit is the lower of the management limit and any external cap; some boards
    # only answer the management limit.
    enforced = _optional(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    return enforced if enforced is not None else _optional(pynvml.nvmlDeviceGetPowerManagementLimit, handle)


def _ecc(handle: Any, error_type: int, counter_type: int) -> int | None:
    return _optional(pynvml.nvmlDeviceGetTotalEccErrors, handle, error_type, counter_type)


def _compute_capability(handle: Any) -> str | None:
    capability = _optional(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    return None if capability is None else f"{capability[0]}.{capability[1]}"


def _mig_mode(handle: Any) -> tuple[bool, bool, bool]:
    """(capable, current, pending); a GPU without MIG answers NOT_SUPPORTED, which is 'capable=False'."""
    modes = _optional(pynvml.nvmlDeviceGetMigMode, handle)
    if modes is None:
        return False, False, False
    return True, modes[0] == pynvml.NVML_DEVICE_MIG_ENABLE, modes[1] == pynvml.NVML_DEVICE_MIG_ENABLE


def _mig_devices(handle: Any, parent_uuid: str) -> list[MigReading]:
    devices: list[MigReading] = []
    for slot in range(_optional(pynvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
        # Slots are sparse: one without a MIG device answers NOT_FOUND.
        mig = _optional(pynvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
        uuid = None if mig is None else _optional_text(pynvml.nvmlDeviceGetUUID, mig)
        if uuid is not None:
            devices.append(_read_mig(mig, uuid, parent_uuid))
    return devices


def _read_mig(mig: Any, uuid: str, parent_uuid: str) -> MigReading:
    # The parent is known from the enumeration, so nvmlDeviceGetDeviceHandleFromMigDeviceHandle would
    # only cost two more calls to learn it again.
    name = _optional_text(pynvml.nvmlDeviceGetName, mig)
    match = _MIG_PROFILE_IN_NAME.search(name or "")
    memory = _memory(mig)
    return MigReading(
        uuid=uuid,
        profile=match.group(1) if match else None,
        memory_total=memory.total if memory else None,
        memory_used=memory.used if memory else None,
        gi_id=_optional(pynvml.nvmlDeviceGetGpuInstanceId, mig),
        ci_id=_optional(pynvml.nvmlDeviceGetComputeInstanceId, mig),
        parent_uuid=parent_uuid,
    )


def _processes(handle: Any) -> list[ProcessReading]:
    try:
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except pynvml.NVMLLibraryMismatchError:
        # Drivers older than R510 lack the _v3 symbol this pynvml asks for.
        procs = _optional(pynvml.nvmlDeviceGetComputeRunningProcesses_v2, handle)
    except pynvml.NVMLError_GpuIsLost:
        raise
    except pynvml.NVMLError:
        procs = None
    return [ProcessReading(pid=proc.pid, used_memory=proc.usedGpuMemory) for proc in procs or []]
