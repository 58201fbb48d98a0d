"""The generation's alarm (``generation.Alarm``) on the event loop the console serves with (uvloop)."""

from __future__ import annotations

import asyncio
import time

import uvloop

from appliance.chat.generation import Alarm


def test_an_alarm_set_for_a_moment_already_past_rings_and_can_be_moved_on_uvloop() -> None:
    """uvloop's ``call_at`` for a moment past gives a plain handle, without ``when()``: a batch already due when
    the pump waits again must not fail the answer (found by the benchmark: one answer in 64 chats failed)."""

    async def main() -> list[bool]:
        alarm, woken = Alarm(), []
        for _ in range(3):
            alarm.set(time.monotonic() - 0.01)  # due already
            read, _found = await alarm.wait(asyncio.sleep(1))
            woken.append(not read)
        alarm.set(time.monotonic() - 0.01)
        read, found = await alarm.wait(_at_once())  # read before the alarm's callback ran
        woken.append(read and found == "at once")
        alarm.set(time.monotonic() + 60)  # moved on: the callback due meanwhile must not ring
        alarm.set(time.monotonic() + 61)
        read, found = await alarm.wait(asyncio.sleep(0, "read"))
        alarm.cancel()
        return [*woken, read and found == "read"]

    assert uvloop.run(main()) == [True, True, True, True, True]


async def _at_once() -> str:
    return "at once"
