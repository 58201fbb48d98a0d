"""A streamed answer's body, and its one cleanup: close the engine's request, free the replica, settle.

The cleanup runs when the body ends, when the client leaves (Django cancels the task or closes the
generator), and also when Django drops the body without ever starting it -- a client that leaves
between the view's return and the first write. An async generator that never started never runs
its ``finally``; so the cleanup is also tied to the generator's collection, else the replica's
in-flight count and the quota reservation would leak.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator

from appliance.core import background
from appliance.deployments import lastuse
from appliance.engines import client
from appliance.engines.client import Opened
from appliance.engines.registry import Dialect, speaks
from appliance.gateway import relay, translate_ollama
from appliance.gateway.metering import Guard, UsageStatus
from appliance.gateway.protocol import Call
from appliance.gateway.screening import SseScreen


class StreamedAnswer:
    def __init__(self, call: Call, opened: Opened, guard: Guard, screen: SseScreen | None = None) -> None:
        self.call, self.opened, self.guard, self.screen = call, opened, guard, screen
        self.finished = False
        self.sse = relay.SseRelay(guard, call.include_usage, call.model, call.kind)

    def body(self) -> AsyncGenerator[bytes, None]:
        generator = self._body()
        weakref.finalize(generator, self._collected, asyncio.get_running_loop())
        return generator

    def _source(self) -> AsyncGenerator[bytes, None]:
        if speaks(self.opened.endpoint.engine, Dialect.OLLAMA):
            return translate_ollama.relay_ndjson(self.opened, self.call, self.guard)
        return relay.relay_sse(self.opened, self.sse)

    async def _body(self) -> AsyncGenerator[bytes, None]:
        source = self._source()
        status: str | None = None
        deployment_id = self.opened.endpoint.deployment_id
        try:
            async for chunk in source:
                lastuse.touch(deployment_id)  # a long stream keeps its on-demand deployment from idling
                if self.screen is None:
                    yield chunk
                    continue
                out = self._screened(chunk)
                if out:
                    yield out
                if self.screen.blocked:
                    return  # the finally below closes the engine's request
            if self.screen is not None:
                tail = self.screen.finish()  # empty when [DONE] came: what was held went out with it
                if tail:
                    yield tail  # an empty part would still cost the server a send
        except (asyncio.CancelledError, GeneratorExit):
            status = UsageStatus.CANCELLED
            raise
        except BaseException:
            status = UsageStatus.ERROR
            raise
        finally:
            await source.aclose()
            await self.finish(status)

    def _screened(self, chunk: bytes) -> bytes:
        """What of the relay's output may go out; the text fields the relay found are not looked for again."""
        assert self.screen is not None
        head = self.sse.passed  # the events of the last read passed on as they came
        if chunk is head:  # nearly every read
            return self.screen.read(chunk, self.sse.values)
        if head and len(chunk) > len(head) and chunk.startswith(head):  # the end of a stream after them
            return self.screen.read(head, self.sse.values) + self.screen.feed(chunk[len(head) :])
        return self.screen.feed(chunk)

    async def finish(self, status: str | None = None) -> None:
        """Idempotent: the first caller closes, releases and settles."""
        if self.finished:
            return
        self.finished = True
        try:
            # Closing a response before its end drops the connection: the engine sees the client go.
            await client.close(self.opened)
        finally:
            await self.guard.afinish(status)

    def _collected(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.finished or loop.is_closed():
            return
        background.start(self.finish(UsageStatus.CANCELLED), loop)
