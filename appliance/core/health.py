from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from appliance.core.clientip import is_loopback
from appliance.core.permissions import may_administer


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"database: {exc}"
    return None


def _check_redis() -> str | None:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
    except Exception as exc:
        return f"redis: {exc}"
    return None


def _may_see_detail(request: HttpRequest) -> bool:
    # Exception text names hosts, users and versions: for the machine itself and platform admins only.
    return is_loopback(request) or may_administer(getattr(request, "user", None))


def readyz(request: HttpRequest) -> JsonResponse:
    down = [problem for problem in (_check_database(), _check_redis()) if problem]
    if down:
        if not _may_see_detail(request):
            down = [problem.split(":", 1)[0] for problem in down]
        return JsonResponse({"status": "unavailable", "down": down}, status=503)
    return JsonResponse({"status": "ready"})
