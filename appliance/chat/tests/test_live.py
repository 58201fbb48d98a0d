"""The live state of an answer in Redis: a batch appended, its seq and fields set, its event published
and a stop reported in one atomic step (``live.append``)."""

from __future__ import annotations

import pytest

from appliance.chat import live


@pytest.mark.asyncio
async def test_a_batch_is_appended_published_and_reports_a_stop() -> None:
    live.begin(7)
    listener = live.client().pubsub()
    listener.subscribe("live-test")
    assert listener.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]

    assert await live.append(7, 1, reasoning="", content="Hel", replace=False) is False
    stopped = await live.append(
        7, 2, reasoning="想一想", content="lo", replace=False, extra={"reasoning_ms": 12}, publish=("live-test", "m2")
    )
    assert stopped is False
    assert await live.snapshot(7) == live.LiveState(2, "想一想", "Hello", 12)
    assert listener.get_message(timeout=1)["data"] == "m2"  # type: ignore[index]

    assert await live.append(7, 3, reasoning="", content="重写", replace=True) is False  # the whole texts, set
    assert await live.snapshot(7) == live.LiveState(3, "", "重写", 12)

    live.client().set(live.stop_key(7), 1)
    assert await live.append(7, 4, reasoning="", content="!", replace=False) is True
    listener.close()
