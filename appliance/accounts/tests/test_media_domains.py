"""Issue 12: which domains a department's engines may fetch images from; platform admins set it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


def test_platform_admin_sets_the_allowed_media_domains_and_it_is_audited(
    api_as: Callable[[str], APIClient], departments: dict
) -> None:
    eng = departments["eng"].pk
    body = {"allowed_media_domains": ["images.example.com", "CDN.Example."]}
    resp = api_as("root").patch(f"/api/v1/departments/{eng}/", body, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["allowed_media_domains"] == ["images.example.com", "cdn.example"]
    record = AuditRecord.objects.filter(action="department.update").latest("id")
    assert record.after is not None and record.after["allowed_media_domains"] == ["images.example.com", "cdn.example"]
    for bad in (["http://x.example/"], ["*.example.com"], ["a b"], ["x" * 300]):
        assert (
            api_as("root")
            .patch(f"/api/v1/departments/{eng}/", {"allowed_media_domains": bad}, format="json")
            .status_code
            == 400
        )
    assert api_as("alice").patch(f"/api/v1/departments/{eng}/", body, format="json").status_code in (403, 404)
