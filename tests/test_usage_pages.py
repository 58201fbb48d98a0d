"""Usage pages: a user's own usage, a department's usage (admins), CSV export and the quota form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from appliance.accounts.models import User
from appliance.audit.models import AuditRecord
from appliance.quotas.drain import store_records
from appliance.quotas.models import Quota
from appliance.quotas.usage import RequestMeta, usage_record
from appliance.safety.choices import Action, Channel, Stage
from appliance.safety.models import SafetyHit

pytestmark = pytest.mark.django_db


def _client(user: User, language: str = "zh-hans") -> Client:
    client = Client()
    client.force_login(user)
    client.post("/i18n/setlang/", {"language": language, "next": "/"})
    return client


def _record(user: User, n: int, *, model: str = "通义千问", status: str = "ok", reason: str = "") -> dict[str, Any]:
    meta = RequestMeta(user_id=user.pk, department_id=user.department_id, model=model)
    moment = (timezone.now() - timedelta(hours=n)).timestamp()
    tokens = {"prompt_tokens": 100, "completion_tokens": 0 if status == "rejected" else 50}
    return usage_record(meta, f"{user.username}-{n}", status=status, now=moment, reason=reason, **tokens)


@pytest.fixture
def usage(personas: dict[str, User]) -> None:
    rows = [_record(personas[name], n) for name in ("bob", "carol", "charlie") for n in range(3)]
    rows.append(_record(personas["bob"], 4, model="deepseek-r1"))
    rows.append(_record(personas["bob"], 5, status="rejected", reason="tokens_per_day"))
    rows.append(_record(personas["charlie"], 5, status="rejected", reason="requests_per_minute"))
    store_records(rows)
    for name in ("bob", "charlie"):
        user = personas[name]
        for word in ("机密", "内部"):  # one request matching two words is one refusal
            SafetyHit.objects.create(
                user=user, department=user.department, username=name, list_name="词库", word=word,
                action=Action.BLOCK, stage=Stage.PROMPT, channel=Channel.CHAT, request_id=f"{name}-blocked",
            )  # fmt: skip


def _totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {row["name"]: row["total_tokens"] for row in rows}


def test_a_member_sees_only_their_own_usage_and_why_requests_were_refused(
    personas: dict[str, User], usage: None
) -> None:
    response = _client(personas["bob"]).get("/usage/")
    assert response.status_code == 200
    assert _totals(response.context["by_model"]) == {"deepseek-r1": 150, "通义千问": 550}
    refusals = {row["label"]: row["count"] for row in response.context["refusals"]}
    assert refusals == {"超出配额：每日 token 数": 1, "内容被拦截（提问）": 1}
    page = response.content.decode()
    assert "我的用量" in page and "被拒绝的请求" in page and "charlie" not in page
    assert response.context["chart_labels"]["tokens_model"] == "各模型每日 token 数"
    assert response.context["charts"]["users"] == ["bob"]


def test_the_own_page_shows_what_is_left_of_each_quota(personas: dict[str, User], usage: None) -> None:
    Quota.objects.create(user=personas["bob"], tokens_per_day=5000, requests_per_minute=10)
    rows = _client(personas["bob"], "en").get("/usage/").context["quotas"]
    assert {row["limit"]: (row["value"], row["left"] is not None) for row in rows} == {
        "Tokens per day": (5000, True),
        "Requests per minute": (10, True),
    }
    assert all(row["resets"] is not None for row in rows)


def test_a_department_admin_sees_their_department_only(
    personas: dict[str, User], departments: dict[str, Any], usage: None
) -> None:
    alice = _client(personas["alice"])
    landing = alice.get("/usage/departments/?since=2000-01-01")
    assert (
        landing.status_code == 302
        and landing["Location"] == f"/usage/departments/{departments['eng'].pk}/?since=2000-01-01"
    )
    response = alice.get(landing["Location"])
    assert _totals(response.context["by_user"]) == {"bob": 700, "carol": 450}
    assert [d.code for d in response.context["departments"]] == ["eng", "eng-ml"]
    assert "部门用量" in response.content.decode()
    refusals = {row["reason"]: row["count"] for row in response.context["refusals"]}
    assert refusals == {"tokens_per_day": 1, "content_blocked:prompt": 1}
    assert alice.get(f"/usage/departments/{departments['fin'].pk}/").status_code == 404
    sub = alice.get(f"/usage/departments/{departments['eng_ml'].pk}/")
    assert _totals(sub.context["by_user"]) == {"carol": 450}


@pytest.mark.parametrize("name", ["bob", "carol"])
def test_members_are_refused_the_department_page(
    personas: dict[str, User], departments: dict[str, Any], name: str
) -> None:
    member = _client(personas[name])
    own = personas[name].department_id
    assert member.get("/usage/departments/").status_code == 403
    assert member.get(f"/usage/departments/{own}/").status_code == 403
    assert member.get(f"/usage/departments/{own}/export/").status_code == 403
    assert member.post(f"/usage/departments/{own}/quotas/", {"target": f"u:{personas[name].pk}"}).status_code == 403
    assert "部门用量" not in member.get("/usage/").content.decode()  # not in their menu


def test_platform_admins_and_auditors_pick_any_department(
    personas: dict[str, User], departments: dict[str, Any], usage: None
) -> None:
    fin = departments["fin"].pk
    for name in ("root", "eve"):
        client = _client(personas[name])
        assert client.get(f"/usage/departments/?department={fin}")["Location"] == f"/usage/departments/{fin}/"
        response = client.get(f"/usage/departments/{fin}/")
        assert _totals(response.context["by_user"]) == {"charlie": 550}
        assert len(response.context["departments"]) == 3
    assert _client(personas["eve"]).get(f"/usage/departments/{fin}/").context["form"] is None  # auditors read
    assert _client(personas["eve"]).post(f"/usage/departments/{fin}/quotas/", {}).status_code == 403


def test_csv_export_is_utf8_with_a_bom_and_translated_headers(
    personas: dict[str, User], departments: dict[str, Any], usage: None
) -> None:
    eng = departments["eng"].pk
    response = _client(personas["alice"]).get(f"/usage/departments/{eng}/export/?by=model")
    body = response.getvalue().decode("utf-8")
    lines = body.splitlines()
    assert body.startswith("\ufeff") and lines[0].startswith("\ufeff模型,请求数")
    assert any(line.startswith("通义千问,7,") for line in lines)
    by_user = _client(personas["alice"], "en").get(f"/usage/departments/{eng}/export/?by=user").getvalue()
    assert by_user.decode().splitlines()[0].startswith("\ufeffUser,Requests,Prompt tokens")
    assert _client(personas["alice"]).get(f"/usage/departments/{eng}/export/?by=nothing").status_code == 404


def test_the_quota_form_creates_then_changes_a_quota_through_the_service(
    personas: dict[str, User], departments: dict[str, Any]
) -> None:
    alice, carol, eng = _client(personas["alice"]), personas["carol"], departments["eng"].pk
    form = alice.get(f"/usage/departments/{eng}/").context["form"]
    targets = dict(form.fields["target"].choices)
    # Her own department's quota is set from above; she manages the one below and the members.
    assert f"d:{eng}" not in targets and f"d:{departments['eng_ml'].pk}" in targets
    assert f"u:{carol.pk}" in targets and f"u:{personas['alice'].pk}" not in targets
    url = f"/usage/departments/{eng}/quotas/"
    response = alice.post(url, {"target": f"u:{carol.pk}", "tokens_per_day": "1000", "requests_per_minute": ""})
    assert response.status_code == 302
    quota = Quota.objects.get(user=carol)
    assert (quota.tokens_per_day, quota.requests_per_minute) == (1000, None)
    alice.post(url, {"target": f"u:{carol.pk}", "tokens_per_day": "2000", "concurrent_requests": "2"})
    quota.refresh_from_db()
    assert (quota.tokens_per_day, quota.concurrent_requests) == (2000, 2)
    actions = list(AuditRecord.objects.filter(actor=personas["alice"]).values_list("action", flat=True))
    assert sorted(actions) == ["quota.create", "quota.update"]
    page = alice.get(f"/usage/departments/{eng}/?target=u:{carol.pk}")
    assert page.context["form"].initial["tokens_per_day"] == 2000
    assert "配额已保存" in page.content.decode()
    assert _client(carol).get("/usage/").context["quotas"][0]["value"] == 2000


def test_the_quota_form_refuses_what_the_service_refuses(
    personas: dict[str, User], departments: dict[str, Any]
) -> None:
    alice, eng = _client(personas["alice"]), departments["eng"].pk
    url = f"/usage/departments/{eng}/quotas/"
    for body in (
        {"target": f"d:{eng}", "tokens_per_day": "10"},  # her own department: not hers to set
        {"target": f"u:{personas['charlie'].pk}", "tokens_per_day": "10"},  # another department's member
        {"target": f"u:{personas['bob'].pk}", "tokens_per_day": "-1"},
    ):
        response = alice.post(url, body, follow=True)
        assert [m.level_tag for m in response.context["messages"]] == ["error"]
    assert not Quota.objects.exists()
    assert _client(personas["dave"]).post(url, {"target": f"u:{personas['bob'].pk}"}).status_code == 404
