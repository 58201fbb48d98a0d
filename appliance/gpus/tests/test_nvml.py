"""`nvml.collect()` against recorded NVML answers, through the real pynvml wrappers (see fake_nvml.py)."""

from __future__ import annotations

import json
from typing import Any

import pynvml
import pytest

from appliance.gpus import nvml
from appliance.gpus.inventory import GpuReading, MigReading, NodeInventory, ProcessReading

from . import fake_nvml
from .fake_nvml import H100, H100_MIG, FakeNvml, install, load_fixture

H100_UUID = "GPU-341a9345-4265-f847-9deb-7ae559817e0a"
SECOND_UUID = "GPU-0e1d2c3b-4a59-6877-8695-a4b3c2d1e0f9"


@pytest.fixture
def h100(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    return install(monkeypatch, load_fixture(H100))


@pytest.fixture
def h100_mig(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    return install(monkeypatch, load_fixture(H100_MIG))


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    return install(monkeypatch, fake_nvml.with_extra_gpu(load_fixture(H100), SECOND_UUID))


def collect_cleanly(fake: FakeNvml) -> NodeInventory:
    """collect(), asserting it asked for nothing unrecorded and shut NVML down again."""
    inventory = nvml.collect()
    assert fake.unresolved == []
    assert fake.initialised == 0
    return inventory


def gpu_dict(inventory: NodeInventory) -> dict[str, Any]:
    [gpu] = inventory.to_dict()["gpus"]
    return gpu


def test_h100_fixture_yields_the_recorded_values(h100: FakeNvml) -> None:
    inventory = collect_cleanly(h100)

    assert inventory.error is None
    assert (inventory.driver_version, inventory.cuda_driver_version) == ("580.159.04", "13.0")
    assert inventory.nvml_version == "13.580.159.04"
    assert inventory.simulated is False
    assert inventory.gpus == [
        GpuReading(
            index=0,
            uuid=H100_UUID,
            name="NVIDIA H100 80GB HBM3",
            pci_bus_id="00000000:00:06.0",
            memory_total=85520809984,
            memory_used=0,  # memory_v2: the 480 MiB driver reservation is reported apart
            memory_free=85017493504,
            memory_reserved=503316480,
            util_gpu=0,
            util_memory=0,
            temperature_c=36,
            power_draw_w=105.332,
            power_limit_w=700.0,
            ecc_uncorrected=0,
            ecc_corrected=0,
            compute_capability="9.0",
            mig_capable=True,
            mig_mode_current=False,
            mig_mode_pending=False,
            mig_devices=[],
            processes=[],
            simulated=False,
        )
    ]


def test_to_dict_is_json_and_round_trips(h100_mig: FakeNvml) -> None:
    inventory = collect_cleanly(h100_mig)

    data = json.loads(json.dumps(inventory.to_dict()))

    assert data["collected_at"] == inventory.collected_at.isoformat()
    assert data["gpus"][0]["mig_devices"][0]["profile"] == "3g.40gb"
    assert NodeInventory.from_dict(data) == inventory


def test_mig_fixture_yields_mig_devices_with_profile_and_parent(h100_mig: FakeNvml) -> None:
    [gpu] = collect_cleanly(h100_mig).gpus

    assert (gpu.mig_mode_current, gpu.mig_mode_pending) == (True, True)
    assert gpu.mig_devices == [
        MigReading(
            uuid=f"MIG-7c1e2b9a-5d3f-5a61-8e4b-2f0d9c6a1b0{n}",
            profile="3g.40gb",
            memory_total=40448 * 1024 * 1024,  # memorySizeMB of the 3g.40gb GPU instance profile
            memory_used=20 * 1024**3 if n == 1 else 0,
            gi_id=n,
            ci_id=0,
            parent_uuid=H100_UUID,
        )
        for n in (1, 2)
    ]
    assert gpu.processes == [ProcessReading(pid=4242, used_memory=20 * 1024**3)]
    # NVML does not report utilisation for a GPU in MIG mode: None, not 0.
    assert (gpu.util_gpu, gpu.util_memory) == (None, None)


def test_mig_device_whose_name_carries_no_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = load_fixture(H100_MIG)
    fixture["gpus"][0]["mig_devices"][0]["name"] = "NVIDIA H100 80GB HBM3"
    fake = install(monkeypatch, fixture)

    migs = collect_cleanly(fake).gpus[0].mig_devices

    assert [mig.profile for mig in migs] == [None, "3g.40gb"]


def test_missing_library_becomes_error_data(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install_missing_library(monkeypatch)

    inventory = nvml.collect()

    assert inventory.error == "no NVIDIA GPU / NVML error: NVML Shared Library Not Found"
    assert inventory.gpus == []
    assert inventory.driver_version is None


def test_driver_not_loaded_becomes_error_data(h100: FakeNvml) -> None:
    h100.fail("nvmlInitWithFlags", pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    inventory = nvml.collect()

    assert inventory.error == "no NVIDIA GPU / NVML error: Driver Not Loaded"
    assert inventory.gpus == []
    assert h100.calls == ["nvmlInitWithFlags"]  # no shutdown for an init that failed


def test_failing_device_count_becomes_error_data_and_still_shuts_down(h100: FakeNvml) -> None:
    h100.fail("nvmlDeviceGetCount_v2", pynvml.NVML_ERROR_UNKNOWN)

    inventory = collect_cleanly(h100)

    assert inventory.error == "no NVIDIA GPU / NVML error: Unknown Error"
    assert inventory.gpus == []


def test_unexpected_exception_becomes_error_data(monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = load_fixture(H100)
    del fixture["gpus"][0]["name"]  # the fake raises LookupError, a non-NVML failure
    install(monkeypatch, fixture)

    inventory = nvml.collect()

    assert inventory.error is not None
    assert inventory.error.startswith("no NVIDIA GPU / NVML error: ")
    assert "'name'" in inventory.error


@pytest.mark.parametrize(
    ("symbol", "changed"),
    [
        ("nvmlDeviceGetTotalEccErrors", {"ecc_uncorrected": None, "ecc_corrected": None}),
        ("nvmlDeviceGetPowerUsage", {"power_draw_w": None}),
        ("nvmlDeviceGetUtilizationRates", {"util_gpu": None, "util_memory": None}),
        ("nvmlDeviceGetCudaComputeCapability", {"compute_capability": None}),
        ("nvmlDeviceGetPciInfo_v3", {"pci_bus_id": None}),
        ("nvmlDeviceGetMigMode", {"mig_capable": False}),
        ("nvmlDeviceGetComputeRunningProcesses_v3", {}),
    ],
)
def test_one_unsupported_reading_is_none_and_the_rest_is_intact(
    monkeypatch: pytest.MonkeyPatch, symbol: str, changed: dict[str, Any]
) -> None:
    baseline = gpu_dict(collect_cleanly(install(monkeypatch, load_fixture(H100))))
    fake = install(monkeypatch, load_fixture(H100))
    fake.fail(symbol, pynvml.NVML_ERROR_NOT_SUPPORTED)

    inventory = collect_cleanly(fake)

    assert inventory.error is None
    assert gpu_dict(inventory) == {**baseline, **changed}


def test_temperature_unsupported_by_both_calls_is_none(h100: FakeNvml) -> None:
    h100.fail("nvmlDeviceGetTemperatureV", pynvml.NVML_ERROR_NOT_SUPPORTED)
    h100.fail("nvmlDeviceGetTemperature", pynvml.NVML_ERROR_NOT_SUPPORTED)

    assert collect_cleanly(h100).gpus[0].temperature_c is None


def test_driver_without_temperature_v_uses_the_deprecated_call(h100: FakeNvml) -> None:
    h100.remove("nvmlDeviceGetTemperatureV")

    assert collect_cleanly(h100).gpus[0].temperature_c == 36
    assert "nvmlDeviceGetTemperature" in h100.calls


@pytest.mark.parametrize("how", ["symbol missing", "version mismatch"])
def test_driver_without_memory_v2_falls_back_to_v1(h100: FakeNvml, how: str) -> None:
    if how == "symbol missing":
        h100.remove("nvmlDeviceGetMemoryInfo_v2")
    else:
        h100.fail("nvmlDeviceGetMemoryInfo_v2", pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)

    gpu = collect_cleanly(h100).gpus[0]

    # v1 folds the driver reservation into `used`, as the recorder saw.
    assert (gpu.memory_total, gpu.memory_used, gpu.memory_free) == (85520809984, 503316480, 85017493504)
    assert gpu.memory_reserved is None


def test_fake_enforces_the_memory_v2_struct_version(h100: FakeNvml) -> None:
    # Guards the fake itself: pynvml's version handling is what the collector relies on.
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        assert pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2).reserved == 503316480
        with pytest.raises(pynvml.NVMLError) as raised:
            pynvml.nvmlDeviceGetMemoryInfo(handle, version=0x01000028)
        assert raised.value.value == pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    finally:
        pynvml.nvmlShutdown()


def test_unsupported_enforced_power_limit_falls_back_to_management_limit(h100: FakeNvml) -> None:
    h100.fail("nvmlDeviceGetEnforcedPowerLimit", pynvml.NVML_ERROR_NOT_SUPPORTED)

    assert collect_cleanly(h100).gpus[0].power_limit_w == 700.0
    assert "nvmlDeviceGetPowerManagementLimit" in h100.calls


def test_driver_without_v3_process_list_uses_v2(h100_mig: FakeNvml) -> None:
    h100_mig.remove("nvmlDeviceGetComputeRunningProcesses_v3")

    assert collect_cleanly(h100_mig).gpus[0].processes == [ProcessReading(pid=4242, used_memory=20 * 1024**3)]


def test_gpu_gone_from_the_count_is_simply_missing(two_gpus: FakeNvml) -> None:
    assert [gpu.uuid for gpu in collect_cleanly(two_gpus).gpus] == [H100_UUID, SECOND_UUID]

    two_gpus.fixture["gpus"].pop()

    assert [gpu.uuid for gpu in collect_cleanly(two_gpus).gpus] == [H100_UUID]


@pytest.mark.parametrize("symbol", ["nvmlDeviceGetUUID", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetMigMode"])
def test_gpu_lost_mid_read_is_left_out(two_gpus: FakeNvml, symbol: str) -> None:
    two_gpus.fail(symbol, pynvml.NVML_ERROR_GPU_IS_LOST, gpu=1)

    inventory = collect_cleanly(two_gpus)

    assert inventory.error is None
    assert [gpu.uuid for gpu in inventory.gpus] == [H100_UUID]


def test_handle_lookup_failing_for_one_index_leaves_the_others(two_gpus: FakeNvml) -> None:
    two_gpus.fixture["gpus"][1] = {"nvml_error": "GPU is lost", "code": pynvml.NVML_ERROR_GPU_IS_LOST}

    assert [gpu.uuid for gpu in collect_cleanly(two_gpus).gpus] == [H100_UUID]


def test_a_poll_stays_within_its_call_budget(h100: FakeNvml) -> None:
    # The recorded H100 answered 4 calls in ~18 µs; this guards against the collector growing chatty.
    collect_cleanly(h100)
    assert h100.gpu_calls() <= 16


def test_bytes_from_older_pynvml_are_decoded() -> None:
    # nvidia-ml-py before 11.515 returned bytes where today's returns str.
    assert nvml._text(b"NVIDIA H100 80GB HBM3") == "NVIDIA H100 80GB HBM3"
    assert nvml._text("NVIDIA H100 80GB HBM3") == "NVIDIA H100 80GB HBM3"
