"""Authorization matrix: every route of the URL configuration × 5 principals × the object's department.

Routes are enumerated from the URL configuration (tests/security/matrix_routes.py): every DRF route and
action under /api/v1/ with each of its methods, every other HTTP route (the console's pages, health,
schema), and every WebSocket route. Each must have a row in ``EXPECT`` below, or a reason in ``EXEMPT``;
a new route without one fails ``test_every_route_has_an_expectation``.

The principals stand relative to the object's department (tests/security/world.py): anonymous, a member
of that department (not the object's owner), the auditor, the admin of another department and the admin
of that department (or of its parent). Objects are visited in two departments: ``eng_ml`` (a child of
alice's ``eng``) and ``fin`` (dave's), so both the subtree and the other side are exercised.

Outcomes: ``OK`` passed the gate (2xx, a redirect that is not to the login page, or 409 for a state
conflict); ``LOGIN`` asked to sign in (401, a redirect to the login page, a refused socket); ``DENY``
refused (403, or a page action that answers with an error message); ``HIDE`` not found (404: objects
outside one's scope are not revealed); ``INVALID`` (400): the body names an object outside one's scope,
which reads exactly as a nonexistent id ("does not exist or is not yours"), never as a 403 that would
confirm it exists. Bodies are otherwise valid, so a 400 is never a typo in the matrix.

To add a route: run ``MATRIX_RECORD=1 pytest tests/security/test_authz_matrix.py -s``; it prints the
observed row for every route in table syntax. Check each cell against the intended policy, then paste
the row (with a body in ``BODIES`` if the route takes one). Each request runs in a rolled-back savepoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.messages import constants, get_messages
from django.db import transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from appliance.accounts.models import Department, User
from tests.security.matrix_routes import http_routes, ws_routes
from tests.security.world import OBJECT_DEPARTMENTS, PRINCIPALS_BY_DEPARTMENT, World, build_world

pytestmark = pytest.mark.django_db

OK, LOGIN, DENY, HIDE, INVALID = "OK", "LOGIN", "DENY", "HIDE", "INVALID"
PRINCIPALS = ("anonymous", "member", "auditor", "admin_other", "admin_same")

# Routes outside the matrix, with the reason. Everything else must have an expectation.
EXEMPT_PREFIXES = {
    "django-admin/": "Django's own admin: staff-only by Django, and put behind the console's login by item 3",
    "v1/": "the OpenAI-compatible gateway: API keys only; appliance/gateway/tests cover its authentication",
}
EXEMPT_WS: dict[str, str] = {}

Row = tuple[str, str, str, str, str]
# (kind, name, method) -> outcomes for (anonymous, member, auditor, admin_other, admin_same), the same for
# objects of both departments, or {department: row} where they differ.
EXPECT: dict[tuple[str, str, str], Row | dict[str, Row]] = {
    ("api", "apikey-detail", "delete"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "apikey-detail", "get"): (LOGIN, HIDE, OK, HIDE, OK),
    ("api", "apikey-list", "get"): (LOGIN, OK, OK, OK, OK),
    # INVALID: a key for a user outside one's scope (or any user, for a member) reads as a nonexistent user
    ("api", "apikey-list", "post"): (LOGIN, INVALID, INVALID, INVALID, DENY),
    ("api", "apikey-revoke", "post"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "auditrecord-detail", "get"): (LOGIN, HIDE, OK, HIDE, OK),
    ("api", "auditrecord-export", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "auditrecord-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "capacity-api", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "capacity-api", "post"): (LOGIN, OK, OK, OK, OK),
    ("api", "catalog-detail", "delete"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "catalog-detail", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "catalog-detail", "put"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "catalog-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "catalog-list", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "chatmodel-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "conversation-detail", "delete"): (LOGIN, HIDE, HIDE, HIDE, HIDE),
    ("api", "conversation-detail", "get"): (LOGIN, HIDE, HIDE, HIDE, HIDE),
    ("api", "conversation-detail", "patch"): (LOGIN, HIDE, HIDE, HIDE, HIDE),
    ("api", "conversation-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "conversation-messages", "get"): (LOGIN, HIDE, HIDE, HIDE, HIDE),
    ("api", "department-detail", "delete"): (LOGIN, DENY, DENY, HIDE, DENY),
    ("api", "department-detail", "get"): (LOGIN, OK, OK, HIDE, OK),
    ("api", "department-detail", "patch"): (LOGIN, DENY, DENY, HIDE, DENY),
    ("api", "department-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "department-list", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "deployment-detail", "delete"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "deployment-detail", "get"): (LOGIN, OK, OK, HIDE, OK),
    ("api", "deployment-events", "get"): (LOGIN, OK, OK, HIDE, OK),
    ("api", "deployment-list", "get"): (LOGIN, OK, OK, OK, OK),
    # INVALID: another department's id reads as a nonexistent department
    ("api", "deployment-list", "post"): (LOGIN, DENY, DENY, INVALID, OK),
    ("api", "deployment-logs", "get"): (LOGIN, OK, OK, HIDE, OK),
    ("api", "deployment-on-demand", "post"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "deployment-restart", "post"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "deployment-start", "post"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "deployment-stop", "post"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "engineimage-detail", "delete"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "engineimage-detail", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "engineimage-detail", "patch"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "engineimage-detail", "put"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "engineimage-list", "get"): (LOGIN, OK, OK, OK, OK),
    # the GPU holds eng_ml's units: visible to who sees that pool
    ("api", "gpu-detail", "get"): {
        "eng_ml": (LOGIN, OK, OK, HIDE, OK),
        "fin": (LOGIN, HIDE, OK, OK, HIDE),
    },
    ("api", "gpu-list", "get"): (LOGIN, OK, OK, OK, OK),
    # idem
    ("api", "gpu-metrics", "get"): {
        "eng_ml": (LOGIN, OK, OK, HIDE, OK),
        "fin": (LOGIN, HIDE, OK, OK, HIDE),
    },
    ("api", "gpuquota-detail", "get"): (LOGIN, OK, OK, HIDE, OK),
    ("api", "gpuquota-detail", "patch"): (LOGIN, DENY, DENY, HIDE, DENY),
    ("api", "gpuquota-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "gpuquota-list", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "gpuunit-assign", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "gpuunit-detail", "get"): (LOGIN, OK, OK, HIDE, OK),
    ("api", "gpuunit-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "gpuunit-move", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "gpuunit-release", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "gpuunit-summary", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "imageimport-detail", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "imageimport-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "node-detail", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "node-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "node-maintenance", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "nodeimage-detail", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "nodeimage-import-image", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "nodeimage-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "profile-detail", "delete"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "profile-detail", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "profile-detail", "patch"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "profile-fit", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "profile-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "profile-list", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "profile-versions", "get"): (LOGIN, OK, OK, OK, OK),
    # idem
    ("api", "quota-detail", "delete"): {
        "eng_ml": (LOGIN, DENY, DENY, HIDE, OK),
        "fin": (LOGIN, DENY, DENY, HIDE, DENY),
    },
    ("api", "quota-detail", "get"): (LOGIN, OK, OK, HIDE, OK),
    # a department admin sets quotas below their department, not their own
    ("api", "quota-detail", "patch"): {
        "eng_ml": (LOGIN, DENY, DENY, HIDE, OK),
        "fin": (LOGIN, DENY, DENY, HIDE, DENY),
    },
    ("api", "quota-list", "get"): (LOGIN, OK, OK, OK, OK),
    # INVALID: a user outside one's scope reads as a nonexistent user
    ("api", "quota-list", "post"): (LOGIN, INVALID, DENY, INVALID, OK),
    ("api", "quota-mine", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "usagerecord-detail", "get"): (LOGIN, HIDE, OK, HIDE, OK),
    ("api", "usagerecord-export", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "usagerecord-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "usagerecord-summary", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "usagerecord-summary-export", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "user-detail", "get"): (LOGIN, HIDE, OK, HIDE, OK),
    # The auditor sees the user, so a change is refused (403), not hidden.
    ("api", "user-detail", "patch"): (LOGIN, HIDE, DENY, HIDE, OK),
    ("api", "user-list", "get"): (LOGIN, OK, OK, OK, OK),
    # INVALID: another department's id reads as a nonexistent department
    ("api", "user-list", "post"): (LOGIN, DENY, DENY, INVALID, OK),
    ("api", "user-me", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "user-password", "post"): (LOGIN, HIDE, DENY, HIDE, OK),
    # Schema and docs behind login unless CONSOLE_API_DOCS_PUBLIC=True.
    ("page", "api-docs", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "api-redoc", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "api-key-revoke", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "api-keys", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "api-not-found", "get"): (HIDE, HIDE, HIDE, HIDE, HIDE),
    ("page", "audit-log", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "capacity", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "catalog", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "catalog-delete", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("page", "chat", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "departments", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "deployment-action", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "deployment-on-demand", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "deployment-create", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "deployment-detail", "get"): (LOGIN, OK, OK, HIDE, OK),
    ("page", "deployments", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "engine-image", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("page", "gpu-assign", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    # idem
    ("page", "gpu-detail", "get"): {
        "eng_ml": (LOGIN, OK, OK, HIDE, OK),
        "fin": (LOGIN, HIDE, OK, OK, HIDE),
    },
    ("page", "gpu-live", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "gpu-quotas", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "gpus", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "healthz", "get"): (OK, OK, OK, OK, OK),
    ("page", "home", "get"): (LOGIN, OK, OK, OK, OK),
    # Content safety (issue 15): lists and hits by department subtree; auditors read; admins of the department manage.
    ("api", "ai-label-api", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "ai-label-api", "put"): (LOGIN, DENY, DENY, DENY, OK),
    ("api", "safetyhit-detail", "get"): (LOGIN, HIDE, OK, HIDE, OK),
    ("api", "safetyhit-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "wordlist-detail", "delete"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "wordlist-detail", "get"): (LOGIN, HIDE, OK, HIDE, OK),
    ("api", "wordlist-detail", "patch"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "wordlist-export", "get"): (LOGIN, HIDE, OK, HIDE, OK),
    ("api", "wordlist-import-words", "post"): (LOGIN, HIDE, HIDE, HIDE, OK),
    ("api", "wordlist-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "wordlist-list", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "ai-label", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "safety-hits", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "word-list-delete", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "word-list-import", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "word-list-toggle", "post"): (LOGIN, DENY, DENY, DENY, OK),
    ("page", "word-lists", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "signinrule-list", "get"): (LOGIN, OK, OK, OK, OK),
    ("api", "signinrule-list", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("api", "signinrule-detail", "get"): (LOGIN, HIDE, OK, HIDE, HIDE),
    ("api", "signinrule-detail", "patch"): (LOGIN, HIDE, DENY, HIDE, HIDE),
    ("api", "signinrule-detail", "delete"): (LOGIN, HIDE, DENY, HIDE, HIDE),
    # Sign-in rules (issue 15): platform admins manage them, auditors read them, nobody else sees the page.
    ("page", "sign-in-rules", "get"): (LOGIN, DENY, OK, DENY, DENY),
    ("page", "sign-in-rules", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("page", "sign-in-rule-action", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    # OIDC sign-in starts before any login; not configured in this world, so it is not there at all.
    ("page", "sso-oidc-start", "get"): (HIDE, HIDE, HIDE, HIDE, HIDE),
    ("page", "sso-oidc-callback", "get"): (HIDE, HIDE, HIDE, HIDE, HIDE),
    # The charts' data: admins and auditors (members see their own usage elsewhere).
    ("page", "dashboard-data", "get"): (LOGIN, DENY, OK, OK, OK),
    # Prometheus' scrape: by address or bearer token, not by session; the test client is loopback.
    ("page", "metrics", "get"): (OK, OK, OK, OK, OK),
    ("page", "metrics-engines", "get"): (OK, OK, OK, OK, OK),
    ("page", "images", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "login", "get"): (OK, OK, OK, OK, OK),
    ("page", "logout", "post"): (LOGIN, LOGIN, LOGIN, LOGIN, LOGIN),
    ("page", "node-maintenance", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("page", "nodes", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "password", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "profile-archive", "post"): (LOGIN, DENY, DENY, DENY, DENY),
    ("page", "profile-detail", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "profiles", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "readyz", "get"): (OK, OK, OK, OK, OK),
    ("page", "schema", "get"): (LOGIN, OK, OK, OK, OK),
    ("page", "set_language", "post"): (OK, OK, OK, OK, OK),
    ("page", "usage", "get"): (LOGIN, OK, OK, OK, OK),
    # A department's usage and quota form (issue 15): its admins (and platform admins); auditors read; members
    # have their own page only; another department's admin does not learn the department exists.
    ("page", "usage-departments", "get"): (LOGIN, DENY, OK, OK, OK),
    ("page", "usage-department", "get"): (LOGIN, DENY, OK, HIDE, OK),
    ("page", "usage-export", "get"): (LOGIN, DENY, OK, HIDE, OK),
    ("page", "usage-quota-set", "post"): (LOGIN, DENY, DENY, HIDE, OK),
    ("page", "user-toggle-active", "post"): (LOGIN, DENY, DENY, DENY, OK),
    # As the API: the auditor sees the user, so the edit and reset pages refuse (403); others don't see it.
    ("page", "user-edit", "get"): (LOGIN, HIDE, DENY, HIDE, OK),
    ("page", "user-reset-password", "post"): (LOGIN, HIDE, DENY, HIDE, OK),
    ("page", "users", "get"): (LOGIN, OK, OK, OK, OK),
    ("ws", "ws/deployments/<int:pk>/logs/", "*"): (LOGIN, OK, OK, DENY, OK),
    # Every signed-in user may chat; what they may chat with is the models of their department.
    ("ws", "ws/chat/", "*"): (LOGIN, OK, OK, OK, OK),
}  # fmt: skip

# Pages that take POST only; the other pages are visited with GET.
POST_PAGES = {
    "logout", "set_language", "user-toggle-active", "api-key-revoke", "node-maintenance", "gpu-assign",
    "profile-archive", "catalog-delete", "deployment-action", "deployment-on-demand", "engine-image",
    "user-reset-password", "usage-quota-set",
}  # fmt: skip


def _dept(world: World, dept: str) -> int:
    return world.ids["department"][dept]


# (name, method) -> the JSON (API) or form (page) body sent; valid for a principal allowed to act.
BODIES: dict[tuple[str, str], Callable[[World, str], dict[str, Any]]] = {
    ("department-list", "post"): lambda w, d: {"code": "new-dept", "name": "New", "parent": _dept(w, d)},
    ("department-detail", "patch"): lambda w, d: {"name": "Renamed"},
    ("user-list", "post"): lambda w, d: {
        "username": "newbie",
        "role": "member",
        "department": _dept(w, d),
        "password": "correct-horse-battery-9",
    },
    ("user-detail", "patch"): lambda w, d: {"display_name": "Renamed"},
    ("wordlist-list", "post"): lambda w, d: {"name": "new-words", "department": _dept(w, d)},
    ("wordlist-import-words", "post"): lambda w, d: {"text": "敏感词\nsecret"},
    ("ai-label-api", "put"): lambda w, d: {"department": _dept(w, d), "enabled": False},
    ("user-password", "post"): lambda w, d: {"new_password": "another-horse-battery-7"},
    ("apikey-list", "post"): lambda w, d: {"name": "for-owner", "user": w.ids["user"][d]},
    ("node-maintenance", "post"): lambda w, d: {"enabled": True, "reason": "matrix"},
    ("gpuunit-assign", "post"): lambda w, d: {"units": [w.ids["gpuunit"][d]], "department": _dept(w, d)},
    ("gpuunit-move", "post"): lambda w, d: {"units": [w.ids["gpuunit"][d]], "department": _dept(w, d)},
    ("gpuunit-release", "post"): lambda w, d: {"units": [w.ids["gpuunit"][d]]},
    ("gpuquota-list", "post"): lambda w, d: {"department": _dept(w, d), "max_units": 2, "max_memory_gib": None},
    ("gpuquota-detail", "patch"): lambda w, d: {"max_units": 3},
    ("quota-list", "post"): lambda w, d: {"user": w.ids["user"][d], "tokens_per_day": 1000},
    ("quota-detail", "patch"): lambda w, d: {"tokens_per_day": 5000},
    ("deployment-list", "post"): lambda w, d: {
        "name": "matrix-dep",
        "profile": w.ids["profile"][d],
        "department": _dept(w, d),
        "start": False,
    },
    ("conversation-detail", "patch"): lambda w, d: {"title": "Renamed"},
    ("engineimage-detail", "put"): lambda w, d: {"engine": "llamacpp", "image": "appliance/llamacpp-cpu:custom"},
    ("engineimage-detail", "patch"): lambda w, d: {"engine": "llamacpp", "image": "appliance/llamacpp-cpu:custom"},
    ("nodeimage-import-image", "post"): lambda w, d: {"nodes": ["node-1"], "path": "x.tar"},
    ("profile-list", "post"): lambda w, d: {
        "slug": "matrix-profile",
        "name": "Matrix",
        "model": "smollm2-135m-instruct-q4_1",
        "engine": "llamacpp",
        "precision": "gguf",
        "nodes": 1,
        "gpus_per_node": 0,
    },
    ("profile-detail", "patch"): lambda w, d: {"name": "Renamed"},
    ("catalog-list", "post"): lambda w, d: {"slug": "matrix-model"},
    ("catalog-detail", "put"): lambda w, d: {"slug": "smollm2-135m-instruct-q4_1"},
    ("capacity-api", "post"): lambda w, d: {
        "model": "deepseek-r1-distill-qwen-7b",
        "gpu_count": 1,
        "memory_per_gpu_gib": 24,
    },
    ("capacity-api", "get"): lambda w, d: {
        "model": "deepseek-r1-distill-qwen-7b",
        "gpu_count": 1,
        "memory_per_gpu_gib": 24,
    },
    ("node-maintenance", "*"): lambda w, d: {"enabled": "on", "reason": "matrix"},
    ("gpu-assign", "post"): lambda w, d: {"action": "release", "units": [w.ids["gpuunit"][d]]},
    ("engine-image", "post"): lambda w, d: {"image": "appliance/llamacpp-cpu:custom"},
    ("deployment-on-demand", "post"): lambda w, d: {"on_demand": True, "idle_minutes": 30},
    ("word-list-import", "post"): lambda w, d: {"text": "敏感词", "default_action": "block"},
    ("ai-label", "post"): lambda w, d: {"department": _dept(w, d), "enabled": ""},
    ("user-reset-password", "post"): lambda w, d: {"new_password": "another-horse-battery-7"},
    ("sign-in-rule-action", "post"): lambda w, d: {"action": "delete"},
    ("signinrule-list", "post"): lambda w, d: {
        "source": "ldap",
        "value": "cn=y,dc=example,dc=cn",
        "role": "member",
        "department": _dept(w, d),
    },
    ("signinrule-detail", "patch"): lambda w, d: {"role": "department_admin"},
    ("sign-in-rules", "post"): lambda w, d: {
        "source": "ldap",
        "value": "cn=x,dc=example,dc=cn",
        "role": "member",
        "department_id": _dept(w, d),
    },
    ("usage-quota-set", "post"): lambda w, d: {"target": f"u:{w.ids['user'][d]}", "tokens_per_day": 1000},
}


def principal_user(world: World, principal: str, dept: str) -> User | None:
    if principal == "anonymous":
        return None
    if principal == "auditor":
        return world.users["eve"]
    return world.users[PRINCIPALS_BY_DEPARTMENT[dept][principal]]


# URL name -> (world kind, URL keyword) for routes naming one object.
API_OBJECT = {
    "department": "department", "user": "user", "apikey": "apikey", "auditrecord": "auditrecord",
    "node": "node", "gpu": "gpu", "gpuunit": "gpuunit", "gpuquota": "gpuquota", "profile": "profile",
    "quota": "quota", "usagerecord": "usagerecord", "deployment": "deployment", "imageimport": "imageimport",
    "nodeimage": "nodeimage", "conversation": "conversation", "wordlist": "wordlist", "safetyhit": "safetyhit",
    "signinrule": "signinrule",
}  # fmt: skip
PAGE_OBJECT = {
    "user-toggle-active": "user", "api-key-revoke": "apikey", "node-maintenance": "node", "gpu-detail": "gpu",
    "profile-detail": "profile", "profile-archive": "profile", "deployment-detail": "deployment",
    "deployment-action": "deployment",
    "deployment-on-demand": "deployment",
    "user-edit": "user", "user-reset-password": "user",
    "word-list-import": "wordlist", "word-list-toggle": "wordlist", "word-list-delete": "wordlist",
    "sign-in-rule-action": "signinrule",
    "usage-department": "department", "usage-export": "department", "usage-quota-set": "department",
}  # fmt: skip


def url_for(world: World, kind: str, name: str, pattern: str, dept: str) -> str:
    kwargs: dict[str, Any] = {}
    if "<slug>" in pattern or "<str:slug>" in pattern:
        kwargs["slug"] = "smollm2-135m-instruct-q4_1"
    if "<engine>" in pattern or "<str:engine>" in pattern:
        kwargs["engine"] = "llamacpp"
    if "<str:verb>" in pattern:
        kwargs["verb"] = "start"  # the world's deployments are stopped: start is the change that can succeed
    if "<pk>" in pattern or "<int:pk>" in pattern:
        obj = API_OBJECT[name.split("-")[0]] if kind == "api" else PAGE_OBJECT[name]
        kwargs["pk"] = world.ids[obj][dept]
    if name == "api-not-found":
        kwargs["rest"] = "v1/nothing-here/"
    if kind == "api":
        # API and page names overlap (deployment-detail, gpu-detail, …): resolve in the API's own URL conf.
        return "/api/v1/" + reverse(name, kwargs=kwargs, urlconf="console.api_urls").lstrip("/")
    return reverse(name, kwargs=kwargs)


def classify_http(kind: str, resp: Any) -> str:
    status = resp.status_code
    if status == 401:
        return LOGIN
    if status in (301, 302, 303):
        location = resp.get("Location", "")
        if "/login/" in location:
            return LOGIN
        errors = [m for m in get_messages(resp.wsgi_request) if m.level == constants.ERROR]
        return DENY if errors else OK
    if status == 403:
        return DENY
    if status == 404:
        return HIDE
    if status == 400:
        return INVALID
    if status < 300 or status == 409:
        return OK
    return f"HTTP{status}"


def call_http(world: World, kind: str, name: str, method: str, pattern: str, principal: str, dept: str) -> str:
    user = principal_user(world, principal, dept)
    url = url_for(world, kind, name, pattern, dept)
    body = BODIES.get((name, method), lambda w, d: {})(world, dept)
    with transaction.atomic():
        if kind == "api":
            client: Any = APIClient()
            if user is not None:
                client.force_authenticate(user)
            resp = getattr(client, method)(url, body, format="json") if method != "get" else client.get(url, body)
        else:
            client = Client()
            if user is not None:
                client.force_login(user)
            resp = client.get(url) if method == "get" else client.post(url, body)
        transaction.set_rollback(True)
    return classify_http(kind, resp)


async def _ws_outcome(path: str, cookie: str) -> str:
    from console.asgi import application  # the full ASGI stack: origin check, session auth, routing

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _code = await communicator.connect(timeout=10)
    await communicator.disconnect()
    return OK if connected else DENY


def call_ws(world: World, pattern: str, principal: str, dept: str) -> str:
    path = "/" + pattern.replace("<int:pk>", str(world.ids["deployment"][dept]))
    user = principal_user(world, principal, dept)
    cookie = ""
    if user is not None:
        client = Client()
        client.force_login(user)  # a real session, as a browser would hold
        cookie = f"sessionid={client.cookies['sessionid'].value}"
    outcome = async_to_sync(_ws_outcome)(path, cookie)
    return LOGIN if outcome == DENY and principal == "anonymous" else outcome


def all_routes() -> list[tuple[str, str, str, str]]:
    routes = [r for r in http_routes() if not r[3].startswith(tuple(EXEMPT_PREFIXES))]
    return routes + [("ws", pattern, "*", pattern) for pattern in ws_routes() if pattern not in EXEMPT_WS]


def expectation_keys(kind: str, name: str, method: str) -> list[tuple[str, str, str]]:
    if method != "*":
        return [(kind, name, method)] if (kind, name, method) in EXPECT else []
    return [key for key in EXPECT if key[0] == kind and key[1] == name]


def test_every_route_has_an_expectation() -> None:
    missing = [
        f"{kind} {name} {method}" for kind, name, method, _p in all_routes() if not expectation_keys(kind, name, method)
    ]
    assert not missing, "routes without an expectation in EXPECT (see the module docstring):\n" + "\n".join(missing)


def test_no_stale_expectation() -> None:
    known = {(k, n, m) for k, n, m, _p in all_routes()}
    known_names = {(k, n) for k, n, _m, _p in all_routes()}
    stale = [key for key in EXPECT if key not in known and (key[0], key[1]) not in known_names]
    assert not stale, f"expectations for routes that no longer exist: {stale}"


@pytest.fixture
def world(personas: dict[str, User], departments: dict[str, Department]) -> World:
    return build_world(personas, departments)


def observe(world: World) -> dict[tuple[str, str, str, str], tuple[str, ...]]:
    """(kind, name, method, department) -> observed outcome per principal."""
    observed: dict[tuple[str, str, str, str], tuple[str, ...]] = {}
    for kind, name, method, pattern in all_routes():
        default = ("post" if name in POST_PAGES else "get") if kind == "page" else method
        for key in expectation_keys(kind, name, method) or [(kind, name, default)]:
            if kind == "ws":
                continue
            for dept in OBJECT_DEPARTMENTS:
                row = tuple(
                    call_ws(world, pattern, p, dept)
                    if kind == "ws"
                    else call_http(world, kind, name, key[2], pattern, p, dept)
                    for p in PRINCIPALS
                )
                observed[(*key, dept)] = row
    return observed


def expected(kind: str, name: str, method: str, dept: str) -> Row | None:
    row = EXPECT.get((kind, name, method))  # a missing row fails test_every_route_has_an_expectation
    if row is None:
        return None
    return row[dept] if isinstance(row, dict) else row


def test_matrix(world: World) -> None:
    observed = observe(world)
    if os.environ.get("MATRIX_RECORD"):
        for (kind, name, method, dept), row in sorted(observed.items()):
            if dept == OBJECT_DEPARTMENTS[0]:
                other = observed[(kind, name, method, OBJECT_DEPARTMENTS[1])]
                note = "" if other == row else f"  # {OBJECT_DEPARTMENTS[1]}: {other}"
                print(f"    ({kind!r}, {name!r}, {method!r}): ({', '.join(row)}),{note}")
        return
    wrong = [
        f"{kind} {name} {method} on a {dept} object: expected {expected(kind, name, method, dept)}, got {row}"
        for (kind, name, method, dept), row in sorted(observed.items())
        if expected(kind, name, method, dept) != row
    ]
    assert not wrong, f"{len(wrong)} cells differ from the expectation (principals: {PRINCIPALS}):\n" + "\n".join(wrong)


@pytest.mark.django_db(transaction=True)
def test_websocket_matrix(personas: dict[str, User], departments: dict[str, Department]) -> None:
    # Consumers reach the database from a worker thread (database_sync_to_async), which needs committed rows.
    world = build_world(personas, departments)
    for pattern in ws_routes():
        if pattern in EXEMPT_WS:
            continue
        for dept in OBJECT_DEPARTMENTS:
            row = tuple(call_ws(world, pattern, p, dept) for p in PRINCIPALS)
            if os.environ.get("MATRIX_RECORD"):
                print(f"    ('ws', {pattern!r}, '*'): ({', '.join(row)}),  # {dept}")
                continue
            assert row == expected("ws", pattern, "*", dept), f"ws {pattern} on a {dept} object: {row}"


@pytest.mark.parametrize("key", [("api", "user-me", "get"), ("page", "users", "get"), ("ws", "ws/chat/", "*")])
def test_a_route_without_expectation_is_reported(monkeypatch: pytest.MonkeyPatch, key: tuple[str, str, str]) -> None:
    monkeypatch.delitem(EXPECT, key)
    method = key[2] if key[0] == "api" else r"\*"  # pages and sockets are listed by name
    with pytest.raises(AssertionError, match=f"{key[0]} {key[1]} {method}"):
        test_every_route_has_an_expectation()
