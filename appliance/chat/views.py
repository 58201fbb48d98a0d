"""The chat page. It renders at once; the model list and conversations load from the API and socket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from appliance.chat.choices import DEFAULT_TEMPERATURES, MAX_TOKENS_LIMIT, TEMPERATURE_MAX, ErrorCode, Task


@login_required
def chat_page(request: HttpRequest) -> HttpResponse:
    config = {
        "tasks": [{"value": t.value, "label": str(t.label)} for t in Task],
        "defaultTemperatures": dict(DEFAULT_TEMPERATURES),
        "temperatureMax": TEMPERATURE_MAX,
        "maxTokensLimit": MAX_TOKENS_LIMIT,
        "errors": {code.value: str(code.label) for code in ErrorCode},
    }
    return render(request, "portal/chat.html", {"chat_config": config})
