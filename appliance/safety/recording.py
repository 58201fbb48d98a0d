"""Writing hits: every match of every rule, with who, where and what acted; the text only if the setting says so."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from appliance.accounts.models import User
from appliance.safety.choices import EXCERPT_CONTEXT_CHARS
from appliance.safety.matcher import Hit
from appliance.safety.models import SafetyHit, WordList, WordRule


@dataclass(frozen=True)
class Context:
    """Who asked, through what, for which model: the same for every hit of one request."""

    user_id: int | None
    username: str
    department_id: int | None
    channel: str
    model: str
    request_id: str


def excerpt_chars() -> int:
    return EXCERPT_CONTEXT_CHARS if settings.APPLIANCE_SAFETY_RECORD_TEXT else 0


def excerpt(text: str, hit: Hit) -> str:
    chars = excerpt_chars()
    return text[max(0, hit.start - chars) : hit.end + chars] if chars else ""


def _username(user_id: int | None) -> str:
    found = User.objects.filter(pk=user_id).values_list("username", flat=True).first() if user_id else None
    return found or ""


def record_hits(context: Context, stage: str, hits: Iterable[Hit]) -> int:
    """One row per rule matched (a word in two lists is two rows). Returns the number written."""
    username = context.username or _username(context.user_id)
    rows = [
        SafetyHit(
            department_id=context.department_id,
            user_id=context.user_id,
            username=username,
            word_list_id=rule.list_id,
            list_name=rule.list_name,
            rule_id=rule.rule_id,
            word=rule.word,
            action=rule.action,
            stage=stage,
            channel=context.channel,
            model=context.model[:128],
            request_id=context.request_id[:64],
            excerpt=hit.excerpt if settings.APPLIANCE_SAFETY_RECORD_TEXT else "",
        )
        for hit in hits
        for rule in hit.rules
    ]
    # The list or rule may have been deleted since the matcher was compiled: keep the frozen names.
    lists = set(WordList.objects.filter(pk__in={r.word_list_id for r in rows}).values_list("id", flat=True))
    rules = set(WordRule.objects.filter(pk__in={r.rule_id for r in rows}).values_list("id", flat=True))
    for row in rows:
        row.word_list_id = row.word_list_id if row.word_list_id in lists else None
        row.rule_id = row.rule_id if row.rule_id in rules else None
    SafetyHit.objects.bulk_create(rows)
    return len(rows)
