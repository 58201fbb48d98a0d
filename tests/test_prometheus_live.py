"""A real Prometheus (Debian's) scrapes the live console: every dashboard query and alert expression has data.

The console runs as pytest-django's live server; seeded data provokes every alert a test can provoke
(a hot GPU, a silent node, a failed and a restarting deployment, a nearly used quota, failing
requests), and a background loop sends metered requests while Prometheus scrapes every second, so
rates and quantiles have data. The two alerts no test can provoke on a healthy machine (console
down, disk full) are checked on their measured quantity here and on their firing in
deploy/prometheus/alerts_test.yml.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import urlopen

import pytest
import yaml
from asgiref.sync import async_to_sync
from django.utils import timezone

from appliance.accounts.models import User
from appliance.catalog.models import ProfileVersion
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment
from appliance.deployments.tests.factories import simulated_node
from appliance.gpus.models import Gpu, Node
from appliance.monitoring.collector import note_task_failure
from appliance.quotas import limiter
from appliance.quotas.limiter import QuotaExceeded, QuotaScope
from appliance.quotas.models import Quota
from appliance.quotas.tests.conftest import quota_redis  # noqa: F401 - the fixture, real Redis db 13
from appliance.quotas.usage import RequestMeta, abegin

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "appliance-overview.json"
# Alerts a healthy test machine cannot fire: their measured quantity must have data, their firing is unit-tested.
NOT_PROVOKED = {"ApplianceConsoleDown", "ApplianceDiskAlmostFull"}
COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(personas: dict[str, User]) -> QuotaScope:
    node = simulated_node("gpu-p1", "1x H100 80GB; 1x A100 40GB mig:3g.20gb,3g.20gb")
    Gpu.objects.filter(node=node, index=0).update(temperature_c=91)
    Node.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    version = ProfileVersion.objects.first()
    assert version is not None, "seeded_profiles provides the profile versions"
    eng, root = personas["alice"].department, personas["root"]
    assert eng is not None
    for name, state, restarts in (("qwen-ok", State.RUNNING, 2), ("qwen-bad", State.FAILED, 0)):
        Deployment.objects.create(
            name=name, engine="vllm", model_slug=name, served_model_name=name, image="vllm/vllm-openai:v0.8.5",
            profile_version=version, department=eng, created_by=root, state=state, restart_count=restarts,
        )  # fmt: skip
    note_task_failure("deployments.launch")
    Quota.objects.create(department=eng, tokens_per_day=1000)
    return QuotaScope(f"d:{eng.pk}", tokens_per_day=1000, concurrent_requests=1)


def _traffic(scope: QuotaScope, meta: RequestMeta, stop: threading.Event) -> None:
    """Metered requests as the gateway makes them: answered, failed and refused, until stopped."""
    asyncio.run(_metered_traffic(scope, meta, stop))


async def _metered_traffic(scope: QuotaScope, meta: RequestMeta, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        try:
            async with await abegin([scope], meta, request_id=f"live-{n}", prompt_tokens=3, max_tokens=5) as guard:
                guard.first_token()
                guard.add_completion_tokens(2)
                try:
                    await abegin([scope], meta, request_id=f"live-{n}-x", prompt_tokens=1, max_tokens=1)
                except QuotaExceeded:
                    pass  # refused by concurrent_requests=1: console_quota_refusals_total
                if n % 3 == 0:
                    raise RuntimeError("engine failed")  # counted with status error
        except RuntimeError:
            pass
        await asyncio.sleep(0.2)
    await limiter.aclose()


@pytest.fixture
def prometheus(live_server: Any, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: deploy/scripts/ensure-services.sh --test installs Debian's prometheus")
    target = urlsplit(live_server.url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "appliance-console", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{_free_port()}"
    command = [
        binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address={address}", "--log.level=warn",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("w"))
    try:
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    with urlopen(f"{base}/api/v1/query?{urlencode({'query': expr})}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return [r for r in body["data"]["result"] if r["value"][1] not in ("NaN", "+Inf", "-Inf")]


def _wait_for(base: str, expr: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if query(base, expr):
                return
        except OSError:
            pass  # Prometheus still starting
        time.sleep(0.5)
    pytest.fail(f"no data for {expr} within {seconds} s")


def _dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def _alerts() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def test_every_dashboard_query_and_alert_has_data(
    personas: dict[str, User],
    seeded_profiles: None,
    quota_redis: Any,  # noqa: F811
    prometheus: str,
    settings: Any,
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/13"
    scope = _seed(personas)
    bob, charlie = personas["bob"], personas["charlie"]
    meta = RequestMeta(user_id=bob.pk, department_id=bob.department_id, model="qwen-ok")
    # 950 of the day's 1,000 tokens: over the 90 % alert threshold.

    @async_to_sync
    async def big() -> None:
        async with await abegin([scope], meta, request_id="big", prompt_tokens=900, max_tokens=50) as guard:
            guard.add_completion_tokens(50)
        await limiter.aclose()

    big()
    # The steady traffic comes from another department, whose quota only limits concurrency.
    busy = QuotaScope(f"d:{charlie.department_id}", concurrent_requests=1)
    busy_meta = RequestMeta(user_id=charlie.pk, department_id=charlie.department_id, model="qwen-ok")
    stop = threading.Event()
    sender = threading.Thread(target=_traffic, args=(busy, busy_meta, stop), daemon=True)
    sender.start()
    try:
        _wait_for(prometheus, 'up{job="appliance-console"} == 1')
        _wait_for(prometheus, 'rate(console_llm_requests_total{status="error"}[5m]) > 0')
        time.sleep(3)  # a few more scrapes: every rate has two samples with traffic between them
        empty = [f"{title}: {expr}" for title, expr in _dashboard_queries() if not query(prometheus, expr)]
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
        silent = []
        for name, expr in _alerts():
            checked = COMPARISON.sub("", expr) if name in NOT_PROVOKED else expr
            if not query(prometheus, checked):
                silent.append(f"{name}: {checked}")
        assert not silent, "alert expressions without data:\n" + "\n".join(silent)
    finally:
        stop.set()
        sender.join(timeout=10)
    with urlopen(f"{prometheus}/api/v1/rules", timeout=10) as response:
        rules = [r for g in json.load(response)["data"]["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == {name for name, _ in _alerts()}
    assert all(r["health"] == "ok" for r in rules), rules
