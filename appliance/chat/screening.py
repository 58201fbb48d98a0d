"""Content safety in the chat portal: a question is checked before it is stored, an answer as it streams.

The rules and the matching are appliance/safety's. A blocked question is refused with a message in
the user's language and nothing is stored but the hit; a blocked answer ends the generation, which
closes the engine's request, and keeps the text before the word (the page says why by its code).
Masking replaces the word's characters with ``*`` before any of it leaves the console.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from appliance.accounts.models import User
from appliance.chat.choices import ErrorCode
from appliance.core.exceptions import PermissionDenied
from appliance.safety import recording, rules
from appliance.safety.choices import Action, Channel, Stage
from appliance.safety.matcher import Hit, Matcher, StreamScanner, strongest


class ContentBlocked(Exception):
    """A blocking word in the answer: the generation ends failed with ``ErrorCode.CONTENT_BLOCKED``."""


def context(user_id: int, department_id: int | None, model: str, request_id: str) -> recording.Context:
    return recording.Context(user_id, "", department_id, Channel.CHAT, model, request_id)


def check_question(user: User, text: str, model: str) -> None:
    """Record the question's hits (in a transaction of their own, kept if it is refused); refuse a blocked one."""
    matcher = rules.matcher_for(user.department_id)
    if matcher is None:
        return
    hits = [Hit(h.rules, h.start, h.end, recording.excerpt(text, h)) for h in matcher.find(text)]
    if not hits:
        return
    with transaction.atomic():
        recording.record_hits(context(user.pk, user.department_id, model, ""), Stage.PROMPT, hits)
    if strongest(hits) == Action.BLOCK:
        message = _("Your message was blocked by your organisation's content-safety rules.")
        raise PermissionDenied(message, code=ErrorCode.CONTENT_BLOCKED)


class AnswerScreen:
    """The answer's text and reasoning, each scanned as it streams."""

    def __init__(self, matcher: Matcher) -> None:
        chars = recording.excerpt_chars()
        self.content, self.reasoning = StreamScanner(matcher, chars), StreamScanner(matcher, chars)

    def feed(self, text: str, *, reasoning: bool = False) -> str:
        """What may be shown now; raises ContentBlocked (after the text before the word) at a blocking word."""
        scanner = self.reasoning if reasoning else self.content
        shown = "".join(r.text for r in scanner.feed(text))
        if scanner.blocked is not None:
            raise ContentBlocked(shown)
        return shown

    def finish(self, *, reasoning: bool = False) -> str:
        return "".join(r.text for r in (self.reasoning if reasoning else self.content).finish())

    @property
    def hits(self) -> list[Hit]:
        return self.reasoning.hits + self.content.hits
