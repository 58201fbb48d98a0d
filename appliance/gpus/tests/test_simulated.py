"""`APPLIANCE_SIMULATED_GPUS` parsing and the inventories it produces."""

from __future__ import annotations

import json
import re

import pytest

from appliance.gpus import simulated
from appliance.gpus.inventory import NodeInventory
from appliance.gpus.simulated import SimulatedGpu, collect_for_settings, collect_simulated, parse_spec

from .fake_nvml import H100, FakeNvml, install, load_fixture

GPU_UUID = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MIG_UUID = re.compile(r"MIG-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GIB = 1024**3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8x RTX 4090 24GB", [SimulatedGpu("RTX 4090", 24)] * 8),
        ("8x H20 96GB mig", [SimulatedGpu("H20", 96, ("1g.12gb",) * 7)] * 8),
        ("2x H100 80GB; 1x A100 40GB", [SimulatedGpu("H100", 80)] * 2 + [SimulatedGpu("A100", 40)]),
        ("1x H100 80GB mig:3g.40gb,3g.40gb", [SimulatedGpu("H100", 80, ("3g.40gb", "3g.40gb"))]),
        ("1x A100-SXM4 40 GB mig:1g.5gb,1g.10gb", [SimulatedGpu("A100-SXM4", 40, ("1g.5gb", "1g.10gb"))]),
        ("1x H200 141GB mig:3g.71gb", [SimulatedGpu("H200", 141, ("3g.71gb",))]),
        ("1x L20 48GB", [SimulatedGpu("L20", 48)]),  # unknown models are allowed, without MIG
    ],
)
def test_parse_spec(spec: str, expected: list[SimulatedGpu]) -> None:
    assert parse_spec(spec) == expected


def test_parse_spec_is_case_and_space_tolerant() -> None:
    assert parse_spec("  1X h100 80gb  MIG : 4g.40gb , 2g.20gb,1g.10gb ") == [
        SimulatedGpu("H100", 80, ("4g.40gb", "2g.20gb", "1g.10gb"))
    ]


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("", "empty GPU spec"),
        (" ", "empty GPU spec"),
        ("8x H100", "bad GPU spec part '8x H100'"),
        ("eight H100 80GB", "'eight H100 80GB'"),
        ("2x H100 80GB; 1x A100", "bad GPU spec part '1x A100'"),
        ("2x H100 80GB;", "empty part"),
        ("0x H100 80GB", "bad GPU count in '0x H100 80GB'"),
        ("65x H100 80GB", "bad GPU count in '65x H100 80GB'"),
        ("40x H100 80GB; 40x H100 80GB", "80 GPUs"),
        ("1x H100 0GB", "bad GPU memory in '1x H100 0GB'"),
        ("1x H100 80GB mog", "'1x H100 80GB mog'"),
        ("1x H100 80GB mig 3g.40gb", "bad MIG part 'mig 3g.40gb'"),
        ("8x RTX 4090 24GB mig", "RTX 4090 in '8x RTX 4090 24GB mig' has no MIG"),
        ("1x H100 80GB mig:5g.50gb", "MIG profile '5g.50gb'"),
        ("1x H100 80GB mig:3g.48gb", "MIG profile '3g.48gb'"),  # an H20 profile on an H100
        ("1x H100 80GB mig:", "MIG profile ''"),
        ("1x H100 80GB mig:4g.40gb,4g.40gb", "needs 8 compute slices"),
        ("1x H100 80GB mig:4g.40gb,2g.20gb,2g.20gb", "8/8 of memory"),
    ],
)
def test_bad_spec_is_refused_naming_the_bad_part(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_spec(spec)


def test_mig_profiles_match_the_names_nvidia_prints() -> None:
    # Names from nvidia-smi mig -lgip; the H100 ones are also in the recorded fixture's gpu_instance_profiles.
    recorded = {p["name"].removeprefix("MIG ") for p in load_fixture(H100)["gpus"][0]["gpu_instance_profiles"]}
    assert set(simulated.mig_profiles(80)) == recorded - {"1g.10gb+me"}
    assert list(simulated.mig_profiles(96)) == ["1g.12gb", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"]
    assert list(simulated.mig_profiles(40)) == ["1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]
    assert "3g.71gb" in simulated.mig_profiles(141)


def test_collect_simulated_produces_plausible_readings() -> None:
    inventory = collect_simulated("2x H100 80GB; 1x RTX 4090 24GB", "node-a")

    assert inventory.simulated is True
    assert inventory.error is None
    assert [gpu.index for gpu in inventory.gpus] == [0, 1, 2]
    h100, _, rtx = inventory.gpus
    assert all(gpu.simulated and GPU_UUID.fullmatch(gpu.uuid) for gpu in inventory.gpus)
    assert (h100.name, h100.memory_total, h100.compute_capability) == ("NVIDIA H100 80GB", 80 * GIB, "9.0")
    assert h100.memory_used == 0
    assert h100.memory_free is not None and h100.memory_free > 79 * GIB
    assert h100.temperature_c is not None and 33 <= h100.temperature_c <= 38
    assert h100.power_limit_w == 700.0
    assert h100.power_draw_w is not None and 70 <= h100.power_draw_w <= 105
    assert (h100.ecc_uncorrected, h100.util_gpu, h100.mig_capable, h100.mig_mode_current) == (0, 0, True, False)
    assert (rtx.ecc_uncorrected, rtx.mig_capable, rtx.compute_capability) == (None, False, "8.9")
    assert len({gpu.pci_bus_id for gpu in inventory.gpus}) == 3


def test_simulated_mig_layout() -> None:
    [gpu] = collect_simulated("1x H100 80GB mig:3g.40gb,3g.40gb", "node-a").gpus

    assert (gpu.mig_mode_current, gpu.mig_mode_pending) == (True, True)
    assert (gpu.util_gpu, gpu.util_memory) == (None, None)  # as NVML answers in MIG mode
    assert [(mig.profile, mig.memory_total, mig.gi_id, mig.ci_id) for mig in gpu.mig_devices] == [
        ("3g.40gb", 40 * GIB, 1, 0),
        ("3g.40gb", 40 * GIB, 2, 0),
    ]
    assert all(MIG_UUID.fullmatch(mig.uuid) and mig.parent_uuid == gpu.uuid for mig in gpu.mig_devices)
    assert len({mig.uuid for mig in gpu.mig_devices}) == 2


def test_default_mig_layout_is_seven_one_slice_instances() -> None:
    [gpu] = collect_simulated("1x H20 96GB mig", "node-a").gpus

    assert [mig.profile for mig in gpu.mig_devices] == ["1g.12gb"] * 7
    assert {mig.memory_total for mig in gpu.mig_devices} == {12 * GIB}


def test_uuids_are_stable_per_node_and_index() -> None:
    first = collect_simulated("2x H100 80GB mig", "node-a")
    again = collect_simulated("2x H100 80GB mig", "node-a")
    other_node = collect_simulated("2x H100 80GB mig", "node-b")

    def uuids(inventory: NodeInventory) -> list[str]:
        return [gpu.uuid for gpu in inventory.gpus] + [mig.uuid for gpu in inventory.gpus for mig in gpu.mig_devices]

    assert uuids(first) == uuids(again)
    assert len(set(uuids(first))) == 2 + 14
    assert not set(uuids(first)) & set(uuids(other_node))
    assert first.gpus == again.gpus  # the readings are deterministic too


def test_simulated_inventory_is_json() -> None:
    inventory = collect_simulated("1x H100 80GB mig:3g.40gb", "node-a")

    data = json.loads(json.dumps(inventory.to_dict()))

    assert data["simulated"] is True
    assert NodeInventory.from_dict(data) == inventory


def test_collect_for_settings_simulates_when_a_spec_is_set() -> None:
    inventory = collect_for_settings("1x RTX 4090 24GB", "node-a")

    assert inventory.simulated is True
    assert [gpu.name for gpu in inventory.gpus] == ["NVIDIA RTX 4090 24GB"]


@pytest.mark.parametrize("spec", [None, "", "   "])
def test_collect_for_settings_reads_nvml_without_a_spec(monkeypatch: pytest.MonkeyPatch, spec: str | None) -> None:
    fake: FakeNvml = install(monkeypatch, load_fixture(H100))

    inventory = collect_for_settings(spec, "node-a")

    assert inventory.simulated is False
    assert [gpu.uuid for gpu in inventory.gpus] == ["GPU-341a9345-4265-f847-9deb-7ae559817e0a"]
    assert fake.initialised == 0


def test_collect_for_settings_refuses_a_bad_spec() -> None:
    with pytest.raises(ValueError, match="bad GPU count"):
        collect_for_settings("0x H100 80GB", "node-a")
