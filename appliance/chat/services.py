"""Chat operations. Each owns its transaction; the consumer, the API and the generation call them.

Every entry point takes the acting user and goes through ``restrict``: a conversation of someone
else is "not found", whatever the user's role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.utils.translation import gettext as _

from appliance.accounts.models import User
from appliance.audit import services as audit
from appliance.chat import answers, screening, stops
from appliance.chat.choices import (
    TITLE_FROM_FIRST_MESSAGE_CHARS,
    TITLE_MAX,
    ErrorCode,
    Role,
    Status,
)
from appliance.chat.models import Conversation, Message
from appliance.chat.planning import ChatSettings, Job, ModelChoice, budget, choose_model, first_turn, plan
from appliance.core.exceptions import Conflict, InvalidInput, NotFound
from appliance.core.querysets import CHANGE, DELETE, VIEW

__all__ = ["ChatSettings", "Job", "Turn"]

UPDATABLE = ("title", "system_prompt", "task", "temperature", "max_tokens", "model")


@dataclass(frozen=True)
class Turn:
    """A started answer: the job to run and the rows the browser shows at once."""

    job: Job
    conversation: Conversation
    messages: list[Message]
    superseded: list[int] = field(default_factory=list)


def get_conversation(user: User, conversation_id: int, action: str = VIEW) -> Conversation:
    conversation = Conversation.objects.restrict(user, action).filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound(_("Conversation not found."), code=ErrorCode.NOT_FOUND)
    return conversation


def get_message(user: User, message_id: int, action: str = VIEW) -> Message:
    message = Message.objects.restrict(user, action).select_related("conversation").filter(pk=message_id).first()
    if message is None or message.superseded:
        raise NotFound(_("Message not found."), code=ErrorCode.NOT_FOUND)
    return message


def _lock(user: User, conversation_id: int) -> Conversation:
    conversation = Conversation.objects.restrict(user, CHANGE).select_for_update().filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound(_("Conversation not found."), code=ErrorCode.NOT_FOUND)
    return conversation


def _ensure_idle(conversation: Conversation) -> None:
    """One answer at a time per conversation; an answer whose process died does not count."""
    answers.recover_orphans(conversation_id=conversation.pk)
    if conversation.messages.current().filter(status=Status.STREAMING).exists():
        raise Conflict(_("An answer is still being written in this conversation."), code=ErrorCode.BUSY)


def _apply_settings(conversation: Conversation, settings: ChatSettings) -> None:
    conversation.model = settings.model
    conversation.system_prompt = settings.system_prompt
    conversation.task = settings.task
    conversation.temperature = settings.temperature
    conversation.max_tokens = settings.max_tokens


def _title_from(content: str) -> str:
    text = re.sub(r"\s+", " ", content).strip()
    return text[:TITLE_FROM_FIRST_MESSAGE_CHARS] + ("…" if len(text) > TITLE_FROM_FIRST_MESSAGE_CHARS else "")


def _answer(
    user: User,
    conversation: Conversation,
    settings: ChatSettings,
    choice: ModelChoice,
    question: Message | None = None,
    *,
    first: bool = False,
) -> tuple[Message, Job]:
    """Create the streaming assistant message, after ``question`` (the user's new message, stored with it), and
    the job that will fill it. ``first``: the conversation was just created with ``settings`` and holds only
    ``question`` (nothing to save or read back). The answer's live state and heartbeat are the generation's
    first step, after the commit: the reaper takes no answer younger than ``ORPHAN_GRACE_SECONDS``."""
    if not first:
        _apply_settings(conversation, settings)
        conversation.save()
    temperature = settings.temperature if settings.temperature is not None else choice.temperature_for(settings.task)
    max_tokens = budget(user, conversation, choice)
    message = Message(
        conversation=conversation, role=Role.ASSISTANT, status=Status.STREAMING, model=choice.name,
        deployment_id=choice.deployment_id, temperature=temperature, max_tokens=max_tokens,
    )  # fmt: skip
    _insert([question, message] if question is not None else [message])
    messages = first_turn(conversation, question.content) if first and question is not None else None
    job = plan(user, conversation, message.pk, choice, max_tokens=max_tokens, messages=messages)
    return message, job


def _insert(messages: list[Message]) -> None:
    """The rows in one INSERT where the database returns their ids (MariaDB, SQLite), else one at a time."""
    if connections[Message.objects.db].features.can_return_rows_from_bulk_insert:
        Message.objects.bulk_create(messages)
    else:
        for message in messages:
            message.save(force_insert=True)


def send(user: User, conversation_id: int | None, content: str, settings: ChatSettings) -> Turn:
    """A new user message and the answer to it, in a new conversation when ``conversation_id`` is None."""
    screening.check_question(user, content, settings.model)
    return _send(user, conversation_id, content, settings)


@transaction.atomic
def _send(user: User, conversation_id: int | None, content: str, settings: ChatSettings) -> Turn:
    choice = choose_model(user, settings.model)  # refuse before creating anything
    if conversation_id is None:
        conversation = Conversation(user=user, title=_title_from(content))
        _apply_settings(conversation, settings)
        conversation.save(force_insert=True)
    else:
        conversation = _lock(user, conversation_id)
        _ensure_idle(conversation)
        if not conversation.title:
            conversation.title = _title_from(content)
    question = Message(conversation=conversation, role=Role.USER, content=content)
    answer, job = _answer(user, conversation, settings, choice, question, first=conversation_id is None)
    return Turn(job, conversation, [question, answer])


@transaction.atomic
def regenerate(user: User, message_id: int, settings: ChatSettings | None) -> Turn:
    """Answer the last question again; the previous answer is kept, hidden."""
    target = get_message(user, message_id, CHANGE)
    conversation = _lock(user, target.conversation_id)
    _ensure_idle(conversation)
    last = conversation.messages.current().order_by("-id").first()
    if target.role != Role.ASSISTANT or last is None or last.pk != target.pk:
        raise InvalidInput(_("Only the last answer can be regenerated."), code=ErrorCode.INVALID)
    settings = settings or _settings_of(conversation)
    choice = choose_model(user, settings.model)
    Message.objects.filter(pk=target.pk).update(superseded=True)
    answer, job = _answer(user, conversation, settings, choice)
    return Turn(job, conversation, [answer], superseded=[target.pk])


def edit_and_resend(user: User, message_id: int, content: str, settings: ChatSettings | None) -> Turn:
    """Replace a question and everything after it with the edited question and a new answer."""
    screening.check_question(user, content, settings.model if settings is not None else "")
    return _edit_and_resend(user, message_id, content, settings)


@transaction.atomic
def _edit_and_resend(user: User, message_id: int, content: str, settings: ChatSettings | None) -> Turn:
    target = get_message(user, message_id, CHANGE)
    if target.role != Role.USER:
        raise InvalidInput(_("Only your own messages can be edited."), code=ErrorCode.INVALID)
    conversation = _lock(user, target.conversation_id)
    _ensure_idle(conversation)
    settings = settings or _settings_of(conversation)
    choice = choose_model(user, settings.model)
    hidden = list(conversation.messages.current().filter(id__gte=target.pk).values_list("id", flat=True))
    Message.objects.filter(pk__in=hidden).update(superseded=True)
    question = Message(conversation=conversation, role=Role.USER, content=content)
    answer, job = _answer(user, conversation, settings, choice, question)
    return Turn(job, conversation, [question, answer], superseded=hidden)


def _settings_of(conversation: Conversation) -> ChatSettings:
    return ChatSettings(
        model=conversation.model, system_prompt=conversation.system_prompt, task=conversation.task,
        temperature=conversation.temperature, max_tokens=conversation.max_tokens,
    )  # fmt: skip


def stoppable(user: User, message_id: int) -> Message:
    """The user's own answer in progress; anything else is not found (ids of others never leak)."""
    message = get_message(user, message_id, CHANGE)
    if message.role != Role.ASSISTANT:
        raise NotFound(_("Message not found."), code=ErrorCode.NOT_FOUND)
    return message


def reload_message(message_id: int) -> Message | None:
    """A message already known to be the caller's (no permission check here)."""
    return Message.objects.filter(pk=message_id).first()


def current_messages(user: User, conversation_id: int) -> tuple[Conversation, list[Message]]:
    conversation = get_conversation(user, conversation_id)
    answers.recover_orphans(conversation_id=conversation.pk)
    return conversation, list(conversation.messages.current())


@transaction.atomic
def update_conversation(user: User, conversation_id: int, **changes: Any) -> Conversation:
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(unknown)}", code="unknown_field")
    conversation = _lock(user, conversation_id)
    for name, value in changes.items():
        setattr(conversation, name, value[:TITLE_MAX] if name == "title" else value)
    conversation.save()
    return conversation


@transaction.atomic
def delete_conversation(user: User, conversation_id: int) -> None:
    """Delete a chat and its messages. Audited without its text, which stays private."""
    conversation = Conversation.objects.restrict(user, DELETE).select_for_update().filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound(_("Conversation not found."), code=ErrorCode.NOT_FOUND)
    streaming = list(conversation.messages.filter(status=Status.STREAMING).values_list("id", flat=True))
    before = {"messages": conversation.messages.count(), "model": conversation.model}
    audit.record(
        "chat.conversation.delete", actor=user, target=conversation, target_label=f"conversation {conversation.pk}",
        department_id=user.department_id, before=before,
    )  # fmt: skip
    conversation.delete()
    transaction.on_commit(lambda: stops.request_sync(streaming))
