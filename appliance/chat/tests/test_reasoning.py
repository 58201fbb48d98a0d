"""Splitting reasoning from the answer, chunk by chunk, whatever way the engine marks it."""

from __future__ import annotations

import pytest

from appliance.chat.reasoning import ThinkSplitter


def split(chunks: list[str], *, assume: bool = False, natural: bool = True) -> tuple[str, str]:
    splitter = ThinkSplitter(assume_reasoning=assume)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.finish(natural_end=natural)
    return splitter.reasoning, splitter.content


@pytest.mark.parametrize(
    ("chunks", "assume", "expected"),
    [
        (["Just ", "an answer."], False, ("", "Just an answer.")),
        (["<think>", "a b", "</think>", "answer"], False, ("a b", "answer")),
        (["<", "thi", "nk>\n", "a b\n", "</", "think", ">\n\n", "answer"], False, ("a b", "answer")),
        (["\n  <think>a</think>b"], False, ("a", "b")),
        (["reason", "ing</think>", "\n\nanswer"], True, ("reasoning", "answer")),
        (["reason", "ing</think>", "answer"], False, ("reasoning", "answer")),
        (["Put it in <think> tags, then </think>."], False, ("", "Put it in <think> tags, then </think>.")),
        (["R1 skipped thinking."], True, ("", "R1 skipped thinking.")),
        (["   "], False, ("", "")),
    ],
    ids=["plain", "tags", "split-tags", "leading-space", "r1-no-open", "lone-close", "tags-in-answer", "r1-no-think",
         "blank"],
)  # fmt: skip
def test_split(chunks: list[str], assume: bool, expected: tuple[str, str]) -> None:
    assert split(chunks, assume=assume) == expected


def test_a_cut_answer_of_a_reasoning_model_stays_reasoning() -> None:
    assert split(["still thinking"], assume=True, natural=False) == ("still thinking", "")


def test_an_unclosed_think_tag_stays_reasoning_even_at_a_natural_end() -> None:
    assert split(["<think>thinking"], natural=True) == ("thinking", "")


def test_a_partial_closing_tag_is_held_back_until_it_is_known() -> None:
    splitter = ThinkSplitter(assume_reasoning=True)
    first = splitter.feed("abc</th")
    assert (first.reasoning, first.content) == ("abc", "")
    second = splitter.feed("ink>xyz")
    assert (second.reasoning, second.content) == ("", "xyz")


def test_a_lone_closing_tag_moves_the_streamed_answer_to_reasoning() -> None:
    splitter = ThinkSplitter(assume_reasoning=False)
    assert splitter.feed("thinking aloud").content == "thinking aloud"
    change = splitter.feed("</think>answer")
    assert change.replaced and change.content == "answer"
    assert (splitter.reasoning, splitter.content) == ("thinking aloud", "answer")


def test_with_reasoning_content_the_content_is_never_parsed() -> None:
    splitter = ThinkSplitter(assume_reasoning=True)
    splitter.feed_reasoning("why")
    splitter.feed("an answer about </think> tags")
    splitter.finish(natural_end=True)
    assert (splitter.reasoning, splitter.content) == ("why", "an answer about </think> tags")
