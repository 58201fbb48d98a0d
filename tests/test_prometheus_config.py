"""deploy/prometheus and deploy/grafana: promtool accepts the rules and config, the rule unit tests pass,
and the dashboard is well formed (every panel has a title, a unit and queries)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "appliance-overview.json"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: deploy/scripts/ensure-services.sh --test installs Debian's prometheus")
    return path


def _run(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_checks_the_alert_rules() -> None:
    result = _run("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = _run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_scrape_config(tmp_path: Path) -> None:
    (tmp_path / "appliance-console.token").write_text("token\n")
    config = (PROMETHEUS / "prometheus.yml").read_text().replace("/etc/prometheus/", f"{tmp_path}/")
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "appliance-alerts.yml")
    (tmp_path / "prometheus.yml").write_text(config)
    result = _run("check", "config", str(tmp_path / "prometheus.yml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_is_refused(tmp_path: Path) -> None:
    broken = (PROMETHEUS / "alerts.yml").read_text().replace("> 85", "> > 85")
    (tmp_path / "alerts.yml").write_text(broken)
    assert _run("check", "rules", str(tmp_path / "alerts.yml")).returncode != 0


def test_every_dashboard_panel_has_a_title_a_unit_and_queries() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "appliance-overview"
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["fieldConfig"]["defaults"]["unit"], panel
        assert panel["targets"] and all(t["expr"] and t["datasource"]["uid"] for t in panel["targets"]), panel


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "appliance.yml").read_text())["datasources"][0]
    dashboard = json.loads(DASHBOARD.read_text())
    assert {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]} == {source["uid"]}
    provider = yaml.safe_load((provisioning / "dashboards" / "appliance.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("/appliance")
