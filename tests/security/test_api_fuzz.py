"""Property-based fuzzing of the REST API with schemathesis, as each role (issue 12, item 10).

The schema is fetched from ``/api/schema/`` as a signed-in platform admin (it may sit behind login);
every operation is then called through Django's WSGI handler as anonymous, platform admin, department
admin, member and auditor, with data that fits the schema and data that does not, and path ids that are
either random or real objects of the populated world. Each case must:

- never be a server error (5xx);
- answer with a status code the schema documents for that operation;
- answer with a documented content type and a body that matches the documented schema.

Every failure is collected (the run does not stop at the first) and reported together. Each case runs in
a savepoint that is rolled back, so the world stays the same for every case and the run is repeatable:
``derandomize`` makes Hypothesis draw the same cases on every run. ``FUZZ_MAX_EXAMPLES`` (default below)
sets the cases per operation, mode and role; raise it locally for a deeper run.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, transaction
from django.test import Client
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from appliance.accounts.models import Department, User
from appliance.accounts.services import create_api_key
from tests.security.world import OBJECT_DEPARTMENTS, World, build_world

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

# Cases per operation, generation mode (valid / invalid data) and id source (random / real): about
# 3,700 requests, about two minutes for all roles on two cores. Anonymous requests all end at
# the 401 gate, so fewer are needed there.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "3"))
ANONYMOUS_EXAMPLES = min(MAX_EXAMPLES, 2)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Role -> persona whose API key the role's requests carry (None: no credentials).
ROLES = {
    "anonymous": None,
    "platform_admin": "root",
    "department_admin": "alice",
    "member": "carol",
    "auditor": "eve",
}
# The first path segment after /api/v1/ -> the kind of object in the world its id names.
KIND_OF_SEGMENT = {
    "departments": "department",
    "users": "user",
    "api-keys": "apikey",
    "audit-log": "auditrecord",
    "nodes": "node",
    "gpus": "gpu",
    "gpu-units": "gpuunit",
    "gpu-quotas": "gpuquota",
    "profiles": "profile",
    "quotas": "quota",
    "usage": "usagerecord",
    "deployments": "deployment",
    "images/imports": "imageimport",
    "images": "nodeimage",
    "conversations": "conversation",
    "sso/rules": "signinrule",
}


@dataclass
class Run:
    role: str
    headers: dict[str, str]
    operations: int = 0
    cases: int = 0
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    last_exception: list[str] = field(default_factory=list)


@contextmanager
def keeping_the_connection() -> Iterator[None]:
    """As Django's test client does: the request signals must not close the connection that holds the
    test's transaction (close_old_connections closes any connection not in autocommit mode). The test
    client reconnects the receivers after each of its requests, so this wraps the fuzz run only."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def fetch_schema(user: User) -> dict[str, Any]:
    client = Client()
    client.force_login(user)
    resp = client.get("/api/schema/", {"format": "json"}, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert resp.status_code == 200, resp.content[:500]
    return json.loads(resp.content)


def real_ids(world: World, path: str) -> dict[str, st.SearchStrategy[Any]] | None:
    """Path parameters naming real objects of the world, for operations on one object."""
    match = re.match(r"^/api/v1/(images/imports|sso/rules|[a-z-]+(?:/models)?)/\{(\w+)\}", path)
    if not match:
        return None
    segment, name = match.groups()
    if segment == "catalog":
        return {name: st.just("smollm2-135m-instruct-q4_1")}
    if segment == "engine-images":
        return {name: st.sampled_from(["llamacpp", "vllm", "ollama"])}
    kind = KIND_OF_SEGMENT.get(segment)
    if kind is None or kind not in world.ids:
        return None
    return {name: st.sampled_from([world.ids[kind][d] for d in OBJECT_DEPARTMENTS])}


def strategies(op: Any, world: World) -> Iterator[st.SearchStrategy[Any]]:
    """Schema-valid and schema-violating cases, each with random path ids and with ids of real objects."""
    real = real_ids(world, op.path)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        yield op.as_strategy(generation_mode=mode)
        if real is not None:

            def with_ids(ids: dict[str, Any], mode: GenerationMode = mode) -> st.SearchStrategy[Any]:
                return op.as_strategy(generation_mode=mode, path_parameters=ids)

            yield st.fixed_dictionaries(real).flatmap(with_ids)


def run_case(run: Run, op: Any, case: Any) -> None:
    run.cases += 1
    run.last_exception.clear()
    with transaction.atomic():
        try:
            case.call_and_validate(headers=run.headers, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # failed checks are collected and the run goes on
            for failure in getattr(exc, "exceptions", [exc]):
                key = (op.label, getattr(failure, "title", type(failure).__name__))
                if key not in run.failures:
                    detail = "".join(run.last_exception[-1:])[-1500:]
                    request = f"{case.method} {case.formatted_path} query={case.query} body={case.body!r:.300}"
                    run.failures[key] = f"{request}\n{str(failure)[:1500]}\n{detail}"
        finally:
            transaction.set_rollback(True)


def fuzz_operation(run: Run, op: Any, world: World) -> None:
    run.operations += 1
    for strategy in strategies(op, world):

        @hypothesis.settings(
            max_examples=ANONYMOUS_EXAMPLES if run.role == "anonymous" else MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=strategy)
        def examples(case: Any) -> None:
            run_case(run, op, case)

        try:
            examples()
        except hypothesis.errors.Unsatisfiable:
            pass


def _record_exception(run: Run) -> Callable[..., None]:
    def receiver(sender: Any, request: Any = None, **kwargs: Any) -> None:
        run.last_exception.append(traceback.format_exc())

    return receiver


@pytest.mark.parametrize("role", list(ROLES))
def test_api_fuzz(
    role: str,
    personas: dict[str, User],
    departments: dict[str, Department],
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = build_world(personas, departments)
    raw = fetch_schema(personas["root"])
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = WSGIHandler()
    headers: dict[str, str] = {}
    persona = ROLES[role]
    if persona:
        with transaction.atomic():
            _key, secret = create_api_key(personas[persona], name=f"fuzz-{role}")
        headers["Authorization"] = f"Bearer {secret}"
    run = Run(role=role, headers=headers)
    receiver = _record_exception(run)
    signals.got_request_exception.connect(receiver)
    started = time.monotonic()
    try:
        with keeping_the_connection():
            only = re.compile(os.environ.get("FUZZ_OPERATIONS", ""))
            for result in schema.get_all_operations():
                op = result.ok()  # type: ignore[union-attr]
                if only.search(op.label):
                    fuzz_operation(run, op, world)
    finally:
        signals.got_request_exception.disconnect(receiver)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nfuzz {role}: {run.operations} operations, {run.cases} cases, "
            f"{len(run.failures)} distinct failures, {elapsed:.1f} s"
        )
    report = "\n\n".join(f"== {label} [{kind}]\n{text}" for (label, kind), text in sorted(run.failures.items()))
    assert not run.failures, f"{len(run.failures)} distinct failures (operation, kind) as {role}:\n{report}"
