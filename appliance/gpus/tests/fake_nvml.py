"""A stand-in for libnvidia-ml.so that replays a recorded fixture at the C-function layer.

pynvml resolves every C symbol with `getattr(pynvml.nvmlLib, name)` (cached in
`_nvmlGetFunctionPointer_cache`) and calls it with ctypes arguments. `install()` puts a `FakeNvml`
library object in `nvmlLib`, so the real pynvml wrappers still run: they build the ctypes structs,
set version fields (memory_v2, temperature v1), check return codes into `NVMLError_*` classes and
decode strings. The fake's functions behave like the C ones: they read by-value arguments, write
through `byref()` pointers and buffers, and return an `nvmlReturn_t` code.

A fixture value of the form `{"nvml_error": "...", "code": 3}` is replayed as that return code, as
the recorder saw it. A symbol the fake does not implement is missing from the "library" (pynvml
raises FunctionNotFound, as with an old driver); tests assert `fake.unresolved` is empty so a
collector that asks for something unrecorded does not pass silently.
"""

from __future__ import annotations

import copy
import ctypes
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
H100 = "nvml-h100-80gb.json"
H100_MIG = "nvml-h100-80gb-mig-3g40gb-x2.derived.json"

_HANDLE_BASE = 0x7F000000  # any non-NULL address: handles are opaque and never dereferenced
_ERROR_STRINGS = {pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH: b"Argument version mismatch"}


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def with_extra_gpu(fixture: dict[str, Any], uuid: str) -> dict[str, Any]:
    """The fixture with its first GPU cloned at the next index (another bus id and UUID)."""
    fixture = copy.deepcopy(fixture)
    gpu = copy.deepcopy(fixture["gpus"][0])
    gpu["index"] = len(fixture["gpus"])
    gpu["uuid"] = uuid
    gpu["pci"]["busId"] = gpu["pci"]["busIdLegacy"] = f"00000000:00:{7 + gpu['index']:02X}.0"
    fixture["gpus"].append(gpu)
    return fixture


class NvmlReturn(Exception):
    """Raised inside a fake C function to return `code` (ctypes functions cannot raise)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Library:
    """What `pynvml.nvmlLib` points at: attribute lookup is symbol lookup."""

    def __init__(self, fake: FakeNvml) -> None:
        self._fake = fake

    def __getattr__(self, name: str) -> Callable[..., int]:
        return self._fake.resolve(name)


class FakeNvml:
    """Replays `fixture`; `fail()` injects return codes, `remove()` drops symbols, `calls` logs every call."""

    def __init__(self, fixture: dict[str, Any]) -> None:
        self.fixture = fixture
        self.library = _Library(self)
        self.calls: list[str] = []
        self.unresolved: list[str] = []
        self.initialised = 0
        self._removed: set[str] = set()
        self._failures: dict[tuple[str, int | None], int] = {}
        self._handles: dict[int, dict[str, Any]] = {}

    # -- test controls ------------------------------------------------------------------------

    def fail(self, symbol: str, code: int, gpu: int | None = None) -> None:
        """Make `symbol` return `code`, for every device or only for handles of GPU index `gpu`."""
        self._failures[(symbol, gpu)] = code

    def remove(self, *symbols: str) -> None:
        """Drop symbols from the library, as an older driver lacks them."""
        self._removed.update(symbols)

    def gpu_calls(self) -> int:
        return sum(name.startswith("nvmlDevice") for name in self.calls)

    # -- symbol lookup --------------------------------------------------------------------------

    def resolve(self, name: str) -> Callable[..., int]:
        impl = getattr(self, f"_c_{name}", None)
        if impl is None or name in self._removed:
            if name not in self._removed:
                self.unresolved.append(name)
            raise AttributeError(name)

        def c_function(*args: Any) -> int:
            self.calls.append(name)
            if self.initialised == 0 and name not in ("nvmlInitWithFlags", "nvmlErrorString"):
                return pynvml.NVML_ERROR_UNINITIALIZED
            injected = self._injected(name, args)
            if injected is not None:
                return injected
            try:
                result = impl(*args)
            except NvmlReturn as ret:
                return ret.code
            return pynvml.NVML_SUCCESS if result is None else result

        return c_function

    def _injected(self, name: str, args: tuple[Any, ...]) -> int | None:
        record = self._record_or_none(args[0]) if args else None
        gpu = None if record is None else record.get("_gpu_index")
        return self._failures.get((name, gpu), self._failures.get((name, None)))

    # -- handles --------------------------------------------------------------------------------

    def _issue(self, out: Any, record: dict[str, Any]) -> None:
        address = _HANDLE_BASE + 16 * (len(self._handles) + 1)
        self._handles[address] = record
        ctypes.c_void_p.from_buffer(_deref(out)).value = address

    def _record_or_none(self, handle: Any) -> dict[str, Any] | None:
        if not isinstance(handle, pynvml.c_nvmlDevice_t):
            return None
        return self._handles.get(ctypes.cast(handle, ctypes.c_void_p).value or 0)

    def _record(self, handle: Any) -> dict[str, Any]:
        record = self._record_or_none(handle)
        if record is None:
            raise NvmlReturn(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return record

    def _gpu_record(self, handle: Any) -> dict[str, Any]:
        record = self._record(handle)
        if "_parent" in record:  # full-GPU queries on a MIG handle
            raise NvmlReturn(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return record

    def _mig_record(self, handle: Any) -> dict[str, Any]:
        record = self._record(handle)
        if "_parent" not in record:  # MIG-only queries on a full GPU handle
            raise NvmlReturn(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return record

    # -- library and system ---------------------------------------------------------------------

    def _c_nvmlInitWithFlags(self, flags: int) -> None:
        self.initialised += 1

    def _c_nvmlShutdown(self) -> None:
        self.initialised -= 1

    def _c_nvmlErrorString(self, code: int) -> bytes:
        return _ERROR_STRINGS.get(code, b"Unknown Error")

    def _c_nvmlSystemGetDriverVersion(self, buf: Any, length: Any) -> None:
        _write_string(buf, length, self.fixture["driver_version"])

    def _c_nvmlSystemGetNVMLVersion(self, buf: Any, length: Any) -> None:
        _write_string(buf, length, self.fixture["nvml_version"])

    def _c_nvmlSystemGetCudaDriverVersion(self, out: Any) -> None:
        _deref(out).value = _recorded(self.fixture, "cuda_driver_version")

    def _c_nvmlDeviceGetCount_v2(self, out: Any) -> None:
        _deref(out).value = len(self.fixture["gpus"])

    def _c_nvmlDeviceGetHandleByIndex_v2(self, index: Any, out: Any) -> None:
        gpus = self.fixture["gpus"]
        if not 0 <= index.value < len(gpus):
            raise NvmlReturn(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._issue(out, {**_replayed(gpus[index.value]), "_gpu_index": index.value})

    # -- per device (GPU or MIG handle) ---------------------------------------------------------

    def _c_nvmlDeviceGetUUID(self, handle: Any, buf: Any, length: Any) -> None:
        _write_string(buf, length, _recorded(self._record(handle), "uuid"))

    def _c_nvmlDeviceGetName(self, handle: Any, buf: Any, length: Any) -> None:
        _write_string(buf, length, _recorded(self._record(handle), "name"))

    def _c_nvmlDeviceGetMemoryInfo(self, handle: Any, out: Any) -> None:
        _fill(_deref(out), _recorded(self._record(handle), "memory"))

    def _c_nvmlDeviceGetMemoryInfo_v2(self, handle: Any, out: Any) -> None:
        struct = _deref(out)
        _check_version(struct, pynvml.nvmlMemory_v2)
        recorded = _recorded(self._record(handle), "memory_v2")
        _fill(struct, {key: value for key, value in recorded.items() if key != "version"})

    def _c_nvmlDeviceGetPciInfo_v3(self, handle: Any, out: Any) -> None:
        pci = _recorded(self._gpu_record(handle), "pci")
        _fill(_deref(out), {key: value.encode() if isinstance(value, str) else value for key, value in pci.items()})

    def _c_nvmlDeviceGetUtilizationRates(self, handle: Any, out: Any) -> None:
        _fill(_deref(out), _recorded(self._gpu_record(handle), "utilization"))

    def _c_nvmlDeviceGetTemperatureV(self, handle: Any, out: Any) -> None:
        struct = _deref(out)
        _check_version(struct, pynvml.nvmlTemperature_v1)
        struct.temperature = self._temperature(handle, struct.sensorType)

    def _c_nvmlDeviceGetTemperature(self, handle: Any, sensor: Any, out: Any) -> None:
        _deref(out).value = self._temperature(handle, sensor.value)

    def _temperature(self, handle: Any, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise NvmlReturn(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(_recorded(self._gpu_record(handle), "temperature_c"))

    def _c_nvmlDeviceGetPowerUsage(self, handle: Any, out: Any) -> None:
        _deref(out).value = _recorded(self._gpu_record(handle), "power_usage_mw")

    def _c_nvmlDeviceGetEnforcedPowerLimit(self, handle: Any, out: Any) -> None:
        _deref(out).value = _recorded(self._gpu_record(handle), "power_limit_mw")

    def _c_nvmlDeviceGetPowerManagementLimit(self, handle: Any, out: Any) -> None:
        _deref(out).value = _recorded(self._gpu_record(handle), "power_limit_mw")

    def _c_nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: Any, counter: Any, out: Any) -> None:
        # The recorder kept two counters, e.g. "ecc_volatile_uncorrected"; any other pair is unrecorded.
        kind = {
            pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "corrected",
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "uncorrected",
        }
        period = {pynvml.NVML_VOLATILE_ECC: "volatile", pynvml.NVML_AGGREGATE_ECC: "aggregate"}
        key = f"ecc_{period[counter.value]}_{kind[error_type.value]}"
        _deref(out).value = _recorded(self._gpu_record(handle), key)

    def _c_nvmlDeviceGetCudaComputeCapability(self, handle: Any, major: Any, minor: Any) -> None:
        recorded = _recorded(self._gpu_record(handle), "cuda_capability")
        _deref(major).value, _deref(minor).value = recorded

    def _c_nvmlDeviceGetComputeRunningProcesses_v3(self, handle: Any, count: Any, procs: Any) -> None:
        recorded = _recorded(self._record(handle), "processes")
        capacity = _deref(count).value
        _deref(count).value = len(recorded)
        if not recorded:
            return
        if procs is None or capacity < len(recorded):
            raise NvmlReturn(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
        for slot, proc in zip(procs, recorded, strict=False):
            _fill(slot, proc)

    _c_nvmlDeviceGetComputeRunningProcesses_v2 = _c_nvmlDeviceGetComputeRunningProcesses_v3

    # -- MIG ------------------------------------------------------------------------------------

    def _c_nvmlDeviceGetMigMode(self, handle: Any, current: Any, pending: Any) -> None:
        _deref(current).value, _deref(pending).value = _recorded(self._gpu_record(handle), "mig_mode")

    def _c_nvmlDeviceGetMaxMigDeviceCount(self, handle: Any, out: Any) -> None:
        _deref(out).value = _recorded(self._gpu_record(handle), "max_mig_devices")

    def _c_nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: Any, out: Any) -> None:
        parent = self._gpu_record(handle)
        if index.value >= parent["max_mig_devices"]:
            raise NvmlReturn(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        found = [mig for mig in parent["mig_devices"] if mig["slot"] == index.value]
        if not found:
            raise NvmlReturn(pynvml.NVML_ERROR_NOT_FOUND)
        self._issue(out, {**found[0], "_parent": parent, "_gpu_index": parent["_gpu_index"]})

    def _c_nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: Any, out: Any) -> None:
        self._issue(out, self._mig_record(handle)["_parent"])

    def _c_nvmlDeviceGetGpuInstanceId(self, handle: Any, out: Any) -> None:
        _deref(out).value = _recorded(self._mig_record(handle), "gpu_instance_id")

    def _c_nvmlDeviceGetComputeInstanceId(self, handle: Any, out: Any) -> None:
        _deref(out).value = _recorded(self._mig_record(handle), "compute_instance_id")


def install(monkeypatch: pytest.MonkeyPatch, fixture: dict[str, Any]) -> FakeNvml:
    """Make pynvml talk to a fresh `FakeNvml` replaying `fixture`, for the duration of one test."""
    fake = FakeNvml(fixture)
    monkeypatch.setattr(pynvml, "nvmlLib", fake.library)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)
    return fake


def install_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """No libnvidia-ml.so.1 on this host: pynvml's real loader tries CDLL and gets OSError."""

    def no_library(name: str, *args: Any, **kwargs: Any) -> Any:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(pynvml, "nvmlLib", None)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "CDLL", no_library)


def _deref(pointer: Any) -> Any:
    """The ctypes object a `byref()` argument points at (C would write through the pointer)."""
    return getattr(pointer, "_obj", pointer)


def _recorded(record: dict[str, Any], key: str) -> Any:
    if key not in record:
        raise LookupError(f"fixture did not record {key!r} (uuid {record.get('uuid')})")
    return _replayed(record[key])


def _replayed(value: Any) -> Any:
    if isinstance(value, dict) and "nvml_error" in value:
        raise NvmlReturn(value["code"])
    return value


def _write_string(buf: Any, length: Any, text: str) -> None:
    data = text.encode()
    if len(data) + 1 > length.value or len(data) + 1 > ctypes.sizeof(buf):
        raise NvmlReturn(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
    buf.value = data


def _fill(struct: ctypes.Structure, values: dict[str, Any]) -> None:
    fields = {field[0] for field in struct._fields_}
    for name, value in values.items():
        if name not in fields:  # a Structure would silently keep it as a plain Python attribute
            raise LookupError(f"{type(struct).__name__} has no field {name!r}")
        setattr(struct, name, value)


def _check_version(struct: Any, expected: int) -> None:
    # NVML's versioned structs carry (version << 24 | sizeof(struct)); the library refuses a mismatch.
    if struct.version != expected or struct.version & 0xFFFFFF != ctypes.sizeof(struct):
        raise NvmlReturn(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
