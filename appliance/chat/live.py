"""The text of answers in progress, kept in Redis so any tab, in any web process, picks them up.

Per assistant message ``m``:

- ``chat:live:m`` hash: ``seq`` (the last batch published), ``reasoning_ms`` once thinking ended;
- ``chat:live:m:r`` / ``chat:live:m:c``: reasoning and answer so far (APPENDed batch by batch);
- ``chat:live:m:hb``: heartbeat of the generation, expiring soon after its process stops;
- ``chat:live:m:stop``: a stop request, checked at every batch (see ``stops``).

A batch is appended and its ``seq`` set in one Lua script (atomic), so a snapshot (read in one MULTI)
and the deltas published after it never overlap nor leave a gap: the browser drops deltas whose ``seq`` is
not above the snapshot's.
"""

from __future__ import annotations

import weakref
from asyncio import AbstractEventLoop, get_running_loop
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from appliance.chat.choices import HEARTBEAT_TTL_SECONDS, LIVE_TTL_SECONDS

_async_clients: weakref.WeakKeyDictionary[AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None


def _keys(message_id: int) -> tuple[str, str, str, str, str]:
    base = f"chat:live:{message_id}"
    return base, f"{base}:r", f"{base}:c", f"{base}:hb", f"{base}:stop"


def stop_key(message_id: int) -> str:
    return _keys(message_id)[4]


def aclient() -> aioredis.Redis:
    """One client per event loop: a redis.asyncio connection pool cannot cross loops."""
    loop = get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.CHAT_REDIS_URL, decode_responses=True)
        _async_clients[loop] = client
    return client


def client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.CHAT_REDIS_URL, decode_responses=True)
    return _sync_client


@dataclass(frozen=True)
class LiveState:
    seq: int
    reasoning: str
    content: str
    reasoning_ms: int | None


def _state(raw: list[Any]) -> LiveState | None:
    fields, reasoning, content = raw
    if not fields:
        return None
    ms = fields.get("reasoning_ms")
    return LiveState(int(fields.get("seq", 0)), reasoning or "", content or "", int(ms) if ms else None)


# --- synchronous: services and the reaper ------------------------------------------------------


def begin(message_id: int) -> None:
    """Create the state of a new generation and its first heartbeat (before the task even starts)."""
    base, r, c, hb, _stop = _keys(message_id)
    pipe = client().pipeline(transaction=True)
    pipe.hset(base, mapping={"seq": 0})
    pipe.set(r, "", ex=LIVE_TTL_SECONDS)
    pipe.set(c, "", ex=LIVE_TTL_SECONDS)
    pipe.expire(base, LIVE_TTL_SECONDS)
    pipe.set(hb, 1, ex=HEARTBEAT_TTL_SECONDS)
    pipe.execute()


def alive(message_ids: list[int]) -> set[int]:
    """The messages whose generation still beats."""
    if not message_ids:
        return set()
    beats = client().mget([_keys(m)[3] for m in message_ids])
    return {m for m, beat in zip(message_ids, beats, strict=True) if beat}


def snapshot_sync(message_id: int) -> LiveState | None:
    base, r, c, _hb, _stop = _keys(message_id)
    pipe = client().pipeline(transaction=True)
    pipe.hgetall(base).get(r).get(c)
    return _state(pipe.execute())


def discard(message_id: int) -> None:
    client().delete(*_keys(message_id))


# --- asynchronous: the generation and the consumer ---------------------------------------------


# One batch in one script (atomic, as MULTI/EXEC was): a single command to send and a single reply to
# read. As a pipeline of MULTI, five commands and EXEC, the batch was a fifth of the event loop's time
# with 64 chats streaming (py-spy, issue 11), most of it redis-py packing and parsing.
# KEYS: state hash, reasoning, content, stop flag. ARGV: seq, reasoning, content, '1' to replace the texts,
# the texts' ttl, the channel ('' for none), the message, then field/value pairs for the hash.
_APPEND = """
if ARGV[4] == '1' then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[5])
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[5])
else
  if ARGV[2] ~= '' then redis.call('APPEND', KEYS[2], ARGV[2]) end
  if ARGV[3] ~= '' then redis.call('APPEND', KEYS[3], ARGV[3]) end
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], unpack(ARGV, 8))
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return redis.call('EXISTS', KEYS[4])
"""
_append_scripts: weakref.WeakKeyDictionary[aioredis.Redis, Any] = weakref.WeakKeyDictionary()


async def append(
    message_id: int,
    seq: int,
    *,
    reasoning: str,
    content: str,
    replace: bool,
    extra: dict[str, int] | None = None,
    publish: tuple[str, str] | None = None,
) -> bool:
    """Add one batch (or, with ``replace``, set the whole texts); returns whether a stop was requested.
    ``publish``: (channel, message) sent in the same round trip (the batch's event, ``fanout``)."""
    base, r, c, _hb, stop = _keys(message_id)
    redis_client = aclient()
    script = _append_scripts.get(redis_client)
    if script is None:
        script = _append_scripts[redis_client] = redis_client.register_script(_APPEND)
    channel, message = publish or ("", "")
    args: list[Any] = [seq, reasoning, content, "1" if replace else "0", LIVE_TTL_SECONDS, channel, message]
    for name, value in (extra or {}).items():
        args += [name, value]
    return bool(await script(keys=[base, r, c, stop], args=args))


async def heartbeat(message_id: int) -> None:
    await aclient().set(_keys(message_id)[3], 1, ex=HEARTBEAT_TTL_SECONDS)


async def snapshot(message_id: int) -> LiveState | None:
    base, r, c, _hb, _stop = _keys(message_id)
    pipe = aclient().pipeline(transaction=True)
    pipe.hgetall(base).get(r).get(c)
    return _state(await pipe.execute())


async def end(message_id: int) -> None:
    await aclient().delete(*_keys(message_id))
