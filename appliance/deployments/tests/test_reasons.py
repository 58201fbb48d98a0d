"""Stored deployment reasons (English, as services and workers write them) read in the reader's language."""

from __future__ import annotations

import re

import pytest
from django.utils import translation

from appliance.deployments.reasons import TEMPLATES, translate_reason


@pytest.mark.parametrize("english", list(TEMPLATES))
def test_every_template_is_recognised_and_translated(english: str) -> None:
    values = {name: f"v{i}" for i, name in enumerate(re.findall(r"%\((\w+)\)s", english))}
    stored = english % values
    with translation.override("zh-hans"):
        shown = translate_reason(stored)
    assert shown != stored and all(v in shown for v in values.values())
    left = re.sub(r"v\d+|llama-server", "", shown)
    assert not re.search(r"\b[a-z]{3,}", left), shown  # no English words left (names such as Docker kept)


def test_exit_code_and_log_tail_are_kept() -> None:
    stored = "container exited while loading the model (exit code 137)\nKilled\nOOM"
    with translation.override("zh-hans"):
        assert translate_reason(stored) == "加载模型时容器退出（退出码 137）\nKilled\nOOM"


def test_unknown_reason_is_shown_as_stored() -> None:
    assert translate_reason("the engine said hello") == "the engine said hello"
