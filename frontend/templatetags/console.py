"""Template filters that turn stored codes into the reader's language (the code stays in the data)."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from appliance.audit import labels
from appliance.deployments.choices import State
from appliance.deployments.reasons import translate_reason
from appliance.gpus.nvml import ERROR_PREFIX, explain_inventory_error

register = template.Library()


@register.filter
def state_label(code: str) -> str:
    return str(State(code).label) if code in State.values else code


@register.filter
def event_reason(reason: str) -> str:
    return translate_reason(reason or "")


@register.filter
def audit_action(code: str) -> str:
    return labels.action_label(code)


@register.filter
def audit_via(via: str) -> str:
    return labels.via_label(via)


@register.filter
def audit_actor(actor_name: str) -> str:
    return labels.actor_label(actor_name)


@register.filter
def audit_target(target_type: str) -> str:
    return labels.target_label(target_type)


@register.filter
def inventory_error(error: str) -> str:
    """NVML's English error, explained in the reader's language; the raw text stays for the engineer."""
    text = explain_inventory_error(error)
    if text == error:
        return error
    # NVML's own words stay in a <code>: they are for whoever reads the driver's documentation.
    detail = error[len(ERROR_PREFIX) :]
    before, _sep, after = text.partition(detail)
    return format_html("{}<code>{}</code>{}", before, detail, after) if _sep else text


@register.filter
def task_label(code: str) -> str:
    from appliance.chat.choices import Task

    return str(Task(code).label) if code in Task.values else code
