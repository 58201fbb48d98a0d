"""The chat socket, ``ws/chat/``. Thin: it checks who is asking and calls services; see docs/chat.md.

Every socket of a user joins the user's group, where generations publish. A socket forwards
the deltas of the conversation it is subscribed to, and the start and end of every answer (so
the conversation list stays current in every tab).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from appliance.accounts.models import User
from appliance.chat import generation, live, metering, protocol, services, stops
from appliance.chat.api.serializers import conversation_data, message_data
from appliance.chat.choices import ErrorCode, Status, user_group
from appliance.core.exceptions import ServiceError
from appliance.monitoring.instruments import websocket_chats

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401

Handler = Callable[["ChatConsumer", User, dict[str, Any]], Awaitable[None]]


class ChatConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    conversation_id: int | None = None
    counted = False  # this socket is in console_websocket_chats

    async def connect(self) -> None:
        user = await self._acting_user()
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.counted = True
        websocket_chats.inc()
        await self.send_json({"type": "ready", "user": user.get_username()})

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            websocket_chats.dec()
        # The answers this socket started keep going: they belong to the conversation, not the socket.
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    @database_sync_to_async
    def _acting_user(self) -> User | None:
        """The session's user, re-read at every request: a logout or a deactivation ends access at once."""
        user, session = self.scope.get("user"), self.scope.get("session")
        if user is None or not user.is_authenticated or session is None or not session.session_key:
            return None
        if not session.exists(session.session_key):
            return None
        return User.objects.select_related("department").filter(pk=user.pk, is_active=True).first()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        data = content if isinstance(content, dict) else {}
        ref = data.get("ref")
        handler = HANDLERS.get(str(data.get("type")))
        if handler is None:
            await self._error(ErrorCode.INVALID, "unknown message type", ref)
            return
        user = await self._acting_user()
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            await handler(self, user, data)
        except ServiceError as exc:
            await self._error(exc.code, exc.message, ref, exc.details)
        except Exception:
            logger.exception("chat: %s failed", data.get("type"))
            await self._error(ErrorCode.INTERNAL, "internal error", ref)

    async def _error(self, code: str, message: str, ref: Any, details: Any = None) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, "details": details, "ref": ref})

    # --- requests --------------------------------------------------------------------------------

    async def do_subscribe(self, user: User, data: dict[str, Any]) -> None:
        if data.get("conversation_id") is None:
            self.conversation_id = None
            await self.send_json({"type": "conversation", "conversation": None, "messages": [], "ref": data.get("ref")})
            return
        wanted = protocol.integer(data, "conversation_id")
        # Subscribe first: deltas published while the snapshot is read wait in this consumer's queue
        # and follow the snapshot; the browser drops those whose seq the snapshot already covers.
        previous, self.conversation_id = self.conversation_id, wanted
        try:
            conversation, messages = await database_sync_to_async(_snapshot)(user, wanted)
        except ServiceError:
            self.conversation_id = previous
            raise
        for message in messages:
            if message["status"] == Status.STREAMING:
                await _overlay(message)
        quota = await _remaining(user.pk)
        await self.send_json(
            {"type": "conversation", "conversation": conversation, "messages": messages, "quota": quota,
             "ref": data.get("ref")}
        )  # fmt: skip

    async def do_send(self, user: User, data: dict[str, Any]) -> None:
        conversation_id = protocol.optional_integer(data, "conversation_id")
        content, settings = protocol.content(data), protocol.chat_settings(data)
        turn = await database_sync_to_async(services.send)(user, conversation_id, content, settings)
        await self._started(turn, data.get("ref"))

    async def do_regenerate(self, user: User, data: dict[str, Any]) -> None:
        message_id, settings = protocol.integer(data, "message_id"), protocol.optional_settings(data)
        turn = await database_sync_to_async(services.regenerate)(user, message_id, settings)
        await self._started(turn, data.get("ref"))

    async def do_edit(self, user: User, data: dict[str, Any]) -> None:
        message_id, content = protocol.integer(data, "message_id"), protocol.content(data)
        settings = protocol.optional_settings(data)
        turn = await database_sync_to_async(services.edit_and_resend)(user, message_id, content, settings)
        await self._started(turn, data.get("ref"))

    async def do_stop(self, user: User, data: dict[str, Any]) -> None:
        message = await database_sync_to_async(services.stoppable)(user, protocol.integer(data, "message_id"))
        if message.status != Status.STREAMING:
            return  # already over: its "done" event is on its way or was sent
        await stops.request(message.pk)

    async def do_ping(self, user: User, data: dict[str, Any]) -> None:
        await self.send_json({"type": "pong", "ref": data.get("ref")})

    async def _started(self, turn: services.Turn, ref: Any) -> None:
        self.conversation_id = turn.conversation.pk
        event = {
            "type": "chat.started", "conversation": conversation_data(turn.conversation),
            "messages": [message_data(m) for m in turn.messages], "superseded": turn.superseded, "ref": ref,
        }  # fmt: skip
        await self.channel_layer.group_send(user_group(turn.job.user_id), event)
        generation.start(turn.job)

    # --- events from the user's group ------------------------------------------------------------

    async def chat_started(self, event: dict[str, Any]) -> None:
        await self.send_json({**event, "type": "started"})

    async def chat_delta(self, event: dict[str, Any]) -> None:
        if event["conversation_id"] == self.conversation_id:
            await self.send_json({**event, "type": "delta"})

    async def chat_status(self, event: dict[str, Any]) -> None:
        """An answer waiting for its on-demand model to start: "starting the model… (elapsed)"."""
        if event["conversation_id"] == self.conversation_id:
            await self.send_json({**event, "type": "status"})

    async def chat_done(self, event: dict[str, Any]) -> None:
        if event["conversation_id"] != self.conversation_id:
            # Other tabs only need to know the list changed, not the text.
            message = {"id": event["message"]["id"], "status": event["message"]["status"]}
            event = {**event, "message": message}
        await self.send_json({**event, "type": "done"})

    async def chat_conversation(self, event: dict[str, Any]) -> None:
        await self.send_json({**event, "type": "conversation_changed"})


HANDLERS: dict[str, Handler] = {
    "subscribe": ChatConsumer.do_subscribe,
    "send": ChatConsumer.do_send,
    "regenerate": ChatConsumer.do_regenerate,
    "edit": ChatConsumer.do_edit,
    "stop": ChatConsumer.do_stop,
    "ping": ChatConsumer.do_ping,
}


async def _remaining(user_id: int) -> dict[str, Any]:
    try:
        return await metering.aremaining(user_id)
    except Exception:
        logger.warning("chat: remaining quota unavailable", exc_info=True)
        return {"available": False}


def _snapshot(user: User, conversation_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    conversation, messages = services.current_messages(user, conversation_id)
    return conversation_data(conversation), [message_data(m) for m in messages]


async def _overlay(message: dict[str, Any]) -> None:
    """The text in progress from Redis; if the answer ended meanwhile, its stored final state."""
    state = await live.snapshot(message["id"])
    if state is not None:
        message.update(reasoning=state.reasoning, content=state.content, seq=state.seq)
        message["reasoning_ms"] = state.reasoning_ms
        return
    stored = await database_sync_to_async(services.reload_message)(message["id"])
    if stored is not None:
        message.update(message_data(stored))
