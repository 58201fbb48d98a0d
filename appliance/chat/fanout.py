"""A user's answer events to that user's open sockets, in this process and in the others.

An answer is generated in the process whose socket asked for it (``generation``), so its events go
straight to the sockets of this process: no broker between a token and the browser. The user's
sockets in other web processes (a second tab on another worker) get the same events through one
Redis pub/sub channel per console, published in the same round trip that appends the text to the
live state (``live.append``), so a delta costs no extra trip either way.

Why not Channels' layer: channels_redis keeps one inbox per process of at most ``capacity`` (100)
messages and drops a group message to a full inbox without a word. With 64 answers in flight a worker
whose loop ran a little late had more than that waiting, and answers lost their tail and their "done"
(issue 11). Here nothing is dropped silently: a socket that cannot take its events (its outbox is
full: the browser stopped reading) is closed, and the tab reconnects and resubscribes to the stored
and live state.

Each process listens on the one channel from its start, before any socket can attach, so a socket
that subscribes to a conversation misses nothing published after its snapshot was read. It counts its
sockets of each user in Redis (``live.sockets_key``) before a socket reads anything, and an event is
published only while another process holds a socket of its user: with one tab per user, as with most
users, no process reads another's events (before, every process parsed every batch of every answer). A message
names its user and the process it came from; a listener reads only those two fields of a message
for a user it holds no socket of, or that it published itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import uuid
import weakref
from asyncio import AbstractEventLoop
from collections import Counter, defaultdict
from typing import Any, Protocol

from django.conf import settings

from appliance.chat import live
from appliance.chat.choices import PROCESS_BEAT_SECONDS, PROCESS_BEAT_TTL_SECONDS

logger = logging.getLogger(__name__)

ANYWHERE = "-"  # published outside any web process (an API change): every process delivers it


class Receiver(Protocol):
    def deliver(self, event: dict[str, Any]) -> None:
        """Take one event without waiting (the socket's own task sends it)."""


_receivers: defaultdict[int, set[Receiver]] = defaultdict(set)
_listeners: weakref.WeakKeyDictionary[AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()
_ready: weakref.WeakKeyDictionary[AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()
LISTEN_READY_SECONDS = 5.0


@functools.cache
def _origin(pid: int) -> str:
    return f"{pid}.{uuid.uuid4().hex[:8]}"


def origin() -> str:
    """This process; a message from it is not delivered twice. Per pid: the server forks its workers
    after importing the application, so a value made at import would be every worker's."""
    return _origin(os.getpid())


def channel() -> str:
    return f"{settings.CONSOLE_ID}:chat:events"


def encode(user_id: int, event: dict[str, Any], sender: str | None = None) -> str:
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"{user_id}|{sender or origin()}|{body}"


async def attach(user_id: int, receiver: Receiver) -> None:
    """Deliver the user's events to ``receiver`` from now on (waits until this process listens, and until
    the other processes publish the user's events to it)."""
    _receivers[user_id].add(receiver)
    _counted.add(user_id)
    _changing[user_id] += 1
    try:
        await _listening()
        await asyncio.wait_for(live.count_sockets(user_id, origin(), 1), LISTEN_READY_SECONDS)
    except Exception:  # Redis is away: this process's own answers still reach the socket; the beat counts it
        logger.warning("chat: could not count a socket of user %s", user_id, exc_info=True)
    finally:
        _changed(user_id)


def detach(user_id: int, receiver: Receiver) -> None:
    found = _receivers.get(user_id)
    if found is None or receiver not in found:
        return
    found.discard(receiver)
    if not found:
        del _receivers[user_id]
    try:
        task = asyncio.get_running_loop().create_task(_uncount(user_id))
    except RuntimeError:  # its loop is gone (a test's): the count lapses with this process's beat
        return
    _changing[user_id] += 1
    _uncounting.add(task)
    task.add_done_callback(_uncounting.discard)


_uncounting: set[asyncio.Task[None]] = set()
_counted: set[int] = set()  # users this process has counted sockets of since its last beat
# Users with a socket's count on its way to Redis: the beat leaves their counts be (a whole count written
# meanwhile would be counted again, or uncounted again, by the change in flight), and sets them at its next.
_changing: Counter[int] = Counter()


def _changed(user_id: int) -> None:
    _changing[user_id] -= 1
    if _changing[user_id] <= 0:
        del _changing[user_id]


async def _uncount(user_id: int) -> None:
    try:
        await asyncio.wait_for(live.count_sockets(user_id, origin(), -1), LISTEN_READY_SECONDS)
    except Exception:  # the other processes publish to this one for nothing until its next beat
        logger.warning("chat: could not uncount a socket of user %s", user_id, exc_info=True)
    finally:
        _changed(user_id)


def deliver_here(user_id: int, event: dict[str, Any]) -> None:
    for receiver in tuple(_receivers.get(user_id, ())):
        receiver.deliver(event)


def publication(user_id: int, event: dict[str, Any]) -> live.Publication:
    """``event`` for the user's sockets in other processes (sent only if there are some)."""
    return live.Publication(channel(), encode(user_id, event), live.sockets_key(user_id), origin())


async def publish(user_id: int, event: dict[str, Any]) -> None:
    """An event to every socket of the user: here at once, elsewhere through Redis."""
    deliver_here(user_id, event)
    try:
        await live.publish_elsewhere(publication(user_id, event))
    except Exception:  # this process's sockets have it; the other tabs catch up when they resubscribe
        logger.warning("chat: could not publish an event for user %s to other processes", user_id, exc_info=True)


def publish_sync(user_id: int, event: dict[str, Any]) -> None:
    """From outside the web processes' loops (an API view): every process delivers it to its sockets."""
    live.client().publish(channel(), encode(user_id, event, ANYWHERE))


def _dispatch(raw: str) -> None:
    user, sender, body = raw.split("|", 2)
    if sender == origin():
        return
    receivers = _receivers.get(int(user))
    if not receivers:
        return
    event = json.loads(body)
    for receiver in tuple(receivers):
        receiver.deliver(event)


async def _listening() -> None:
    loop = asyncio.get_running_loop()
    task = _listeners.get(loop)
    if task is None or task.done():
        _ready[loop] = asyncio.Event()
        _listeners[loop] = loop.create_task(_listen(_ready[loop]), name="chat-event-listener")
    ready = _ready[loop]
    if not ready.is_set():
        try:
            await asyncio.wait_for(ready.wait(), LISTEN_READY_SECONDS)
        except TimeoutError:  # Redis is away: this process's own answers still reach its sockets
            logger.warning("chat: not listening to other processes' events yet")


async def _listen(ready: asyncio.Event) -> None:
    beating = asyncio.create_task(_beat(), name="chat-process-beat")
    try:
        await _listen_on(ready)
    finally:
        beating.cancel()


async def _recount() -> None:
    """This process's counts of sockets, whole: one lost or late, or dropped while Redis was away, is right again."""
    global _counted
    changing = set(_changing)
    held = {user: len(sockets) for user, sockets in _receivers.items() if user not in changing}
    await live.set_sockets(held, origin(), _counted - held.keys() - changing)
    _counted = held.keys() | changing


async def _beat() -> None:
    while True:
        try:
            await live.beat(origin(), PROCESS_BEAT_TTL_SECONDS)
            await _recount()
        except Exception:
            logger.warning("chat: could not beat", exc_info=True)
        await asyncio.sleep(PROCESS_BEAT_SECONDS)


async def _listen_on(ready: asyncio.Event) -> None:
    failed = False
    while True:
        try:
            async with live.aclient().pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel())
                await live.beat(origin(), PROCESS_BEAT_TTL_SECONDS)
                if failed:  # Redis may have lost the counts, or missed some
                    await _recount()
                ready.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        try:
                            _dispatch(message["data"])
                        except Exception:
                            logger.exception("chat: unreadable event %r", str(message.get("data"))[:200])
        except asyncio.CancelledError:
            raise
        except Exception:
            failed = True
            ready.clear()
            logger.warning("chat: lost the event channel; listening again", exc_info=True)
            await asyncio.sleep(1)
