"""The chat socket, ``ws/chat/``. Thin: it checks who is asking and calls services; see docs/chat.md.

Every socket of a user receives the user's answer events (``fanout``): straight from an answer generated
in its own process, through Redis from another process. A socket forwards the deltas of the
conversation it is subscribed to, and the start and end of every answer (so the conversation list stays
current in every tab). Events wait in the socket's outbox and are sent by its own task, so a slow
browser slows nobody's answer; one that stops reading for ``OUTBOX_LIMIT`` events is closed, and its tab
reconnects and resubscribes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from appliance.accounts.models import User
from appliance.chat import acting, fanout, generation, live, metering, protocol, services, stops
from appliance.chat.api.serializers import conversation_data, message_data
from appliance.chat.choices import ErrorCode, Status
from appliance.core.context import new_request_id, update_context
from appliance.core.dbthreads import db
from appliance.core.exceptions import ServiceError
from appliance.monitoring.instruments import websocket_chats

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408  # the browser did not read its events: it reconnects and resubscribes
OUTBOX_LIMIT = 2000

Handler = Callable[["ChatConsumer", dict[str, Any]], Awaitable[None]]
R = TypeVar("R")


class Unauthenticated(Exception):
    """The socket's session ended or its user was deactivated: the socket closes."""


class ChatConsumer(AsyncJsonWebsocketConsumer):
    user_id: int | None = None
    known: acting.KnownUser
    conversation_id: int | None = None
    counted = False  # this socket is in console_websocket_chats
    writer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.known = acting.KnownUser()
        user = await self._acting_user()
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(OUTBOX_LIMIT)
        # Held while a snapshot is read and sent: the events that arrive meanwhile follow it.
        self.sending = asyncio.Lock()
        self.user_id = user.pk
        await fanout.attach(user.pk, self)
        await self.accept()
        self.writer = asyncio.create_task(self._write(), name=f"chat-socket-writer-{user.pk}")
        self.counted = True
        websocket_chats.inc()
        await self.send_json({"type": "ready", "user": user.get_username()})

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            websocket_chats.dec()
        # The answers this socket started keep going: they belong to the conversation, not the socket.
        if self.user_id is not None:
            fanout.detach(self.user_id, self)
        if self.writer is not None:
            self.writer.cancel()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """As Channels' own, less its ``aclose_old_connections`` before every message: a trip to its database
        thread each time, for connections this consumer does not use (its database work runs on the database
        threads, which look after their own: ``appliance.core.dbthreads``; the rare fallbacks that use asgiref's
        shared thread, such as usage records written directly while Redis is away, are cleaned up by the HTTP
        requests of the same process)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def deliver(self, event: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("chat: a socket of user %s stopped reading its events; closing it", self.user_id)
            if self.user_id is not None:
                fanout.detach(self.user_id, self)
            asyncio.get_running_loop().create_task(self.close(code=CLOSE_TOO_SLOW))
        except RuntimeError:  # its loop is gone (a test's): nothing to deliver to
            pass

    async def _write(self) -> None:
        while True:
            event = await self.outbox.get()
            handler = EVENTS.get(event.get("type", ""))
            if handler is None:
                continue
            try:
                async with self.sending:
                    await handler(self, event)
            except Exception:  # the socket went away mid-send; disconnect() ends this task
                logger.debug("chat: event not sent", exc_info=True)

    def _user(self) -> User | None:
        """The session's user, re-read at every request: a logout or a deactivation ends access at once."""
        user, session = self.scope.get("user"), self.scope.get("session")
        if user is None or not user.is_authenticated or session is None or not session.session_key:
            return None
        return self.known.read(user.pk, session)

    @db
    def _acting_user(self) -> User | None:
        return self._user()

    def _call_as_user(self, func: Callable[..., R], *args: Any) -> R:
        user = self._user()
        if user is None:
            raise Unauthenticated
        return func(user, *args)

    async def _as_user(self, func: Callable[..., R], *args: Any) -> R:
        """``func(user, *args)`` for the session's user, read again in the same trip to the database threads:
        one trip per request, not two (a trip waits for the event loop, which with many answers in flight
        is most of its cost; docs/performance.md)."""
        return await db(self._call_as_user)(func, *args)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        update_context(request_id=new_request_id())  # each message is a request of its own (planning.Job.request_id)
        data = content if isinstance(content, dict) else {}
        ref = data.get("ref")
        handler = HANDLERS.get(str(data.get("type")))
        if handler is None:
            await self._error(ErrorCode.INVALID, "unknown message type", ref)
            return
        try:
            await handler(self, data)
        except Unauthenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
        except ServiceError as exc:
            await self._error(exc.code, exc.message, ref, exc.details)
        except Exception:
            logger.exception("chat: %s failed", data.get("type"))
            await self._error(ErrorCode.INTERNAL, "internal error", ref)

    async def _error(self, code: str, message: str, ref: Any, details: Any = None) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, "details": details, "ref": ref})

    # --- requests --------------------------------------------------------------------------------

    async def do_subscribe(self, data: dict[str, Any]) -> None:
        if data.get("conversation_id") is None:
            await self._as_user(_present)
            self.conversation_id = None
            await self.send_json({"type": "conversation", "conversation": None, "messages": [], "ref": data.get("ref")})
            return
        wanted = protocol.integer(data, "conversation_id")
        # Subscribe first: deltas published while the snapshot is read wait in this socket's outbox
        # and follow the snapshot; the browser drops those whose seq the snapshot already covers.
        async with self.sending:
            previous, self.conversation_id = self.conversation_id, wanted
            try:
                conversation, messages = await self._as_user(_snapshot, wanted)
            except BaseException:
                self.conversation_id = previous
                raise
            quota = await _remaining(user_id) if (user_id := self.user_id) is not None else {"available": False}
            for message in messages:
                if message["status"] == Status.STREAMING:
                    await _overlay(message)
            await self.send_json(
                {"type": "conversation", "conversation": conversation, "messages": messages, "quota": quota,
                 "ref": data.get("ref")}
            )  # fmt: skip

    async def do_send(self, data: dict[str, Any]) -> None:
        conversation_id = protocol.optional_integer(data, "conversation_id")
        content, settings = protocol.content(data), protocol.chat_settings(data)
        turn = await self._as_user(services.send, conversation_id, content, settings)
        await self._started(turn, data.get("ref"))

    async def do_regenerate(self, data: dict[str, Any]) -> None:
        message_id, settings = protocol.integer(data, "message_id"), protocol.optional_settings(data)
        turn = await self._as_user(services.regenerate, message_id, settings)
        await self._started(turn, data.get("ref"))

    async def do_edit(self, data: dict[str, Any]) -> None:
        message_id, content = protocol.integer(data, "message_id"), protocol.content(data)
        settings = protocol.optional_settings(data)
        turn = await self._as_user(services.edit_and_resend, message_id, content, settings)
        await self._started(turn, data.get("ref"))

    async def do_stop(self, data: dict[str, Any]) -> None:
        message = await self._as_user(services.stoppable, protocol.integer(data, "message_id"))
        if message.status != Status.STREAMING:
            return  # already over: its "done" event is on its way or was sent
        await stops.request(message.pk)

    async def do_ping(self, data: dict[str, Any]) -> None:
        await self._as_user(_present)
        await self.send_json({"type": "pong", "ref": data.get("ref")})

    async def _started(self, turn: services.Turn, ref: Any) -> None:
        self.conversation_id = turn.conversation.pk
        event = {
            "type": "chat.started", "conversation": conversation_data(turn.conversation),
            "messages": [message_data(m) for m in turn.messages], "superseded": turn.superseded, "ref": ref,
        }  # fmt: skip
        # "started" first, here and to the other processes (the generation's first step, live.start): no delta
        # may overtake it. A stop asked for before the generation listens is in the flag, read in that step.
        fanout.deliver_here(turn.job.user_id, event)
        generation.start(turn.job, turn.messages[-1], fanout.publication(turn.job.user_id, event))

    # --- the user's answer events (fanout), sent by the socket's writer -------------------------

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


EVENTS: dict[str, Callable[[ChatConsumer, dict[str, Any]], Awaitable[None]]] = {
    "chat.started": ChatConsumer.chat_started,
    "chat.delta": ChatConsumer.chat_delta,
    "chat.status": ChatConsumer.chat_status,
    "chat.done": ChatConsumer.chat_done,
    "chat.conversation": ChatConsumer.chat_conversation,
}

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


def _present(user: User) -> None:
    """Nothing to do but check the session's user (``ChatConsumer._as_user``)."""


def _snapshot(user: User, conversation_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    conversation, messages = services.current_messages(user, conversation_id)
    return conversation_data(conversation), [message_data(m) for m in messages]


async def _overlay(message: dict[str, Any]) -> None:
    """The text in progress, as sent by its generation if it runs in this process, else from Redis; if the
    answer ended meanwhile, its stored final state."""
    state = generation.shown(message["id"]) or await live.snapshot(message["id"])
    if state is not None:
        message.update(reasoning=state.reasoning, content=state.content, seq=state.seq)
        message["reasoning_ms"] = state.reasoning_ms
        return
    stored = await db(services.reload_message)(message["id"])
    if stored is not None:
        message.update(message_data(stored))
