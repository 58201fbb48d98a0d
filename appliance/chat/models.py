"""Conversations and their messages, one row each, private to the user who owns them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from django.conf import settings
from django.db import models
from django.db.models import Q

from appliance.chat.choices import DEFAULT_TASK, TITLE_MAX, ErrorCode, Role, Status, Task
from appliance.core.querysets import ACTIONS, RestrictedQuerySet

if TYPE_CHECKING:
    from appliance.accounts.models import User


class ConversationQuerySet(RestrictedQuerySet["Conversation"]):
    def restrict(self, user: Any, action: str = "view") -> Self:
        """Chats are private: unlike other objects, platform admins and auditors do not see others' chats.

        Oversight of who used what goes through usage records and the audit log, never the text.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        return self.filter(user_id=user.pk)

    def search(self, text: str) -> Self:
        """Conversations whose title or any current message contains ``text``."""
        matching = Message.objects.filter(superseded=False, content__icontains=text).values("conversation_id")
        return self.filter(Q(title__icontains=text) | Q(pk__in=matching))


class Conversation(models.Model):
    """A chat. Its settings are the ones last used, so a reopened chat continues as it was."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=TITLE_MAX, blank=True)
    model = models.CharField(max_length=128, blank=True, help_text="Served model name last used.")
    system_prompt = models.TextField(blank=True)
    task = models.CharField(max_length=32, choices=Task.choices, default=DEFAULT_TASK)
    temperature = models.FloatField(null=True, blank=True, help_text="Empty: the task's default.")
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="chat_conv_user_recent")]

    def __str__(self) -> str:
        return self.title or f"#{self.pk}"

    def owned_by(self, user: User) -> bool:
        return self.user_id == user.pk


class MessageQuerySet(RestrictedQuerySet["Message"]):
    def restrict(self, user: Any, action: str = "view") -> Self:
        """A message is visible exactly when its conversation is (see ConversationQuerySet.restrict)."""
        return self.filter(conversation__in=Conversation.objects.restrict(user, action))

    def current(self) -> Self:
        """The messages of the conversation as it reads now (edits and regenerations hide older ones)."""
        return self.filter(superseded=False)


class Message(models.Model):
    """One turn. Assistant messages keep their reasoning apart from the answer, and how the answer went.

    Regenerate and edit never delete: the replaced messages are marked ``superseded`` and hidden.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True)
    superseded = models.BooleanField(default=False)
    model = models.CharField(max_length=128, blank=True)
    deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=32, choices=ErrorCode.choices, blank=True)
    error_detail = models.CharField(max_length=500, blank=True, help_text="The engine's own words, if any.")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_estimated = models.BooleanField(default=False, help_text="The engine reported no usage; counted here.")
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    reasoning_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["conversation", "superseded", "id"], name="chat_msg_conv_current")]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk}"

    @property
    def tokens_per_second(self) -> float | None:
        """Decoding speed: completion tokens over the time after the first token."""
        if not self.completion_tokens or self.duration_ms is None or self.ttft_ms is None:
            return None
        decoding_ms = self.duration_ms - self.ttft_ms
        if decoding_ms <= 0:
            return None
        return round(self.completion_tokens * 1000 / decoding_ms, 1)
