"""/metrics: access control, every family the issue lists, bounded labels, several processes merged."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from django.test import Client

from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Instance
from appliance.gpus.models import Node
from appliance.monitoring.access import parse_networks
from appliance.monitoring.collector import TASK_FAILURES_KEY, note_task_failure
from appliance.monitoring.tests.scrape import samples, scrape, value
from appliance.quotas import limiter
from appliance.quotas.limiter import QuotaExceeded, QuotaScope
from appliance.quotas.models import Quota
from appliance.quotas.tests.conftest import quota_redis  # noqa: F401 - the fixture, real Redis db 13
from appliance.quotas.usage import RequestMeta, abegin

pytestmark = pytest.mark.django_db


def test_an_address_outside_the_allow_list_without_the_token_is_refused(settings: Any) -> None:
    settings.APPLIANCE_METRICS_NETWORKS = parse_networks(["10.9.0.0/16"])
    settings.APPLIANCE_METRICS_TOKEN = "s3cret-token-for-prometheus"
    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert Client().get("/metrics/engines").status_code == 403
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token-for-prometheus")
    assert ok.status_code == 200 and b"console_deployments" in ok.content
    assert Client(REMOTE_ADDR="10.9.3.4").get("/metrics").status_code == 200


def test_no_token_set_means_no_token_is_accepted(settings: Any) -> None:
    settings.APPLIANCE_METRICS_NETWORKS = ()
    settings.APPLIANCE_METRICS_TOKEN = None
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_a_malformed_allow_list_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        parse_networks(["127.0.0.1/32", "nonsense"])


def test_http_requests_are_counted_by_url_pattern_not_by_path(personas: dict[str, Any]) -> None:
    client = Client()
    client.force_login(personas["root"])
    before = scrape(client)
    client.get("/deployments/123456/")
    client.get("/no/such/page/4711")
    after = scrape(client)
    route = "deployments/<int:pk>/"
    assert (
        value(after, "console_http_requests_total", route=route, status="404")
        - value(before, "console_http_requests_total", route=route, status="404")
        == 1
    )
    assert value(after, "console_http_requests_total", route="unmatched") > value(
        before, "console_http_requests_total", route="unmatched"
    )
    assert not [s for s in samples(after) if "123456" in str(s.labels) or "4711" in str(s.labels)]


def test_gpus_nodes_deployments_and_departments_come_from_the_inventory(personas: dict[str, Any]) -> None:
    from appliance.deployments.tests.factories import simulated_node

    node = simulated_node("gpu-m1", "1x H100 80GB; 1x A100 40GB mig:3g.20gb,3g.20gb")
    Node.objects.filter(pk=node.pk).update(last_heartbeat=node.registered_at)
    text = scrape(Client())
    assert value(text, "console_gpu_memory_total_bytes", node="gpu-m1", gpu="0") == 80 * 1024**3
    for name in ("console_gpu_utilization_ratio", "console_gpu_temperature_celsius", "console_gpu_power_watts"):
        assert [s for s in samples(text) if s.name == name and s.labels["node"] == "gpu-m1"], name
    assert len([s for s in samples(text) if s.name == "console_mig_memory_total_bytes"]) == 2
    assert value(text, "console_node_heartbeat_age_seconds", node="gpu-m1") >= 0
    assert value(text, "console_node_state", node="gpu-m1", state="ready") == 1
    assert value(text, "console_deployments", state="running") == 0
    eng = personas["alice"].department
    assert value(text, "console_department_info", department=str(eng.pk), code="eng") == 1
    assert value(text, "console_disk_free_bytes") > 0


def test_celery_queue_lengths_and_task_failures_come_from_redis(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/13"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue = f"metrics-test-{os.getpid()}"
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(TASK_FAILURES_KEY, queue)
    try:
        client.rpush(queue, "a", "b", "c")
        note_task_failure("deployments.launch")
        note_task_failure("deployments.launch")
        text = scrape(Client())
        assert value(text, "console_celery_queue_length", queue=queue) == 3
        assert value(text, "console_celery_task_failures_total", task="deployments.launch") == 2
        assert value(text, "console_redis_up") == 1
    finally:
        client.delete(TASK_FAILURES_KEY, queue)


def test_model_requests_tokens_latency_and_refusals(personas: dict[str, Any], quota_redis: Any) -> None:  # noqa: F811
    dept = personas["bob"].department
    Quota.objects.create(department=dept, tokens_per_day=1000)
    meta = RequestMeta(user_id=personas["bob"].pk, department_id=dept.pk, model="qwen-test")
    scopes = [QuotaScope(f"d:{dept.pk}", tokens_per_day=1000, concurrent_requests=1)]
    before = scrape(Client())

    @async_to_sync  # the scrape (sync_to_async) comes back to this thread, inside the test's transaction
    async def requests() -> None:
        async with await abegin(scopes, meta, request_id="m-1", prompt_tokens=40, max_tokens=100) as guard:
            during = await sync_to_async(scrape)(Client())
            assert value(during, "console_active_llm_requests") - value(before, "console_active_llm_requests") == 1
            with pytest.raises(QuotaExceeded):
                await abegin(scopes, meta, request_id="m-2", prompt_tokens=1, max_tokens=1)
            guard.first_token()
            guard.add_completion_tokens(25)
        await limiter.aclose()

    requests()
    after = scrape(Client())
    labels = {"model": "qwen-test", "department": str(dept.pk)}

    def delta(name: str, **more: str) -> float:
        return value(after, name, **labels, **more) - value(before, name, **labels, **more)

    assert delta("console_llm_requests_total", status="ok") == 1
    assert delta("console_llm_requests_total", status="rejected") == 1
    assert delta("console_llm_tokens_total", direction="in") == 41
    assert delta("console_llm_tokens_total", direction="out") == 25
    assert delta("console_llm_time_to_first_token_seconds_count") == 1
    assert delta("console_llm_request_duration_seconds_count") == 1
    refused = value(after, "console_quota_refusals_total", limit="concurrent_requests")
    assert refused - value(before, "console_quota_refusals_total", limit="concurrent_requests") == 1
    assert value(after, "console_active_llm_requests") == value(before, "console_active_llm_requests")
    ratio = value(after, "console_quota_usage_ratio", department=str(dept.pk), limit="tokens_per_day")
    assert ratio == pytest.approx(65 / 1000)


def test_no_label_identifies_a_user_or_a_key() -> None:
    names = {name for s in samples(scrape(Client())) for name in s.labels}
    assert not names & {"user", "user_id", "username", "api_key", "key", "request_id", "path"}


def test_counts_of_other_worker_processes_are_merged() -> None:
    """Another ASGI worker is another process: its counter files in PROMETHEUS_MULTIPROC_DIR count too."""
    before = value(scrape(Client()), "console_http_requests_total", route="worker-probe")
    code = (
        "import django; django.setup();"
        "from appliance.monitoring.middleware import observe_http;"
        "[observe_http('worker-probe', 'GET', 200, 0.01) for _ in range(3)]"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings"}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert value(scrape(Client()), "console_http_requests_total", route="worker-probe") - before == 6


def test_running_engines_with_metrics_are_listed_for_service_discovery(personas: dict[str, Any]) -> None:
    from appliance.deployments.tests.factories import simulated_node

    node = simulated_node("gpu-e1")
    common = {"department": personas["alice"].department, "created_by": personas["root"], "state": State.RUNNING}
    from appliance.catalog.models import ProfileVersion

    version = ProfileVersion.objects.first()
    if version is None:
        pytest.fail("the catalog migration seeds profile versions")
    vllm = Deployment.objects.create(
        name="qwen",
        engine="vllm",
        model_slug="qwen",
        served_model_name="qwen",
        image="vllm/vllm-openai:v0.8.5",
        profile_version=version,
        **common,
    )
    ollama = Deployment.objects.create(
        name="ol",
        engine="ollama",
        model_slug="ol",
        served_model_name="ol",
        image="ollama/ollama:0.6",
        profile_version=version,
        **common,
    )
    for dep, port in ((vllm, 20001), (ollama, 20002)):
        Instance.objects.create(
            deployment=dep,
            node=node,
            state=State.RUNNING,
            container_name=f"c-{dep.name}",
            host_port=port,
            endpoint_host="10.0.0.5",
        )
    groups = Client().get("/metrics/engines").json()
    assert groups == [
        {
            "targets": ["10.0.0.5:20001"],
            "labels": {
                "__metrics_path__": "/metrics",
                "deployment": "qwen",
                "model": "qwen",
                "engine": "vllm",
                "node": "gpu-e1",
            },
        }
    ]
