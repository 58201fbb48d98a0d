"""The text of answers in progress, kept in Redis so any tab, in any web process, picks them up.

Per assistant message ``m``:

- ``chat:live:m`` hash: ``seq`` (the last batch written), ``reasoning_ms`` once thinking ended;
- ``chat:live:m:r`` / ``chat:live:m:c``: reasoning and answer so far (APPENDed batch by batch);
- ``chat:live:m:hb``: heartbeat of the generation, expiring soon after its process stops;
- ``chat:live:m:stop``: a stop request, read when the generation starts and at every write (see ``stops``).

Per user ``u``, ``<console>:chat:sockets:u`` hash: for each web process (``fanout.origin``) the number of the
user's sockets it holds. An answer's events are published to the other processes only while one of them
holds a socket of the user, which the scripts below decide in Redis.

Batches are appended and their ``seq`` set in one Lua script (atomic), so a snapshot (read in one MULTI)
and the deltas published after it never overlap nor leave a gap: the browser drops deltas whose ``seq`` is
not above the snapshot's. The generation creates the state when it starts (``start``) and then writes it at most every
``LIVE_WRITE_SECONDS``, all the batches since its last write in one (``generation``), or at every batch
while another process holds a socket of the user; a delta published carries every batch since the last
write, so a tab that read the snapshot at that write misses nothing.
"""

from __future__ import annotations

import weakref
from asyncio import AbstractEventLoop, get_running_loop
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from appliance.chat.choices import HEARTBEAT_TTL_SECONDS, LIVE_TTL_SECONDS, PROCESS_BEAT_TTL_SECONDS

# A user's counts outlive the last beat of the processes holding sockets by this much at most.
SOCKETS_TTL_SECONDS = PROCESS_BEAT_TTL_SECONDS

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
# KEYS: state hash, reasoning, content, stop flag, the user's sockets. ARGV: seq, reasoning, content, '1' to
# replace the texts, the texts' ttl, the channel ('' for none), the message, this process, the prefix of the
# processes' beats, then field/value pairs for the hash. Returns {a stop was requested, another process holds
# a socket of the user}.
# A process that died leaves its counts behind; they are dropped once its beat (``process_key``) lapsed, as is
# a count of none. (The beats' keys are not declared: one Redis, not a cluster.)
_OTHERS = """
local function others(sockets, origin, beats)
  local held = redis.call('HGETALL', sockets)
  local found = 0
  for i = 1, #held, 2 do
    if held[i] ~= origin then
      if tonumber(held[i + 1]) > 0 and redis.call('EXISTS', beats .. held[i]) == 1 then
        found = 1
      else
        redis.call('HDEL', sockets, held[i])
      end
    end
  end
  return found
end
local function publish_elsewhere(sockets, channel, message, origin, beats)
  if channel == '' or others(sockets, origin, beats) == 0 then return 0 end
  redis.call('PUBLISH', channel, message)
  return 1
end
"""
_APPEND = (
    _OTHERS
    + """
if ARGV[4] == '1' then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[5])
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[5])
else
  if ARGV[2] ~= '' then redis.call('APPEND', KEYS[2], ARGV[2]) end
  if ARGV[3] ~= '' then redis.call('APPEND', KEYS[3], ARGV[3]) end
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], unpack(ARGV, 10))
local elsewhere = publish_elsewhere(KEYS[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return {redis.call('EXISTS', KEYS[4]), elsewhere}
"""
)
# KEYS: the user's sockets. ARGV: channel, message, this process, the prefix of the processes' beats.
# Returns whether it was published.
_PUBLISH_ELSEWHERE = (
    _OTHERS
    + """
return publish_elsewhere(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""
)
_scripts: weakref.WeakKeyDictionary[aioredis.Redis, dict[str, Any]] = weakref.WeakKeyDictionary()


def _script(name: str, source: str) -> Any:
    redis_client = aclient()
    scripts = _scripts.setdefault(redis_client, {})
    if name not in scripts:
        scripts[name] = redis_client.register_script(source)
    return scripts[name]


@dataclass(frozen=True)
class Publication:
    """An event for the user's sockets in other processes (``fanout``): published only if there are some."""

    channel: str
    message: str
    sockets: str  # the user's sockets key (``sockets_key``)
    origin: str  # this process

    def args(self) -> list[str]:
        """The scripts' ARGV for it (``_OTHERS``): channel, message, this process, the prefix of the beats."""
        return [self.channel, self.message, self.origin, process_key("")]


_NO_PUBLICATION = ["", "", "", ""]


def _published(publish: Publication | None, stand_in: str) -> tuple[str, list[str]]:
    """The user's sockets key and the scripts' ARGV for ``publish``; without one, ``stand_in`` (a key of the
    script's own) takes the sockets' place in KEYS, where it is not read."""
    if publish is None:
        return stand_in, _NO_PUBLICATION
    return publish.sockets, publish.args()


def sockets_key(user_id: int) -> str:
    return f"{settings.CONSOLE_ID}:chat:sockets:{user_id}"


def process_key(origin: str) -> str:
    """A web process's beat: while it lives, its counts of sockets stand."""
    return f"{settings.CONSOLE_ID}:chat:process:{origin}"


# KEYS: the answer's keys, then the user's sockets. ARGV: the texts' ttl, the heartbeat's, then as
# _PUBLISH_ELSEWHERE's ('' for no event). Returns {a stop was requested, another process holds a socket of the user}.
_START = (
    _OTHERS
    + """
redis.call('HSET', KEYS[1], 'seq', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '', 'EX', ARGV[1])
redis.call('SET', KEYS[3], '', 'EX', ARGV[1])
redis.call('SET', KEYS[4], 1, 'EX', ARGV[2])
local elsewhere = publish_elsewhere(KEYS[6], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return {redis.call('EXISTS', KEYS[5]), elsewhere}
"""
)


async def start(message_id: int, publish: Publication | None = None) -> tuple[bool, bool]:
    """A generation's first step, in one round trip: its state (no text yet, seq 0) and first heartbeat, its
    first event to the user's sockets in other processes (``fanout``); returns whether a stop was requested
    before it listened and whether another process holds a socket of the user."""
    keys = list(_keys(message_id))
    sockets, published = _published(publish, keys[0])
    args = [LIVE_TTL_SECONDS, HEARTBEAT_TTL_SECONDS, *published]
    stopped, elsewhere = await _script("start", _START)(keys=[*keys, sockets], args=args)
    return bool(stopped), bool(elsewhere)


async def beat(origin: str, ttl: int) -> None:
    await aclient().set(process_key(origin), 1, ex=ttl)


async def append(
    message_id: int,
    seq: int,
    *,
    reasoning: str,
    content: str,
    replace: bool,
    extra: dict[str, int] | None = None,
    publish: Publication | None = None,
) -> tuple[bool, bool]:
    """Add text (or, with ``replace``, set the whole texts) up to batch ``seq``; returns whether a stop was
    requested and whether another process holds a socket of the user. ``publish``: the event sent in the
    same round trip to those processes (``fanout``)."""
    base, r, c, _hb, stop = _keys(message_id)
    sockets, published = _published(publish, base)
    args: list[Any] = [seq, reasoning, content, "1" if replace else "0", LIVE_TTL_SECONDS, *published]
    for name, value in (extra or {}).items():
        args += [name, value]
    stopped, elsewhere = await _script("append", _APPEND)(keys=[base, r, c, stop, sockets], args=args)
    return bool(stopped), bool(elsewhere)


async def publish_elsewhere(publication: Publication) -> bool:
    """Publish to the other processes if one of them holds a socket of the user; whether it was."""
    script = _script("publish", _PUBLISH_ELSEWHERE)
    return bool(await script(keys=[publication.sockets], args=publication.args()))


# KEYS: the user's sockets. ARGV: this process, the change, the hash's ttl.
_COUNT = """
local held = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if held <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return held
"""


async def count_sockets(user_id: int, origin: str, change: int) -> None:
    """This process holds ``change`` more (or fewer) sockets of the user."""
    await _script("count", _COUNT)(keys=[sockets_key(user_id)], args=[origin, change, SOCKETS_TTL_SECONDS])


async def set_sockets(counts: dict[int, int], origin: str, gone: set[int] | frozenset[int] = frozenset()) -> None:
    """This process holds ``counts`` sockets of each user, and none of the users ``gone`` (at each beat: a
    lost or late count is right again within a beat)."""
    pipe = aclient().pipeline(transaction=False)
    for user_id, count in counts.items():
        pipe.hset(sockets_key(user_id), origin, count).expire(sockets_key(user_id), SOCKETS_TTL_SECONDS)
    for user_id in gone:
        pipe.hdel(sockets_key(user_id), origin)
    await pipe.execute()


async def heartbeat(message_id: int) -> None:
    await aclient().set(_keys(message_id)[3], 1, ex=HEARTBEAT_TTL_SECONDS)


async def snapshot(message_id: int) -> LiveState | None:
    base, r, c, _hb, _stop = _keys(message_id)
    pipe = aclient().pipeline(transaction=True)
    pipe.hgetall(base).get(r).get(c)
    return _state(await pipe.execute())


# KEYS: the answer's keys, then the user's sockets. ARGV: as _PUBLISH_ELSEWHERE's ('' for no event).
_END = (
    _OTHERS
    + """
local sockets = table.remove(KEYS)
redis.call('DEL', unpack(KEYS))
publish_elsewhere(sockets, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 0
"""
)


async def end(message_id: int, publish: Publication | None = None) -> None:
    """Drop the answer's state, and send its last event to the other processes holding a socket of the user."""
    keys = list(_keys(message_id))
    sockets, args = _published(publish, keys[0])
    await _script("end", _END)(keys=[*keys, sockets], args=args)
