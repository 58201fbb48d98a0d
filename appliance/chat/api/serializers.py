"""The shapes of conversations and messages, shared by the API and the WebSocket protocol."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from appliance.chat.choices import MAX_SYSTEM_PROMPT_CHARS, MAX_TOKENS_LIMIT, TEMPERATURE_MAX, TITLE_MAX, Task
from appliance.chat.models import Conversation, Message
from appliance.core.api.serializers import StrictSerializer


class ConversationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Conversation
        fields = [
            "id", "title", "model", "system_prompt", "task", "temperature", "max_tokens", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class ConversationUpdateSerializer(StrictSerializer):
    title = serializers.CharField(max_length=TITLE_MAX, allow_blank=True, required=False)
    system_prompt = serializers.CharField(max_length=MAX_SYSTEM_PROMPT_CHARS, allow_blank=True, required=False)
    model = serializers.CharField(max_length=128, allow_blank=True, required=False)
    task = serializers.ChoiceField(choices=Task.choices, required=False)
    temperature = serializers.FloatField(min_value=0, max_value=TEMPERATURE_MAX, allow_null=True, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, allow_null=True, required=False)


class MessageSerializer(serializers.ModelSerializer):
    tokens_per_second = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id", "conversation_id", "role", "content", "reasoning", "status", "model", "temperature", "max_tokens",
            "error_code", "error_detail", "prompt_tokens", "completion_tokens", "usage_estimated", "ttft_ms",
            "reasoning_ms", "duration_ms", "tokens_per_second", "created_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class ChatModelSerializer(serializers.Serializer):
    """A model the user may chat with, and how its engines answered the last probe."""

    name = serializers.CharField()
    engine = serializers.CharField()
    reasoning = serializers.BooleanField()
    status = serializers.ChoiceField(choices=["ok", "slow", "down"])
    chat_defaults = serializers.DictField(child=serializers.FloatField())
    default_max_tokens = serializers.IntegerField()
    max_model_len = serializers.IntegerField()


# The chat's events carry these shapes for every answer (started, done); built directly from the fields,
# as the serializers above render them (test_send_cost.py holds them equal): a ModelSerializer builds its
# fields anew for each instance, a few milliseconds of a busy process per answer.
_WHEN = serializers.DateTimeField()
_MESSAGE_FIELDS = [name for name in MessageSerializer.Meta.fields if name not in ("created_at", "finished_at")]
_CONVERSATION_FIELDS = [name for name in ConversationSerializer.Meta.fields if name not in ("created_at", "updated_at")]


def _when(value: Any) -> Any:
    return None if value is None else _WHEN.to_representation(value)


def message_data(message: Message) -> dict[str, Any]:
    data = {name: getattr(message, name) for name in _MESSAGE_FIELDS}
    data["created_at"], data["finished_at"] = _when(message.created_at), _when(message.finished_at)
    return data


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    data = {name: getattr(conversation, name) for name in _CONVERSATION_FIELDS}
    data["created_at"], data["updated_at"] = _when(conversation.created_at), _when(conversation.updated_at)
    return data


@extend_schema_serializer(many=False)  # the list action answers this one envelope, not an array of them
class ChatModelListSerializer(serializers.Serializer):
    """The models list: every model at once, in the paginated envelope other lists use (next is always null)."""

    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = ChatModelSerializer(many=True)
