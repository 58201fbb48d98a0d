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


def test_a_cancellation_of_the_task_with_the_alarm_ringing_goes_on_and_the_alarms_own_leaves_none_behind() -> None:
    """A stop or a shutdown cancels the generation's task: that cancellation is not taken for the alarm's, even
    when both come in the same turn of the loop; the alarm's own leaves the task with no cancellation pending."""

    async def main() -> list[object]:
        results: list[object] = []
        when = time.monotonic() + 0.2

        async def generation() -> None:
            alarm = Alarm()
            alarm.set(time.monotonic() - 0.01)
            read, _found = await alarm.wait(asyncio.sleep(1))  # the alarm alone
            task = asyncio.current_task()
            assert task is not None
            results.append((read, task.cancelling()))
            alarm.set(when)  # the task is cancelled from outside at the same moment
            await alarm.wait(asyncio.sleep(1))
            results.append("not reached")

        task = asyncio.create_task(generation())
        asyncio.get_running_loop().call_at(when, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            results.append("cancelled")
        return results

    assert uvloop.run(main()) == [(False, 0), "cancelled"]
