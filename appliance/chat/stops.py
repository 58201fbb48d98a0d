"""Stop requests reach a generation in whichever web process runs it.

Two paths, so neither a quiet engine nor a lost message keeps an answer going: a Redis flag that
the generation reads whenever it writes its text there (``live.append``), and a message on one
pub/sub channel that a listener in each process hands to its own generations at once (an engine
still reading a long prompt sends no text). Channels' own ``receive`` is not used for this on
purpose: cancelling a receive that waits in Redis can drop a message meant for another socket of
the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from asyncio import AbstractEventLoop
from dataclasses import dataclass

from appliance.chat import live
from appliance.chat.choices import LIVE_TTL_SECONDS

logger = logging.getLogger(__name__)

STOP_CHANNEL = "chat:stop"
_waiters: dict[int, asyncio.Event] = {}
_listeners: weakref.WeakKeyDictionary[AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


async def request(message_id: int) -> None:
    client = live.aclient()
    await client.set(live.stop_key(message_id), 1, ex=LIVE_TTL_SECONDS)
    await client.publish(STOP_CHANNEL, str(message_id))


def request_sync(message_ids: list[int]) -> None:
    client = live.client()
    for message_id in message_ids:
        client.set(live.stop_key(message_id), 1, ex=LIVE_TTL_SECONDS)
        client.publish(STOP_CHANNEL, str(message_id))


@dataclass
class Waiter:
    message_id: int
    event: asyncio.Event


def listen(message_id: int) -> Waiter:
    """Listen for a stop of this generation from now on."""
    _ensure_listener()
    waiter = Waiter(message_id, asyncio.Event())
    _waiters[message_id] = waiter.event
    return waiter


async def wait(waiter: Waiter) -> None:
    """Return when a stop of the generation is requested."""
    try:
        with contextlib.suppress(Exception):  # Redis unreachable: the event below works once it is back
            if await live.aclient().exists(live.stop_key(waiter.message_id)):
                return  # asked for before this process listened for it (a deleted conversation, a quick click)
        await waiter.event.wait()
    finally:
        forget(waiter)


def forget(waiter: Waiter) -> None:
    """The generation ended (or never ran): stop listening for it."""
    if _waiters.get(waiter.message_id) is waiter.event:
        del _waiters[waiter.message_id]


def _ensure_listener() -> None:
    loop = asyncio.get_running_loop()
    task = _listeners.get(loop)
    if task is None or task.done():
        _listeners[loop] = loop.create_task(_listen(), name="chat-stop-listener")


async def _listen() -> None:
    while True:
        try:
            async with live.aclient().pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(STOP_CHANNEL)
                async for message in pubsub.listen():
                    event = _waiters.get(int(message["data"])) if message.get("type") == "message" else None
                    if event is not None:
                        event.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Until it is back, stops still arrive through the flag at the next write of the text.
            logger.warning("chat: stop listener lost Redis; retrying", exc_info=True)
            await asyncio.sleep(1)
