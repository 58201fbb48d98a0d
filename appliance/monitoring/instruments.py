"""The console's own Prometheus instruments, written by the processes that serve requests.

prometheus_client runs in multi-process mode: ``PROMETHEUS_MULTIPROC_DIR`` (set in
console/settings.py from ``APPLIANCE_METRICS_DIR`` before this module is imported) holds one
memory-mapped file per process and metric type, and ``/metrics`` merges them, so every ASGI
worker's counts appear in one scrape. Labels are bounded: routes are URL patterns (not paths),
departments are ids (a few dozen; ``console_department_info`` maps them to codes), models are
served model names (one per deployment); never a user, key or request id.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.05, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

http_requests = Counter(
    "console_http_requests", "HTTP requests answered, by URL pattern, method and status.", ["route", "method", "status"]
)
http_duration = Histogram(
    "console_http_request_duration_seconds", "Time to answer an HTTP request.", ["route"], buckets=HTTP_BUCKETS
)
llm_requests = Counter(
    "console_llm_requests",
    "Gateway and chat requests to models, by how they ended.",
    ["source", "model", "department", "status"],
)
llm_tokens = Counter(
    "console_llm_tokens", "Tokens in (prompt) and out (completion).", ["source", "model", "department", "direction"]
)
llm_ttft = Histogram(
    "console_llm_time_to_first_token_seconds",
    "Time from admission to the first token.",
    ["source", "model", "department"],
    buckets=TTFT_BUCKETS,
)
llm_duration = Histogram(
    "console_llm_request_duration_seconds",
    "Time from admission to the end of the answer.",
    ["source", "model", "department"],
    buckets=DURATION_BUCKETS,
)
quota_refusals = Counter(
    "console_quota_refusals", "Requests refused by a quota, by the limit that refused them.", ["limit"]
)
# livesum: the gauge of a process that exited disappears with it (multiprocess.mark_process_dead).
active_streams = Gauge(
    "console_active_llm_requests", "Admitted model requests still running.", ["source"], multiprocess_mode="livesum"
)
websocket_chats = Gauge("console_websocket_chats", "Open chat WebSockets.", multiprocess_mode="livesum")

SOURCES = ("gateway", "chat")


def source_for(via: str) -> str:
    """The request context's ``via`` ("api" for /v1, "ws" for chat) as a bounded label."""
    return "gateway" if via == "api" else "chat"


def observe_llm(record: dict[str, Any], source: str) -> None:
    """One settled (or refused) model request, from the usage record that also goes to the database."""
    model = str(record.get("model") or "unknown")
    department = str(record.get("department_id") or "none")
    llm_requests.labels(source, model, department, str(record.get("status") or "ok")).inc()
    llm_tokens.labels(source, model, department, "in").inc(int(record.get("prompt_tokens") or 0))
    llm_tokens.labels(source, model, department, "out").inc(int(record.get("completion_tokens") or 0))
    ttft, latency = record.get("ttft_ms"), record.get("latency_ms")
    if isinstance(ttft, int):
        llm_ttft.labels(source, model, department).observe(ttft / 1000)
    if isinstance(latency, int):
        llm_duration.labels(source, model, department).observe(latency / 1000)


def observe_refusal(limit_name: str) -> None:
    quota_refusals.labels(limit_name).inc()
