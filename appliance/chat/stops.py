"""Stop requests reach a generation in whichever web process runs it.

Two paths, so neither a quiet engine nor a lost message keeps an answer going: a Redis flag that
the generation reads when it starts (``live.start``) and whenever it writes its text there (``live.append``), and a
message on one pub/sub channel that a listener in each process hands to its own generations at once
(an engine still reading a long prompt sends no text). Channels' own ``receive`` is not used for this on
purpose: cancelling a receive that waits in Redis can drop a message meant for another socket of
the same process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from asyncio import AbstractEventLoop

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


def listen(message_id: int) -> asyncio.Event:
    """Set when a stop of this generation is published from now on; a stop requested before is in the flag,
    which the generation reads in its first step (``live.start``). ``forget`` it when the generation ends."""
    _ensure_listener()
    event = _waiters[message_id] = asyncio.Event()
    return event


def forget(message_id: int) -> None:
    _waiters.pop(message_id, None)


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
