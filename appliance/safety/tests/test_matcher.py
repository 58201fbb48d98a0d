"""The matcher and the stream scanner, without a database: words split over pieces, masks, blocks."""

from __future__ import annotations

from appliance.safety.choices import Action
from appliance.safety.matcher import Matcher, Rule, StreamScanner, masked

RULES = [
    Rule(1, 1, "platform", "敏感词", Action.BLOCK),
    Rule(2, 1, "platform", "Secret", Action.MASK),
    Rule(3, 2, "dept", "note", Action.RECORD),
    Rule(4, 2, "dept", "secret", Action.RECORD),  # the same word in a second list: both rules are hits
]


def scan(pieces: list[str]) -> tuple[str, StreamScanner]:
    scanner = StreamScanner(Matcher(RULES), excerpt_chars=3)
    out = [r.text for piece in pieces for r in scanner.feed(piece)]
    out += [r.text for r in scanner.finish()]
    return "".join(out), scanner


def test_chinese_and_english_words_are_found_ignoring_case() -> None:
    hits = Matcher(RULES).find("这里有敏感词，还有 SECRET 和 Note")
    assert [("".join(r.word for r in h.rules), h.action) for h in hits] == [
        ("敏感词", Action.BLOCK),
        ("Secretsecret", Action.MASK),
        ("note", Action.RECORD),
    ]


def test_a_word_split_over_pieces_is_masked_before_any_of_it_goes_out() -> None:
    text, scanner = scan(["the se", "cr", "et is here"])
    assert text == "the ****** is here"
    assert {r.rule_id for h in scanner.hits for r in h.rules} == {2, 4}
    assert scanner.hits[0].excerpt == "he secret is"


def test_a_block_releases_only_the_text_before_the_word_and_then_nothing() -> None:
    scanner = StreamScanner(Matcher(RULES))
    shown = [r.text for piece in ["前面的话", "敏", "感", "词后面"] for r in scanner.feed(piece)]
    assert "".join(shown) == "前面的话"
    assert scanner.blocked is not None and scanner.blocked.action == Action.BLOCK
    assert scanner.feed("more") == [] and scanner.finish() == []


def test_pieces_without_matches_come_out_unchanged_and_in_order() -> None:
    scanner = StreamScanner(Matcher(RULES))
    released = [r for piece in ["a", "b", "", "c"] for r in scanner.feed(piece, tag=piece)]
    released += scanner.finish()
    assert [r.tag for r in released] == ["a", "b", "", "c"]
    assert not any(r.changed for r in released)


def test_masking_a_whole_text() -> None:
    matcher = Matcher(RULES)
    text = "Secret, secret"
    assert masked(text, matcher.find(text)) == "******, ******"


def test_an_empty_list_matches_nothing() -> None:
    matcher = Matcher([])
    assert not matcher and matcher.find("anything") == []


def test_a_match_never_starts_inside_a_character_and_emoji_keep_positions() -> None:
    # U+4E2D U+6587 is "中文" (bytes 4E 2D 65 87); the word U+2D65 spans the middle of those two characters.
    matcher = Matcher([Rule(1, 1, "l", "\u2d65", Action.MASK), Rule(2, 1, "l", "秘密", Action.MASK)])
    assert matcher.find("中文") == []
    text = "😀 秘密 😀秘密"
    assert masked(text, matcher.find(text)) == "😀 ** 😀**"
    scanner = StreamScanner(matcher)
    shown = [r.text for piece in ["😀 秘", "密 😀", "秘密"] for r in scanner.feed(piece)] + [
        r.text for r in scanner.finish()
    ]
    assert "".join(shown) == "😀 ** 😀**"
