"""deploy/: the systemd units load cleanly in systemd-analyze, and logrotate accepts the rotation config.

The units name the install root /opt/appliance-console; here it is replaced by this checkout, whose
.venv holds the same programs, so `verify` checks that every ExecStart= program exists.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("appliance-console*"))
INSTALL_ROOT = "/opt/appliance-console"


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is missing: deploy/scripts/ensure-services.sh --test installs it")
    return path


def test_there_are_units_for_web_worker_and_beat() -> None:
    names = {unit.name for unit in UNITS}
    assert {f"appliance-console-{role}.service" for role in ("web", "worker", "beat")} <= names


def test_systemd_analyze_verifies_every_unit(tmp_path: Path) -> None:
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALL_ROOT, str(ROOT)))
    files = [str(tmp_path / unit.name) for unit in UNITS]
    result = subprocess.run(
        [_tool("systemd-analyze"), "verify", "--man=no", *files], capture_output=True, text=True, timeout=120
    )
    # verify exits 0 on unknown keys and misspelt sections, only warning: those count as failures here.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_systemd_analyze_refuses_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit whose program is missing does not verify."""
    web = (ROOT / "deploy" / "systemd" / "appliance-console-web.service").read_text()
    broken = tmp_path / "appliance-console-web.service"
    broken.write_text(
        web.replace(INSTALL_ROOT, str(ROOT)).replace("bin/python manage.py serve", "bin/no-such-python manage.py serve")
    )
    result = subprocess.run([_tool("systemd-analyze"), "verify", "--man=no", str(broken)], capture_output=True)
    assert result.returncode != 0


def test_web_unit_gives_prometheus_a_fresh_directory_at_each_start() -> None:
    web = (ROOT / "deploy" / "systemd" / "appliance-console-web.service").read_text()
    assert "RuntimeDirectory=appliance-console-web" in web
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/appliance-console-web" in web


def test_logrotate_accepts_the_config_and_rotates(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "web.log").write_text("a line\n")
    config = (ROOT / "deploy" / "logrotate" / "appliance-console").read_text()
    config = config.replace("/var/log/appliance-console", str(logs)).replace("appliance appliance", "root root")
    (tmp_path / "conf").write_text(config)
    state = tmp_path / "state"
    command = [_tool("logrotate"), "--force", "--state", str(state), str(tmp_path / "conf")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rotated = [p.name for p in logs.iterdir() if p.name.startswith("web.log-")]
    assert len(rotated) == 1 and (logs / "web.log").read_text() == ""
