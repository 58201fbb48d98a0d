"""``/metrics`` (Prometheus text format) and ``/metrics/engines`` (Prometheus HTTP service discovery)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from appliance.deployments.choices import State
from appliance.deployments.models import Instance
from appliance.engines import EngineError, engine_for
from appliance.monitoring.access import may_scrape
from appliance.monitoring.collector import ApplianceCollector


def _refused() -> HttpResponse:
    response = HttpResponse("metrics: address not allowed and no valid bearer token\n", status=403)
    response["WWW-Authenticate"] = "Bearer"
    return response


def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return _refused()
    # A fresh registry per scrape: the multi-process files of every worker, plus the appliance's gauges.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=settings.APPLIANCE_METRICS_DIR)
    registry.register(ApplianceCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _metrics_path(engine: str, image: str) -> str | None:
    try:
        return engine_for(engine, image).metrics_path
    except EngineError:
        return None


def engine_targets(request: HttpRequest) -> HttpResponse:
    """Running engine containers that serve ``/metrics`` (vLLM, llama-server), as http_sd target groups."""
    if not may_scrape(request):
        return _refused()
    groups = []
    rows = Instance.objects.filter(state=State.RUNNING, host_port__isnull=False).select_related("deployment", "node")
    for inst in rows:
        path = _metrics_path(inst.deployment.engine, inst.deployment.image)
        if path is None:
            continue
        labels = {
            "__metrics_path__": path,
            "deployment": inst.deployment.name,
            "model": inst.deployment.served_model_name,
            "engine": inst.deployment.engine,
            "node": inst.node.name,
        }
        groups.append({"targets": [f"{inst.endpoint_host or '127.0.0.1'}:{inst.host_port}"], "labels": labels})
    return JsonResponse(groups, safe=False)
