"""Finding words of the lists in a prompt and in an answer that arrives piece by piece.

Aho-Corasick (pyahocorasick, a C automaton): one pass over the text whatever the number of words,
so a 50,000-word list costs about what a 50-word list does. Matching ignores case (English) by
lower-casing both sides; characters whose lower case is longer than one character are left as
they are, so positions in the folded text are positions in the original.

An answer is scanned as it streams. A word may be split over two pieces (``敏感`` + ``词``), so
the scanner holds back pieces until the text after them is at least as long as the longest word
minus one character: a match can then no longer start in a piece already sent. Held pieces are
released unchanged, masked, or -- at a blocking match -- cut before it and the rest dropped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import ahocorasick

from appliance.safety.choices import ACTION_RANK, MASK_CHAR, Action

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Rule:
    rule_id: int
    list_id: int
    list_name: str
    word: str
    action: str


# A rule as the matcher keeps it: a plain tuple of plain values, which the garbage collector stops
# tracking, where 50,000 Rule objects (and their tuples) would add 150,000 objects to every full
# collection of the web process (~0.1 s each).
_Fields = tuple[int, int, str, str, str]


@dataclass(frozen=True)
class Hit:
    """Rules matching ``text[start:end]`` of the scanned text (several lists may hold one word)."""

    rules: tuple[Rule, ...]
    start: int
    end: int
    excerpt: str = ""

    @property
    def action(self) -> str:
        return max((r.action for r in self.rules), key=lambda a: ACTION_RANK[Action(a)])


def encode(text: str) -> str:
    """The automaton's alphabet: each character as its two UTF-16 bytes (latin-1 characters).

    Why: pyahocorasick finds a node's child by a linear scan of its children, and a list of
    Chinese words gives the root thousands of them (one per first character), so every character
    of an answer cost a scan of thousands (~1.2 µs a character for 50,000 words). As two bytes, no
    node has more than 256 children and the root about 100 (~20-130 ns a character). A match must
    start on a character's first byte (an even position); one starting in the middle of a character
    is not a match and is skipped. Characters beyond the BMP (emoji) are searched as U+FFFD, so
    every character is exactly two bytes and positions halve back to character positions.
    """
    data = text.encode("utf-16-be", "surrogatepass")
    if len(data) != 2 * len(text):
        data = _ASTRAL.sub("\ufffd", text).encode("utf-16-be", "surrogatepass")
    return data.decode("latin-1")


def searchable(text: str) -> str:
    """``encode(fold(text))``, in fewer steps for the common text (no character changes length)."""
    lowered = text.lower()
    data = lowered.encode("utf-16-be", "surrogatepass")
    if len(data) == 2 * len(text) and len(lowered) == len(text):
        return data.decode("latin-1")
    return encode(fold(text))


# An answer streamed one token a read is scanned token by token, and tokens come from the engine's
# vocabulary: the common ones recur all through an answer and across answers, so their searchable
# form is kept (a dictionary lookup instead of a fold and two codecs on every token).
token_searchable = functools.lru_cache(maxsize=16384)(searchable)
TOKEN_CHARS = 16


def fold(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class Matcher:
    """The compiled rules of the lists that apply to one department."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        grouped: dict[str, list[_Fields]] = {}
        for rule in rules:
            key = fold(rule.word.strip())
            if key:
                fields = (int(rule.rule_id), int(rule.list_id), str(rule.list_name), str(rule.word), str(rule.action))
                grouped.setdefault(key, []).append(fields)
        self.size = len(grouped)
        self.longest = max((len(key) for key in grouped), default=0)
        # The automaton stores an index into ``_entries`` (a C integer, no Python object per word).
        self._entries: list[tuple[int, tuple[_Fields, ...]]] = []
        self._automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for key, found in grouped.items():
            self._automaton.add_word(encode(key), len(self._entries))
            self._entries.append((2 * len(key), tuple(found)))
        if grouped:
            self._automaton.make_automaton()

    def __bool__(self) -> bool:
        return self.size > 0

    def find(self, text: str) -> list[Hit]:
        """Matches in ``text``, in order of their end."""
        if not self.size:
            return []
        return [hit for last, index in self._automaton.iter(searchable(text)) if (hit := self.hit(last, index, 0))]

    def search(self) -> Any:
        """An automaton search that continues from piece to piece (``.set(encode(piece))``, then
        iterate; each match is ``(last byte, index)`` for ``hit``): each character is looked at once;
        positions (in bytes) count from the first piece."""
        return self._automaton.iter("") if self.size else None

    def hit(self, last: int, index: int, base: int) -> Hit | None:
        """The match the automaton reported ending at byte ``last``, in characters less ``base``; None
        when it starts in the middle of a character (see ``encode``)."""
        size, rules = self._entries[index]
        if (last + 1 - size) % 2:
            return None
        return Hit(tuple(Rule(*fields) for fields in rules), (last + 1 - size) // 2 - base, (last + 1) // 2 - base)


def strongest(hits: Iterable[Hit]) -> str | None:
    return max((h.action for h in hits), key=lambda a: ACTION_RANK[Action(a)], default=None)


def masked(text: str, hits: Iterable[Hit]) -> str:
    chars = list(text)
    for hit in hits:
        if hit.action == Action.MASK:
            chars[hit.start : hit.end] = MASK_CHAR * (hit.end - hit.start)
    return "".join(chars)


class Released(NamedTuple):
    """A held piece let go: its text as it may be shown, whether that differs from what came in, its tag."""

    text: str
    changed: bool
    tag: Any


_new = tuple.__new__  # ``_new(Released, (...))``: a third of the time of ``Released(...)`` (a Python ``__new__``)


class StreamScanner:
    """One answer's text, piece by piece (see the module's docstring).

    The common case -- nothing matched, nothing to mask, the oldest piece let go -- is a scan and a
    pop; anything else (the positions of masks, the cut before a blocking word) is worked out only
    when a word was found.
    """

    def __init__(self, matcher: Matcher, excerpt_chars: int = 0) -> None:
        self.matcher, self.excerpt_chars = matcher, excerpt_chars
        self.hits: list[Hit] = []
        self.blocked: Hit | None = None
        self.hold = max(0, matcher.longest - 1)  # characters held back after a piece before it goes out
        self._pieces: list[str] = []  # held, oldest first
        self._tags: list[Any] = []
        self._held = 0  # characters in the held pieces
        self._masks: list[tuple[int, int]] = []  # spans of the held text to mask
        self._base = 0  # characters released before the held ones
        self._search = matcher.search()

    def feed(self, piece: str, tag: Any = None) -> list[Released]:
        """Add a piece; return the pieces that may go out now. After a block, the text before it."""
        oldest = self._pieces[0] if self._pieces else piece  # what goes out if one piece goes out unchanged
        out = self.step(piece, tag)
        return out if type(out) is list else [_new(Released, (oldest, False, out))]

    def step(self, piece: str, tag: Any) -> Any:
        """``feed`` for a relay that passes tags on (``tag`` must not be a list): when the oldest piece,
        and only it, goes out unchanged -- nearly every step of a stream -- its tag itself, else the
        list ``feed`` returns.

        A stream relayed one event a read calls this for every token, and at the relay's ceiling each
        step shows in its tokens/s: hence no ``Released`` and no list in the common case."""
        if self.blocked is not None:
            return []
        pieces = self._pieces
        pieces.append(piece)
        self._tags.append(tag)
        self._held += len(piece)
        search = self._search
        if piece and search is not None:
            # A piece of a few characters is a token (one event a read): likely seen before.
            search.set(token_searchable(piece) if len(piece) <= TOKEN_CHARS else searchable(piece))
            for last, index in search:
                hit = self.matcher.hit(last, index, self._base)
                if hit is not None and self._found(hit):
                    return self._release_before(hit.start)
        # The steady state: the oldest piece, and only it, has hold characters after it.
        budget = self._held - self.hold
        first = len(pieces[0])
        if self._masks or first > budget or (len(pieces) > 1 and first + len(pieces[1]) <= budget):
            return self._release(self.hold)
        self._held -= first
        self._base += first
        del pieces[0]
        return self._tags.pop(0)

    def finish(self) -> list[Released]:
        """The answer ended: everything still held."""
        return [] if self.blocked is not None else self._release(0)

    def _found(self, hit: Hit) -> bool:
        """Record a match; True when it blocks."""
        if self.excerpt_chars:
            text = "".join(self._pieces)
            hit = Hit(
                hit.rules,
                hit.start,
                hit.end,
                text[max(0, hit.start - self.excerpt_chars) : hit.end + self.excerpt_chars],
            )
        self.hits.append(hit)
        if hit.action == Action.BLOCK:
            self.blocked = hit
            return True
        if hit.action == Action.MASK:
            self._masks.append((hit.start, hit.end))
        return False

    def _release(self, keep: int) -> list[Released]:
        """Let go of the oldest pieces while at least ``keep`` characters stay held after them."""
        budget = self._held - keep  # characters that may go
        count, length = 0, 0
        for piece in self._pieces:
            if length + len(piece) > budget:
                break
            count, length = count + 1, length + len(piece)
        if count != 1 or self._masks:
            return self._cut(count, length) if count else []
        self._held -= length  # one piece, unchanged: the common case while an answer streams
        self._base += length
        return [Released(self._pieces.pop(0), False, self._tags.pop(0))]

    def _release_before(self, position: int) -> list[Released]:
        count, length = 0, 0
        for piece in self._pieces:
            if length + len(piece) > position:
                break
            count, length = count + 1, length + len(piece)
        out = self._cut(count, length)
        if position > length:  # the piece the blocked word starts in: its text before the word
            out.append(self._shown(self._pieces[0][: position - length], 0, self._tags[0], cut=True))
        self._pieces.clear()
        self._tags.clear()
        return out

    def _cut(self, count: int, length: int) -> list[Released]:
        pieces, tags = self._pieces[:count], self._tags[:count]
        del self._pieces[:count], self._tags[:count]
        self._held -= length
        self._base += length
        if not self._masks:
            return [Released(piece, False, tag) for piece, tag in zip(pieces, tags, strict=True)]
        out, offset = [], 0
        for piece, tag in zip(pieces, tags, strict=True):
            out.append(self._shown(piece, offset, tag))
            offset += len(piece)
        self._masks = [(s - length, e - length) for s, e in self._masks if e > length]
        return out

    def _shown(self, piece: str, offset: int, tag: Any, cut: bool = False) -> Released:
        spans = [(max(s - offset, 0), min(e - offset, len(piece))) for s, e in self._masks]
        spans = [(s, e) for s, e in spans if s < e]
        if not spans:
            return Released(piece, cut, tag)
        chars = list(piece)
        for s, e in spans:
            chars[s:e] = MASK_CHAR * (e - s)
        return Released("".join(chars), True, tag)
