"""Split a streamed answer into reasoning and answer text.

Engines hand reasoning over in one of three ways:

- as ``reasoning_content`` (or ``reasoning``) deltas, when vLLM runs with ``--reasoning-parser``
  or llama-server with ``--reasoning-format``; the content is then the answer alone;
- inside ``<think>…</think>`` at the start of the content;
- with the opening tag missing, as DeepSeek-R1 often does when its chat template already put
  ``<think>`` in the prompt: the text before a lone ``</think>`` is reasoning.

For a model the catalog marks as reasoning, text is taken as reasoning until ``</think>``; if the
answer ends normally without one, the model did not think and it all becomes the answer. For
other models text is the answer, but a lone ``</think>`` turns what came before into reasoning.
Tags split across chunks are held back until they can be recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

OPEN, CLOSE = "<think>", "</think>"


class Mode(Enum):
    START = "start"  # nothing but whitespace seen yet
    THINK = "think"  # inside reasoning, tagged or assumed
    WATCH = "watch"  # answer text, but a lone </think> would make it reasoning
    ANSWER = "answer"  # answer text, no more parsing


@dataclass
class Change:
    """What a chunk added. ``replaced``: the totals changed otherwise than by appending; re-read them."""

    reasoning: str = ""
    content: str = ""
    replaced: bool = False

    def __bool__(self) -> bool:
        return bool(self.reasoning or self.content or self.replaced)


def _partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that begins ``tag`` (so it may be completed by the next chunk)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    def __init__(self, *, assume_reasoning: bool) -> None:
        self.assume_reasoning = assume_reasoning
        self.reasoning = ""
        self.content = ""
        self.mode = Mode.START
        self._buffer = ""
        self._strip_next = False  # drop the whitespace that follows a tag
        self._tagged = False  # reasoning opened with <think>

    def feed_reasoning(self, text: str) -> Change:
        """A ``reasoning_content`` delta: the engine separates reasoning, so content is all answer."""
        if self.mode in (Mode.START, Mode.WATCH):
            self.mode = Mode.ANSWER
        self.reasoning += text
        return Change(reasoning=text)

    def feed(self, text: str) -> Change:
        self._buffer += text
        change = Change()
        while self._buffer:
            before = (self.mode, len(self._buffer))
            self._step(change)
            if (self.mode, len(self._buffer)) == before:
                break  # waiting for more text to recognise a tag
        return change

    def finish(self, *, natural_end: bool) -> Change:
        """The stream ended; ``natural_end`` when the engine said it finished (not cut by length, stop or error)."""
        change = Change()
        rest, self._buffer = self._buffer, ""
        if self.mode is Mode.THINK and not self._tagged and natural_end:
            # A reasoning model that never closed its thinking simply answered without thinking.
            self.content, self.reasoning = self.reasoning + rest, ""
            return Change(replaced=True)
        if self.mode is Mode.START:
            rest = rest.strip()
        self._emit(change, rest, reasoning=self.mode is Mode.THINK)
        return change

    def _step(self, change: Change) -> None:
        if self.mode is Mode.START:
            self._start(change)
        elif self.mode is Mode.THINK:
            self._until_close(change)
        elif self.mode is Mode.WATCH:
            self._watch(change)
        else:
            self._emit(change, self._buffer, reasoning=False)
            self._buffer = ""

    def _start(self, change: Change) -> None:
        stripped = self._buffer.lstrip()
        if not stripped or (OPEN.startswith(stripped) and len(stripped) < len(OPEN)):
            return  # undecided yet
        if stripped.startswith(OPEN):
            self._buffer = stripped[len(OPEN) :]
            self.mode, self._strip_next, self._tagged = Mode.THINK, True, True
        elif self.assume_reasoning:
            self.mode = Mode.THINK
        else:
            self.mode = Mode.WATCH

    def _until_close(self, change: Change) -> None:
        index = self._buffer.find(CLOSE)
        if index < 0:
            keep = _partial_tag_length(self._buffer, CLOSE)
            self._emit(change, self._buffer[: len(self._buffer) - keep], reasoning=True)
            self._buffer = self._buffer[len(self._buffer) - keep :]
            return
        self._emit(change, self._buffer[:index], reasoning=True)
        self.reasoning = self.reasoning.rstrip()  # the newline before </think> was streamed; not stored
        self._buffer = self._buffer[index + len(CLOSE) :]
        self.mode, self._strip_next = Mode.ANSWER, True

    def _watch(self, change: Change) -> None:
        close, opening = self._buffer.find(CLOSE), self._buffer.find(OPEN)
        if opening >= 0 and (close < 0 or opening < close):
            self.mode = Mode.ANSWER  # the answer talks about tags; leave it alone
            return
        if close < 0:
            keep = max(_partial_tag_length(self._buffer, CLOSE), _partial_tag_length(self._buffer, OPEN))
            self._emit(change, self._buffer[: len(self._buffer) - keep], reasoning=False)
            self._buffer = self._buffer[len(self._buffer) - keep :]
            return
        # A lone </think>: everything so far was reasoning.
        self.reasoning = (self.reasoning + self.content + self._buffer[:close]).strip()
        self.content = ""
        self._buffer = self._buffer[close + len(CLOSE) :]
        self.mode, self._strip_next = Mode.ANSWER, True
        change.reasoning, change.content, change.replaced = "", "", True

    def _emit(self, change: Change, text: str, *, reasoning: bool) -> None:
        if self._strip_next:
            text = text.lstrip()
            if not text:
                return
            self._strip_next = False
        if not text:
            return
        if reasoning:
            self.reasoning += text
            change.reasoning += text
        else:
            self.content += text
            change.content += text
