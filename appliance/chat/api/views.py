"""Conversations API: ``/api/v1/conversations/`` (list, ``?q=`` search, rename, delete, messages)
and ``/api/v1/chat/models/`` (the models the caller may chat with, with their engines' state)."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.accounts.models import acting_user
from appliance.chat import available, fanout, services
from appliance.chat.api.serializers import (
    ChatModelListSerializer,
    ChatModelSerializer,
    ConversationSerializer,
    ConversationUpdateSerializer,
    MessageSerializer,
    conversation_data,
)
from appliance.chat.models import Conversation
from appliance.core.api.viewsets import RestrictedViewSet

logger = logging.getLogger(__name__)


def _notify(user_id: int, event: dict[str, Any]) -> None:
    """Tell the user's open chat tabs; a Redis hiccup must not fail the change itself."""
    try:
        fanout.publish_sync(user_id, {"type": "chat.conversation", **event})
    except Exception:
        logger.warning("chat: could not notify user %s of a conversation change", user_id, exc_info=True)


class ConversationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RestrictedViewSet):
    queryset = Conversation.objects.all()
    serializer_class = ConversationSerializer

    def apply_filters(self, qs: QuerySet[Any], request: Request) -> QuerySet[Any]:
        qs = super().apply_filters(qs, request)
        text = request.query_params.get("q", "").strip()
        if self.action == "list" and text:
            qs = qs.search(text)  # type: ignore[attr-defined]
        return qs

    @extend_schema(parameters=[OpenApiParameter("q", str, description="Text in the title or any message.")])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ConversationUpdateSerializer, responses=ConversationSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        ser = ConversationUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        user = acting_user(request)
        conversation = services.update_conversation(user, int(pk), **ser.validated_data)
        data = conversation_data(conversation)
        _notify(user.pk, {"conversation": data, "deleted": None})
        return Response(data)

    def destroy(self, request: Request, pk: str) -> Response:
        user = acting_user(request)
        services.delete_conversation(user, int(pk))
        _notify(user.pk, {"conversation": None, "deleted": int(pk)})
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=MessageSerializer(many=True))
    @action(detail=True, methods=["get"])
    def messages(self, request: Request, pk: str) -> Response:
        conversation = services.get_conversation(acting_user(request), int(pk))
        page = self.paginate_queryset(conversation.messages.current())
        return self.get_paginated_response(MessageSerializer(page, many=True).data)


class ChatModelViewSet(viewsets.GenericViewSet):
    serializer_class = ChatModelSerializer
    pagination_class = None

    @extend_schema(responses=ChatModelListSerializer)
    def list(self, request: Request) -> Response:
        models = available.as_dicts(available.available_models(acting_user(request)))
        return Response({"count": len(models), "next": None, "previous": None, "results": models})
