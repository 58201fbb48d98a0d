"""Shared fixtures: personas (platform admin, department admin, member, outsider, auditor) and clients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from django.db import transaction
from django.test import override_settings
from rest_framework.test import APIClient

from appliance.accounts.choices import Role
from appliance.accounts.models import Department, User
from appliance.accounts.services import create_api_key
from tests.served import served_database_url  # the consoles' and workers' DATABASE_URL; tests import it from here

PASSWORD = "correct-horse-battery-9"

# Playwright runs an event loop in the test thread; Django's ORM must still be callable there. Only here:
# consoles the tests start (tests/served.py) do not inherit it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    """Asynchronous tests on the event loop the console serves with (``manage.py serve``: uvloop), which
    differs from asyncio's in places the code relies on (a timer set for a moment already past)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """What a process keeps for a few seconds (routes, quota scopes, word lists) starts empty in each test:
    ids of rolled-back rows come back in the next test."""
    from appliance.core import ttlcache

    ttlcache.clear_all()


@pytest.fixture(autouse=True, scope="session")
def _static_names_without_collecting() -> Iterator[None]:
    """Pages rendered in this process name static files as they are: no manifest to collect first. The
    consoles the tests start serve them as deployed (hashed, from the collected manifest)."""
    plain = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=plain):
        yield


@pytest.fixture
def console_env() -> dict[str, str]:
    """Settings for the console ``console_url`` starts, beside the test database; a test module may override it."""
    return {}


@pytest.fixture
def console_url(transactional_db: Any, tmp_path: Path, console_env: dict[str, str]) -> Iterator[str]:
    """The console as `make run` serves it (``manage.py serve``, 2 workers) on the test database."""
    from tests.served import served_console, served_env

    env = served_env(DATABASE_URL=served_database_url(), CONSOLE_ENV="test", CONSOLE_LOG_LEVEL="WARNING", **console_env)
    with served_console(tmp_path / "console.log", env) as (url, _proc):
        yield url


def make_department(code: str, name: str, parent: Department | None = None) -> Department:
    dept = Department.objects.create(code=code, name=name, parent=parent)
    dept.path = f"{parent.path if parent else '/'}{dept.pk}/"
    dept.save(update_fields=["path"])
    return dept


def make_user(username: str, role: str, department: Department | None) -> User:
    user = User(username=username, role=role, department=department, display_name=username.title())
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def departments(db: Any) -> dict[str, Department]:
    eng = make_department("eng", "研发部")
    eng_ml = make_department("eng-ml", "算法组", eng)
    fin = make_department("fin", "财务部")
    return {"eng": eng, "eng_ml": eng_ml, "fin": fin}


@pytest.fixture
def personas(departments: dict[str, Department]) -> dict[str, User]:
    return {
        "root": make_user("root", Role.PLATFORM_ADMIN, None),
        "alice": make_user("alice", Role.DEPARTMENT_ADMIN, departments["eng"]),
        "bob": make_user("bob", Role.MEMBER, departments["eng"]),
        "carol": make_user("carol", Role.MEMBER, departments["eng_ml"]),
        "charlie": make_user("charlie", Role.MEMBER, departments["fin"]),
        "dave": make_user("dave", Role.DEPARTMENT_ADMIN, departments["fin"]),
        "eve": make_user("eve", Role.AUDITOR, None),
    }


@pytest.fixture
def api_as(personas: dict[str, User]) -> Callable[[str], APIClient]:
    def client_for(name: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(personas[name])
        return client

    return client_for


@pytest.fixture
def bearer_for(personas: dict[str, User]) -> Callable[[str], APIClient]:
    def client_for(name: str) -> APIClient:
        with transaction.atomic():
            _key, secret = create_api_key(personas[name], name=f"{name}-test")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return client_for


@pytest.fixture
def seeded_profiles(db: Any) -> None:
    """The seeded SKU profiles; a transactional test's flush removes the migration's rows."""
    from appliance.catalog.models import Profile, ProfileVersion
    from appliance.catalog.seeds import seed_profiles

    seed_profiles(Profile, ProfileVersion)


# Live tests (Docker, Celery workers, Chromium, slapd and the OIDC provider) that skip hide a missing install
# step: `make test` fails on them unless APPLIANCE_ALLOW_LIVE_SKIPS=1 says a partial run is meant.
LIVE_MARKERS = ("docker", "browser", "integration", "directory")
_skipped_live: list[str] = []


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    skipped = call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception)
    if skipped and call.when in ("setup", "call") and any(item.get_closest_marker(name) for name in LIVE_MARKERS):
        _skipped_live.append(f"{item.nodeid}: {call.excinfo.value if call.excinfo else ''}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_live and os.environ.get("APPLIANCE_ALLOW_LIVE_SKIPS") != "1":
        print(f"\n{len(_skipped_live)} live test(s) skipped; failing the run (APPLIANCE_ALLOW_LIVE_SKIPS=1 allows it):")
        for line in _skipped_live:
            print(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
