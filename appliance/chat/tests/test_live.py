"""The live state of an answer in Redis: a batch appended, its seq and fields set, its event published
to the other processes holding a socket of the user, and a stop reported, in one atomic step (``live.append``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appliance.chat import live


def _listener(channel: str) -> Any:
    listener = live.client().pubsub()
    listener.subscribe(channel)
    assert listener.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]
    return listener


@pytest.mark.asyncio
async def test_a_batch_is_appended_published_and_reports_a_stop() -> None:
    await live.start(7)
    live.client().delete(live.sockets_key(70))
    listener = _listener("live-test")
    here, there = "here.1", "there.2"

    def publication(message: str) -> live.Publication:
        return live.Publication("live-test", message, live.sockets_key(70), here)

    assert await live.append(7, 1, reasoning="", content="Hel", replace=False) == (False, False)
    await live.count_sockets(70, here, 1)  # this process's own socket: nobody else to publish to
    assert await live.append(7, 2, reasoning="", content="l", replace=False, publish=publication("m2")) == (
        False,
        False,
    )
    await live.count_sockets(70, there, 1)
    await live.beat(there, 60)
    done = await live.append(
        7, 3, reasoning="想一想", content="o", replace=False, extra={"reasoning_ms": 12}, publish=publication("m3")
    )
    assert done == (False, True)
    assert await live.snapshot(7) == live.LiveState(3, "想一想", "Hello", 12)
    assert listener.get_message(timeout=1)["data"] == "m3"  # m2 was never published

    assert await live.append(7, 4, reasoning="", content="重写", replace=True) == (False, False)  # whole texts
    assert await live.snapshot(7) == live.LiveState(4, "", "重写", 12)

    live.client().set(live.stop_key(7), 1)
    assert (await live.append(7, 5, reasoning="", content="!", replace=False))[0] is True
    listener.close()


@pytest.mark.asyncio
async def test_an_event_goes_only_to_live_processes_holding_a_socket_of_the_user() -> None:
    sockets = live.sockets_key(71)
    live.client().delete(sockets)
    listener = _listener("live-test-2")
    here, dead, other = "here.1", "dead.2", "other.3"

    async def publish(message: str) -> bool:
        return await live.publish_elsewhere(live.Publication("live-test-2", message, sockets, here))

    await live.count_sockets(71, here, 2)
    await live.count_sockets(71, dead, 1)  # a process that died without uncounting: no beat
    live.client().delete(live.process_key(dead))
    assert await publish("nobody") is False
    assert live.client().hkeys(sockets) == [here]  # the dead process's count is dropped
    await live.count_sockets(71, other, 1)
    await live.beat(other, 60)
    assert await publish("other") is True
    await live.count_sockets(71, other, -1)  # its tab closed: its count of none is dropped
    assert await publish("closed") is False
    assert live.client().hkeys(sockets) == [here]
    await live.set_sockets({}, here, {71})  # a beat of a process that holds none of the user's sockets now
    assert live.client().exists(sockets) == 0
    await live.count_sockets(71, other, 1)
    assert 0 < live.client().ttl(sockets) <= live.SOCKETS_TTL_SECONDS  # counts lapse without their beats
    assert listener.get_message(timeout=1)["data"] == "other"
    assert listener.get_message(timeout=0.2) is None
    listener.close()


class _Socket:
    def deliver(self, event: dict[str, Any]) -> None:
        pass


@pytest.mark.asyncio
async def test_a_count_on_its_way_while_the_process_beats_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The beat's whole count and a socket's own count in flight at once: the socket counts once, not twice
    (found by the benchmark: with the counts doubled, every batch of those users' answers was published)."""
    from appliance.chat import fanout

    user, sockets = 73, live.sockets_key(73)
    live.client().delete(sockets)
    count = live.count_sockets

    async def beat_meanwhile(user_id: int, origin: str, change: int) -> None:
        await fanout._recount()  # the process's beat lands while this socket's count is on its way
        await count(user_id, origin, change)

    monkeypatch.setattr(live, "count_sockets", beat_meanwhile)
    first, second = _Socket(), _Socket()
    try:
        await fanout.attach(user, first)
        await fanout.attach(user, second)
        assert live.client().hget(sockets, fanout.origin()) == "2"
        fanout.detach(user, first)
        await asyncio.gather(*fanout._uncounting)
        assert live.client().hget(sockets, fanout.origin()) == "1"
        fanout.detach(user, second)
        await asyncio.gather(*fanout._uncounting)
        assert live.client().exists(sockets) == 0
    finally:
        for socket in (first, second):
            fanout.detach(user, socket)
        await asyncio.gather(*fanout._uncounting)
        for task in fanout._listeners.values():
            task.cancel()


@pytest.mark.asyncio
async def test_an_answers_start_is_its_state_its_first_beat_its_event_elsewhere_and_the_stop_flag() -> None:
    sockets = live.sockets_key(74)
    live.client().delete(sockets, live.stop_key(8))
    listener = _listener("live-test-3")
    here, there = "here.1", "there.2"
    started = live.Publication("live-test-3", "started", sockets, here)

    assert await live.start(8, started) == (False, False)  # nobody elsewhere: not published
    assert await live.snapshot(8) == live.LiveState(0, "", "", None)
    assert live.alive([8]) == {8}
    await live.count_sockets(74, there, 1)
    await live.beat(there, 60)
    live.client().set(live.stop_key(8), 1)
    assert await live.start(8, started) == (True, True)
    assert listener.get_message(timeout=1)["data"] == "started"
    assert listener.get_message(timeout=0.2) is None
    listener.close()
