"""Checking the JSON a browser sends over the chat socket (documented in docs/chat.md)."""

from __future__ import annotations

from typing import Any

from appliance.chat.choices import (
    DEFAULT_TASK,
    MAX_CONTENT_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TOKENS_LIMIT,
    TEMPERATURE_MAX,
    ErrorCode,
    Task,
)
from appliance.chat.planning import ChatSettings
from appliance.core.exceptions import InvalidInput


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", code=ErrorCode.INVALID, details={field: [problem]})


def integer(data: dict[str, Any], field: str, *, low: int = 1, high: int = 2**53) -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(field, f"a whole number from {low} to {high}")
    return value


def optional_integer(data: dict[str, Any], field: str, *, low: int = 1, high: int = 2**53) -> int | None:
    return None if data.get(field) is None else integer(data, field, low=low, high=high)


def text(data: dict[str, Any], field: str, *, limit: int, blank: bool = False) -> str:
    value = data.get(field, "" if blank else None)
    if not isinstance(value, str) or (not blank and not value.strip()):
        raise _invalid(field, "text is required")
    if len(value) > limit:
        raise _invalid(field, f"at most {limit} characters")
    return value


def _temperature(data: dict[str, Any]) -> float | None:
    value = data.get("temperature")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= TEMPERATURE_MAX:
        raise _invalid("temperature", f"a number from 0 to {TEMPERATURE_MAX:g}")
    return float(value)


def chat_settings(data: dict[str, Any]) -> ChatSettings:
    task = data.get("task") or DEFAULT_TASK
    if task not in Task.values:
        raise _invalid("task", f"one of {', '.join(Task.values)}")
    return ChatSettings(
        model=text(data, "model", limit=128),
        system_prompt=text(data, "system_prompt", limit=MAX_SYSTEM_PROMPT_CHARS, blank=True),
        task=task,
        temperature=_temperature(data),
        max_tokens=optional_integer(data, "max_tokens", high=MAX_TOKENS_LIMIT),
    )


def optional_settings(data: dict[str, Any]) -> ChatSettings | None:
    """Regenerate and edit may change the settings; without a model they reuse the conversation's."""
    return chat_settings(data) if data.get("model") else None


def content(data: dict[str, Any]) -> str:
    return text(data, "content", limit=MAX_CONTENT_CHARS)
