"""Audit codes read as labels in the reader's language; unknown codes are shown as they are."""

from __future__ import annotations

from django.utils import translation

from appliance.audit.labels import action_label, actor_label, target_label


def test_labels_in_chinese_and_english() -> None:
    with translation.override("zh-hans"):
        assert action_label("deployment.running") == "部署 · 运行中"
        assert action_label("api_key.revoke") == "API 密钥 · 已吊销"
        assert target_label("accounts.user") == "用户"
        assert actor_label("system:command") == "系统（命令行）"
    with translation.override("en"):
        assert action_label("user.create") == "User · created"


def test_unknown_codes_are_shown_unchanged() -> None:
    assert action_label("something.new") == "something.new"
    assert action_label("user.teleported") == "user.teleported"
    assert target_label("x.y") == "x.y" and actor_label("alice") == "alice"
