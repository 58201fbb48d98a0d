"""Storing answers: progress every few seconds, the final state once, and orphans after a crash."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.utils import timezone

from appliance.chat import live
from appliance.chat.choices import ORPHAN_GRACE_SECONDS, ErrorCode, Status
from appliance.chat.models import Conversation, Message

logger = logging.getLogger(__name__)

ORPHAN_BATCH = 500


@dataclass(frozen=True)
class Final:
    status: str
    reasoning: str
    content: str
    error_code: str
    error_detail: str
    prompt_tokens: int | None
    completion_tokens: int | None
    usage_estimated: bool
    ttft_ms: int | None
    reasoning_ms: int | None
    duration_ms: int | None


def save_progress(message_id: int, reasoning: str, content: str) -> None:
    """The text so far, so a crash of Redis as well as of the process loses seconds, not the answer."""
    Message.objects.filter(pk=message_id, status=Status.STREAMING).update(reasoning=reasoning, content=content)


def finish_message(message_id: int, final: Final, started: Message | None = None) -> Message | None:
    """Store the answer as it ended; None if its conversation was deleted meanwhile.

    Not conditional on the status: if the reaper took a slow (not dead) generation for an orphan,
    the generation's complete text still wins. ``started``: the row as the answer's start created it, to
    return with the final state instead of reading it back (what the browser is sent of it is what the
    start wrote and this end writes).
    """
    now = timezone.now()
    fields = {**asdict(final), "finished_at": now}
    if not Message.objects.filter(pk=message_id).update(**fields):
        return None
    if started is not None and started.pk == message_id:
        message = started
        for name, value in fields.items():
            setattr(message, name, value)
    else:
        message = Message.objects.get(pk=message_id)
    Conversation.objects.filter(pk=message.conversation_id).update(updated_at=now)
    return message


def recover_orphans(conversation_id: int | None = None) -> int:
    """Answers left streaming by a process that died: keep their text from Redis, mark them interrupted."""
    cutoff = timezone.now() - timedelta(seconds=ORPHAN_GRACE_SECONDS)
    candidates = Message.objects.filter(status=Status.STREAMING, created_at__lt=cutoff)
    if conversation_id is not None:
        candidates = candidates.filter(conversation_id=conversation_id)
    ids = list(candidates.values_list("id", flat=True)[:ORPHAN_BATCH])
    beating = live.alive(ids)
    recovered = 0
    for message_id in ids:
        if message_id in beating:
            continue
        fields: dict[str, object] = {
            "status": Status.INTERRUPTED, "error_code": ErrorCode.INTERRUPTED, "finished_at": timezone.now(),
        }  # fmt: skip
        state = live.snapshot_sync(message_id)
        if state is not None:
            fields.update(reasoning=state.reasoning, content=state.content)
        # Conditional: of two reapers, or a reaper and the generation itself, one writes.
        if Message.objects.filter(pk=message_id, status=Status.STREAMING).update(**fields):
            recovered += 1
            live.discard(message_id)
            logger.warning("chat: answer %s recovered after its generation stopped beating", message_id)
    return recovered
