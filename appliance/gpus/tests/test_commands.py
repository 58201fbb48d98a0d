"""`gpu_inventory --json`: what this node's GPUs look like, printed without a database (no django_db mark:
pytest-django fails any test here that opens a connection)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from . import fake_nvml
from .fake_nvml import H100, H100_MIG, install, load_fixture


def _run(*args: str) -> str:
    out = StringIO()
    call_command("gpu_inventory", *args, stdout=out)
    return out.getvalue()


def _json(*args: str) -> dict[str, Any]:
    return json.loads(_run("--json", *args))


@override_settings(APPLIANCE_SIMULATED_GPUS="2x H20 96GB mig", NODE_NAME="gpu-01")
def test_simulated_spec_from_settings() -> None:
    data = _json()
    assert data["simulated"] is True and data["error"] is None
    assert [gpu["name"] for gpu in data["gpus"]] == ["NVIDIA H20 96GB"] * 2
    assert [mig["profile"] for mig in data["gpus"][0]["mig_devices"]] == ["1g.12gb"] * 7
    assert set(data["gpus"][0]) >= {"uuid", "pci_bus_id", "memory_total", "temperature_c", "power_limit_w"}


@override_settings(APPLIANCE_SIMULATED_GPUS=None)
def test_fake_nvml_h100(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, load_fixture(H100))
    data = _json()
    [gpu] = data["gpus"]
    assert (data["driver_version"], data["cuda_driver_version"], data["simulated"]) == ("580.159.04", "13.0", False)
    assert (gpu["name"], gpu["memory_total"], gpu["mig_mode_current"]) == ("NVIDIA H100 80GB HBM3", 85520809984, False)


@override_settings(APPLIANCE_SIMULATED_GPUS=None)
def test_fake_nvml_mig_in_the_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, load_fixture(H100_MIG))
    text = _run()
    assert "NVIDIA H100 80GB HBM3" in text and "MIG on" in text and text.count("MIG 3g.40gb") == 2


@override_settings(APPLIANCE_SIMULATED_GPUS=None)
def test_no_driver_prints_the_error_as_data(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.install_missing_library(monkeypatch)
    data = _json()
    assert data["gpus"] == [] and data["error"].startswith("no NVIDIA GPU / NVML error: ")
    assert "no NVIDIA GPU" in _run()


def test_simulated_flag_overrides_the_setting() -> None:
    assert [gpu["name"] for gpu in _json("--simulated", "1x L40S 48GB")["gpus"]] == ["NVIDIA L40S 48GB"]


def test_command_line_runs_with_the_database_unreachable() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "mysql://nobody@127.0.0.1:9/nowhere",  # the discard port: any connection attempt fails
        "APPLIANCE_SIMULATED_GPUS": "1x RTX 4090 24GB",
        "CONSOLE_ENV": "test",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "gpu_inventory", "--json"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gpus"][0]["name"] == "NVIDIA RTX 4090 24GB"
