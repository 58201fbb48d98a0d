"""Generating one answer: an asyncio task in the web process, apart from any socket.

Why a task in the web process rather than Celery: the stream goes engine → console → browser with
one hop and no broker between tokens, and a web worker process holds thousands of idle streams
cheaply. The task is keyed by its assistant message id and kept in ``_running``; it does not
belong to the socket that asked for it, so closing the tab changes nothing. Its progress lives
in Redis (``live``), so any socket of the user in any process picks it up. If the process dies,
the heartbeat lapses and ``services.recover_orphans`` keeps the text and marks it interrupted.

Deltas reach the user's sockets in batches (20 pieces or 50 ms, whichever first, at the read that makes it
due or 25 ms after it is while the engine is quiet; an answer's first piece at once, since the time to the
first token is what a user waits on): straight to the sockets of this
process. Redis gets the answer's state when it starts (no text yet; ``live.start``) and then the text every
``LIVE_WRITE_SECONDS``, all the batches since in one write that also publishes them as one delta to the
user's sockets in other processes, if there are any (``live``, ``fanout``); at every batch while there are.
Each delta names the seq it follows (``after``), so a tab that missed one re-reads the answer. The database
is written at the start, every few seconds and at the end, never per token, on the database threads
(``appliance.core.dbthreads``).

A stop request reaches the generation's process by Redis pub/sub, or as a Redis flag read when the
generation starts and at each write to Redis (``stops``); either way the stream task is cancelled,
which closes the HTTP connection so the engine stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction

from appliance.accounts.models import User
from appliance.chat import answers, fanout, live, metering, screening, stops, upstream
from appliance.chat.api.serializers import message_data
from appliance.chat.choices import (
    BATCH_MAX_DELAY_SECONDS,
    BATCH_MAX_PIECES,
    BATCH_QUIET_SECONDS,
    DB_FLUSH_SECONDS,
    HEARTBEAT_SECONDS,
    LIVE_WRITE_SECONDS,
    ErrorCode,
    Status,
)
from appliance.chat.models import Message
from appliance.chat.planning import Job
from appliance.chat.reasoning import Change, ThinkSplitter
from appliance.chat.screening import AnswerScreen, ContentBlocked
from appliance.core.dbthreads import db
from appliance.core.exceptions import ServiceError
from appliance.deployments import lastuse, ondemand, routing
from appliance.safety import recording
from appliance.safety.choices import Stage
from appliance.safety.matcher import Hit

logger = logging.getLogger(__name__)
T = TypeVar("T")

_running: dict[int, Generation] = {}
# While an on-demand model starts, its state is read and the elapsed time sent to the tabs this often.
STARTING_POLL_SECONDS = 1.0
# A database that refuses a connection for a moment must not turn a finished answer into an orphan.
STORE_RETRY_PAUSES = (0.5, 1.0, 2.0, 4.0, 0.0)


def start(job: Job, answer: Message | None = None, announce: live.Publication | None = None) -> asyncio.Task[None]:
    """Generate ``job``'s answer; ``answer``: its row as just created (stored at the end without reading it back);
    ``announce``: its "started" event for the user's sockets in other processes, sent before any delta."""
    generation = Generation(job, answer, announce)
    task = asyncio.create_task(generation.run(), name=f"chat-generation-{job.message_id}")
    generation.task = task
    _running[job.message_id] = generation
    task.add_done_callback(lambda _t: _running.pop(job.message_id, None))
    return task


def running(message_id: int) -> asyncio.Task[None] | None:
    generation = _running.get(message_id)
    return generation.task if generation is not None else None


def shown(message_id: int) -> live.LiveState | None:
    """The text a generation of this process has sent to the sockets, and its seq; None if it runs elsewhere.
    Redis has it only as of the last write (``LIVE_WRITE_SECONDS``), the sockets of this process up to now."""
    generation = _running.get(message_id)
    return generation.shown if generation is not None else None


class StopRequested(Exception):
    pass


class Batcher:
    """Collects changes until the batch is big or old enough to send; the answer's first goes at once."""

    def __init__(self) -> None:
        self.pending = Change()
        self.pieces = 0
        self.since: float | None = None
        self.first = True

    def add(self, change: Change) -> None:
        if not change:
            return
        self.pending.reasoning += change.reasoning
        self.pending.content += change.content
        self.pending.replaced = self.pending.replaced or change.replaced
        self.pieces += 1
        if self.since is None:
            self.since = time.monotonic()

    def due_at(self) -> float | None:
        """When the batch is due (``time.monotonic``); None when empty (wait for the next chunk as long as it takes)."""
        return None if self.since is None else self.since + BATCH_MAX_DELAY_SECONDS

    def due(self) -> bool:
        due_at = self.due_at()
        if due_at is None:
            return False
        return self.first or self.pieces >= BATCH_MAX_PIECES or time.monotonic() >= due_at

    def take(self) -> Change | None:
        if self.since is None:
            return None
        batch, self.pending, self.pieces, self.since = self.pending, Change(), 0, None
        self.first = False
        return batch


class Alarm:
    """Wakes the task that made it from a wait at a deadline, by cancelling the wait, which must lose nothing
    when cancelled (``upstream.Stream.read``). One timer stands while the deadline does, where
    ``asyncio.timeout`` around every read of the engine made and dropped a timer and a context per token:
    a tenth of the event loop's time with 64 chats streaming (py-spy, docs/performance.md)."""

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        # uvloop gives a plain handle, without when(), for a moment already past: the moment is kept here.
        self._handle: asyncio.Handle | None = None
        self._when: float | None = None
        self._waiting = False
        self._rang = False

    def set(self, when: float | None) -> None:
        """Ring at ``when`` (``time.monotonic``, the event loop's clock), or never."""
        if self._handle is not None and self._when != when:
            self._handle.cancel()
            self._handle = None
        if when is not None and self._handle is None:
            self._handle, self._when = asyncio.get_running_loop().call_at(when, self._ring), when

    def cancel(self) -> None:
        self.set(None)

    def _ring(self) -> None:
        self._handle = None
        if self._waiting:
            self._rang = True
            self._task.cancel()

    async def wait(self, awaitable: Awaitable[T]) -> tuple[bool, T | None]:
        """``(True, its result)``, or ``(False, None)`` when the alarm rang first."""
        self._waiting = True
        try:
            return True, await awaitable
        except asyncio.CancelledError:
            # The task's own cancellation (a stop, a shutdown) goes on; only the alarm's is taken here.
            if not self._rang or self._task.uncancel() > 0:
                raise
            return False, None
        finally:
            self._waiting = self._rang = False


@dataclass
class Progress:
    status: str = Status.STREAMING
    error_code: str = ""
    error_detail: str = ""
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    pieces: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    reasoning_ms: int | None = None

    def fail(self, code: str, detail: str = "") -> None:
        self.status, self.error_code, self.error_detail = Status.FAILED, code, detail[:500]


class Generation:
    task: asyncio.Task[None] | None = None

    def __init__(self, job: Job, answer: Message | None = None, announce: live.Publication | None = None) -> None:
        self.job = job
        self.answer = answer
        self.announce = announce
        self.shown = live.LiveState(0, "", "", None)
        self.unwritten = Change()  # the batches sent since the last write to Redis
        self.written_at = 0.0  # when Redis got the state (live.start) or the text last; set before the stream
        self.written_seq = 0  # the seq Redis holds the text of
        self.elsewhere = False  # another process holds a socket of the user: write every batch
        self.splitter = ThinkSplitter(assume_reasoning=job.assume_reasoning)
        self.batch = Batcher()
        self.progress = Progress()
        self.seq = 0
        self.saved_at = time.monotonic()
        self._text_ended = False
        self.screen = AnswerScreen(job.safety) if job.safety is not None else None

    async def run(self) -> None:
        stop = stops.listen(self.job.message_id)
        tasks: list[asyncio.Task[Any]] = []
        try:
            if not await self._begin(stop):
                return
            tasks.append(asyncio.create_task(self._heartbeat()))
            tasks.append(watcher := asyncio.create_task(stop.wait()))
            tasks.append(stream := asyncio.create_task(self._stream()))
            await asyncio.wait({stream, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not stream.done():
                self.progress.status = Status.STOPPED
                stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
        finally:
            stops.forget(self.job.message_id)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # the stream settles its quota before the end
            await self._finish()

    async def _begin(self, stop: asyncio.Event) -> bool:
        """The answer's live state and heartbeat, "started" to the other processes, whether a stop was
        requested before this generation listened (``stop`` is set then), and whether another process holds a
        socket of the user: one round trip to Redis. The state holds the text as of now (none), so the first
        batch is written with the next (``LIVE_WRITE_SECONDS``) unless a tab elsewhere waits for it.

        Without Redis no other tab, no reaper and no stop by flag could follow the answer: it fails here, before
        the quota and the engine are asked (False), as the send did when the state was made in its transaction."""
        try:
            stopped, self.elsewhere = await live.start(self.job.message_id, self.announce)
        except Exception:
            logger.warning("chat: the live state of %s could not be started", self.job.message_id, exc_info=True)
            self.progress.fail(ErrorCode.INTERNAL, "the live state of answers (Redis) is unavailable")
            return False
        self.written_at = time.monotonic()
        if stopped:
            stop.set()  # requested before this generation listened
        return True

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)  # the first beat was set with the state (live.start)
            try:
                await live.heartbeat(self.job.message_id)
            except Exception:
                logger.warning("chat: heartbeat of %s failed", self.job.message_id, exc_info=True)

    async def _stream(self) -> None:
        try:
            async with metering.admitted(self.job.admission()) as guard:
                try:
                    upstreams = await self._start_model() if self.job.starting else self.job.upstreams
                    lastuse.touch(*self.job.deployment_ids)
                    async with upstream.open_stream(upstreams, self.job.payload, self.job.request_id) as stream:
                        await self._pump(stream, guard)
                finally:
                    guard.set_usage(*self._usage())
                    if self.progress.status == Status.STOPPED:
                        guard.cancel()
        except StopRequested:
            self.progress.status = Status.STOPPED
        except ContentBlocked:
            self.progress.fail(ErrorCode.CONTENT_BLOCKED)
        except metering.QuotaRefused as exc:
            self.progress.fail(exc.code, exc.message)
        except upstream.UpstreamError as exc:
            self.progress.fail(exc.code, exc.detail)
        except Exception as exc:
            logger.exception("chat: generation %s failed", self.job.message_id)
            self.progress.fail(ErrorCode.INTERNAL, type(exc).__name__)

    async def _pump(self, stream: upstream.Stream, guard: Any) -> None:
        alarm = Alarm()
        try:
            while True:
                alarm.set(self._quiet_until())
                read, found = await alarm.wait(stream.read())
                if not read:  # the engine was quiet while a batch was due
                    await self._flush()
                    if self.unwritten and time.monotonic() - self.written_at >= LIVE_WRITE_SECONDS:
                        await self._write_live()
                    continue
                if found is None:
                    break
                for chunk in found:
                    self._apply(chunk, guard)
                    if self.batch.due():
                        await self._flush()
                lastuse.touch(*self.job.deployment_ids)  # a long answer keeps an on-demand model from idling
                await guard.atouch()
        finally:
            alarm.cancel()
        if self.screen is not None:  # the text held back to find words split over chunks
            self.batch.add(self.splitter.feed_reasoning(self.screen.finish(reasoning=True)))
            self.batch.add(self.splitter.feed(self.screen.finish()))
        self._end_text(natural=self.progress.finish_reason == "stop")
        await self._flush()
        self.progress.status = Status.COMPLETE

    def _quiet_until(self) -> float | None:
        """When to stop waiting for the engine: a batch due (sent at the first read after it is, or
        ``BATCH_QUIET_SECONDS`` later if the engine is quiet: while it streams, a batch costs no timer's
        wake-up), or text Redis lacks while the engine pauses (written within ``LIVE_WRITE_SECONDS``)."""
        due = self.batch.due_at()
        if due is not None:
            return due + BATCH_QUIET_SECONDS
        if self.unwritten:
            return self.written_at + LIVE_WRITE_SECONDS
        return None

    async def _start_model(self) -> tuple[routing.Endpoint, ...]:
        """An on-demand model that is not running: start it, and tell the user's tabs how long it is taking."""
        job, began = self.job, time.monotonic()
        try:
            await db(ondemand.wake_for_request)(job.user_id, job.deployment_ids, job.model)
        except ServiceError as exc:
            raise upstream.UpstreamError(ErrorCode.MODEL_NOT_STARTED, exc.message) from exc
        while True:
            state = await db(ondemand.progress)(list(job.deployment_ids))
            if state.ready:
                urls = await db(_upstreams)(job.user_id, job.model)
                if urls:
                    return urls
            elif state.failed:
                raise upstream.UpstreamError(ErrorCode.MODEL_NOT_STARTED, state.detail)
            elapsed = time.monotonic() - began
            if elapsed >= settings.APPLIANCE_ON_DEMAND_WAIT_SECONDS:
                raise upstream.UpstreamError(ErrorCode.MODEL_NOT_STARTED, f"not running after {elapsed:.0f} s")
            event = {
                "type": "chat.status", "conversation_id": job.conversation_id, "message_id": job.message_id,
                "status": "starting", "elapsed": int(elapsed),
            }  # fmt: skip
            await fanout.publish(job.user_id, event)
            await asyncio.sleep(STARTING_POLL_SECONDS)

    def _apply(self, chunk: upstream.Chunk, guard: Any) -> None:
        now = time.monotonic()
        if chunk.reasoning or chunk.content:
            self.progress.pieces += 1
            if self.progress.first_token_at is None:
                self.progress.first_token_at = now
                guard.first_token()
        if chunk.reasoning:
            self.batch.add(self.splitter.feed_reasoning(self._screened(chunk.reasoning, reasoning=True)))
        if chunk.content:
            self.batch.add(self.splitter.feed(self._screened(chunk.content)))
        if self.progress.reasoning_ms is None and self.splitter.reasoning and self.splitter.content:
            self.progress.reasoning_ms = int((now - (self.progress.first_token_at or now)) * 1000)
        self.progress.finish_reason = chunk.finish_reason or self.progress.finish_reason
        self.progress.usage = chunk.usage or self.progress.usage

    def _screened(self, text: str, *, reasoning: bool = False) -> str:
        """The piece as it may be shown (content-safety rules); at a blocking word, the text before it is kept."""
        if self.screen is None:
            return text
        try:
            return self.screen.feed(text, reasoning=reasoning)
        except ContentBlocked as blocked:
            shown = str(blocked)
            if shown:
                self.batch.add(self.splitter.feed_reasoning(shown) if reasoning else self.splitter.feed(shown))
            raise

    def _end_text(self, *, natural: bool) -> None:
        if not self._text_ended:
            self._text_ended = True
            self.batch.add(self.splitter.finish(natural_end=natural))

    async def _flush(self) -> None:
        change = self.batch.take()
        if change is None:
            return
        self.seq += 1
        if change.replaced:
            change = Change(self.splitter.reasoning, self.splitter.content, replaced=True)
        job = self.job
        fanout.deliver_here(job.user_id, self._delta(self.seq - 1, change))
        splitter = self.splitter
        self.shown = live.LiveState(self.seq, splitter.reasoning, splitter.content, self.progress.reasoning_ms)
        if not self.unwritten or change.replaced:  # this batch is all there is to write
            self.unwritten = change
        else:
            self.unwritten = Change(
                self.unwritten.reasoning + change.reasoning, self.unwritten.content + change.content,
                replaced=self.unwritten.replaced,
            )  # fmt: skip
        now = time.monotonic()
        save = now - self.saved_at >= DB_FLUSH_SECONDS
        # Redis before the database: the reaper keeps Redis's text, which must not be the shorter one.
        if save or self.elsewhere or now - self.written_at >= LIVE_WRITE_SECONDS:
            await self._write_live()
        if save:
            self.saved_at = now
            await db(answers.save_progress)(job.message_id, splitter.reasoning, splitter.content)

    def _delta(self, after: int, change: Change) -> dict[str, Any]:
        """The event of the batches after ``after`` up to the last one (``seq``): one batch, or since the last write."""
        job = self.job
        return {
            "type": "chat.delta", "conversation_id": job.conversation_id, "message_id": job.message_id,
            "seq": self.seq, "after": after, "reasoning": change.reasoning, "content": change.content,
            "replace": change.replaced,
        }  # fmt: skip

    async def _write_live(self) -> None:
        """The batches since the last write, in Redis and as one delta to the user's sockets in other
        processes: a tab that read the state at the last write gets all that followed."""
        job, written, self.unwritten = self.job, self.unwritten, Change()
        self.written_at = time.monotonic()
        event = self._delta(self.written_seq, written)
        self.written_seq = self.seq
        extra = {"reasoning_ms": self.progress.reasoning_ms} if self.progress.reasoning_ms is not None else None
        stop, self.elsewhere = await live.append(
            job.message_id, self.seq, reasoning=written.reasoning, content=written.content,
            replace=written.replaced, extra=extra, publish=fanout.publication(job.user_id, event),
        )  # fmt: skip
        if stop:
            self.progress.status = Status.STOPPED
            raise StopRequested

    def _usage(self) -> tuple[int, int]:
        if self.progress.usage is not None:
            return self.progress.usage
        return self.job.prompt_tokens, self.progress.pieces

    def _final(self) -> answers.Final:
        p = self.progress
        now = time.monotonic()
        if p.reasoning_ms is None and self.splitter.reasoning and p.first_token_at is not None:
            p.reasoning_ms = int((now - p.first_token_at) * 1000)
        if p.status == Status.STREAMING:  # the task itself was cancelled: the process is shutting down
            p.status, p.error_code = Status.INTERRUPTED, ErrorCode.INTERRUPTED
        prompt, completion = self._usage()
        return answers.Final(
            status=p.status,
            reasoning=self.splitter.reasoning,
            content=self.splitter.content,
            error_code=p.error_code,
            error_detail=p.error_detail,
            prompt_tokens=prompt,
            completion_tokens=completion,
            usage_estimated=p.usage is None,
            ttft_ms=int((p.first_token_at - p.started) * 1000) if p.first_token_at is not None else None,
            reasoning_ms=p.reasoning_ms if self.splitter.reasoning else None,
            duration_ms=int((now - p.started) * 1000),
        )

    async def _finish(self) -> None:
        """Write the answer, tell every tab, drop the Redis state: in that order, so nothing is lost."""
        job = self.job
        self._end_text(natural=False)
        self.batch.take()  # the final message below carries the whole text
        await self._record_hits()
        final = self._final()
        logger.info("chat: answer %s from %s ended %s", job.message_id, job.model, self.progress.status)
        for attempt, pause in enumerate(STORE_RETRY_PAUSES):
            try:
                message = await db(_store)(job.message_id, final, self.answer)
                break
            except Exception:
                if attempt == len(STORE_RETRY_PAUSES) - 1:
                    # The text stays in Redis and its heartbeat lapses: the reaper stores it.
                    logger.exception("chat: could not store answer %s", job.message_id)
                    await self._keep_for_the_reaper()
                    return
                logger.warning("chat: storing answer %s failed; retrying", job.message_id, exc_info=True)
                await asyncio.sleep(pause)
        done = None
        if message is not None:
            quota = await _remaining(job.user_id)
            event = {"type": "chat.done", "conversation_id": job.conversation_id, "message": message, "quota": quota}
            fanout.deliver_here(job.user_id, event)
            done = fanout.publication(job.user_id, event)
        try:
            await live.end(job.message_id, done)  # and "done" to the other processes, in the same trip
        except Exception:  # the state expires; the other tabs show the answer when they resubscribe
            logger.warning("chat: could not end the live state of %s", job.message_id, exc_info=True)

    async def _keep_for_the_reaper(self) -> None:
        """The whole text in Redis: it was written there only every LIVE_WRITE_SECONDS."""
        try:
            await live.append(
                self.job.message_id, self.seq + 1, reasoning=self.splitter.reasoning, content=self.splitter.content,
                replace=True,
            )  # fmt: skip
        except Exception:
            logger.exception("chat: answer %s lost its last %.1f s", self.job.message_id, LIVE_WRITE_SECONDS)

    async def _record_hits(self) -> None:
        if self.screen is None or not self.screen.hits:
            return
        job = self.job
        where = screening.context(job.user_id, job.department_id, job.model, job.request_id)
        try:
            await db(_record)(where, self.screen.hits)
        except Exception:
            logger.exception("chat: content-safety hits of %s not recorded", job.message_id)


@transaction.atomic
def _record(where: recording.Context, hits: list[Hit]) -> None:
    recording.record_hits(where, Stage.ANSWER, hits)


def _upstreams(user_id: int, model: str) -> tuple[routing.Endpoint, ...]:
    """The replicas of ``model`` the user may use now (routing's rule, re-read once the model runs)."""
    user = User.objects.select_related("department").get(pk=user_id)
    return tuple(routing.endpoints(user, model))


def _store(message_id: int, final: answers.Final, started: Message | None) -> dict[str, Any] | None:
    message = answers.finish_message(message_id, final, started)
    return message_data(message) if message is not None else None


async def _remaining(user_id: int) -> dict[str, Any]:
    try:
        return await metering.aremaining(user_id)
    except Exception:
        logger.exception("chat: remaining quota unavailable")
        return {"available": False}
