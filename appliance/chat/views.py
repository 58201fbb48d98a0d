"""The chat page. It renders at once; the model list and conversations load from the API and socket."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from appliance.chat.choices import DEFAULT_TEMPERATURES, MAX_TOKENS_LIMIT, TEMPERATURE_MAX, ErrorCode, Task
from appliance.safety import labels


def _strings() -> dict[str, str]:
    """What the page's script says, translated here so one catalogue serves template and script."""
    return {
        "thinking": _("Thinking…"),
        "startingModel": _("Starting the model… (%(seconds)s s)"),
        "thought": _("Thought for %(seconds)s seconds"),
        "stopped": _("Stopped by you; the answer so far is kept."),
        "stoppedEmpty": _("Stopped by you before the model wrote anything."),
        "codeLabel": _("code"),
        "conversations": _("Conversations"),
        "deleteNamed": _("Delete the conversation “%(title)s” and all its messages? This cannot be undone."),
        "failed": _("The answer failed: %(reason)s The text so far is kept."),
        "usage": _("%(prompt)s in · %(completion)s out tokens"),
        "estimated": _("(estimated)"),
        "ttft": _("first token %(seconds)s s"),
        "speed": _("%(rate)s tokens/s"),
        "quotaDay": _("%(tokens)s tokens left today"),
        "quotaMonth": _("%(tokens)s tokens left this month"),
        "quotaUnlimited": _("No token limit"),
        "regenerate": _("Regenerate"),
        "copy": _("Copy"),
        "copied": _("Copied"),
        "edit": _("Edit"),
        "saveSend": _("Save and send"),
        "cancel": _("Cancel"),
        "rename": _("Rename"),
        "delete": _("Delete"),
        "renamePrompt": _("New title of the conversation"),
        "deleteConfirm": _("Delete this conversation and all its messages?"),
        "untitled": _("New conversation"),
        "slow": _("busy"),
        "down": _("not responding"),
        "idle": _("starts on your first message"),
        "noModels": _("No model is running for your department yet."),
        "connecting": _("Connecting…"),
        "connected": _("Connected"),
        "reconnecting": _("Connection lost, reconnecting…"),
        "defaultTemperature": _("default %(value)s"),
        "defaultMaxTokens": _("default %(value)s"),
        "maxTokensHint": _(
            "This model's answers stop after %(value)s tokens (its profile's default); enter a number to change it."
        ),
        "aiLabel": _("AI-generated"),
    }


@login_required
def chat_page(request: HttpRequest) -> HttpResponse:
    config: dict[str, Any] = {
        "tasks": [{"value": t.value, "label": str(t.label)} for t in Task],
        "defaultTemperatures": dict(DEFAULT_TEMPERATURES),
        "temperatureMax": TEMPERATURE_MAX,
        "maxTokensLimit": MAX_TOKENS_LIMIT,
        "errors": {code.value: str(code.label) for code in ErrorCode},
        "strings": _strings(),
        "aiLabel": labels.shown_for(request.user.department_id),  # type: ignore[union-attr]
    }
    return render(request, "portal/chat.html", {"chat_config": config})
