"""One chat answer, one request id: the same in the console's log line, the engine's request and the records."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async

from appliance.accounts.models import User
from appliance.chat.tests.fake_engine import FakeEngine, Script
from appliance.chat.tests.test_safety import word_list
from appliance.chat.tests.wsclient import finish, open_socket, send
from appliance.core.context import RequestIdLogFilter
from appliance.deployments.models import Deployment
from appliance.quotas.drain import drain
from appliance.quotas.models import UsageRecord
from appliance.safety.models import SafetyHit

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class Lines(logging.Handler):
    """The generation's log records, with the request id the console's log handler adds (settings.LOGGING).

    Not caplog: the first socket of a test run imports console.asgi, whose Django setup reconfigures
    logging and drops the handlers added to the root logger before."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(RequestIdLogFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger, handler = logging.getLogger("appliance.chat.generation"), Lines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_an_answers_request_id_is_in_the_log_the_engine_request_and_the_records(
    personas: dict[str, User], engine: FakeEngine, eng_model: Deployment, lines: Lines
) -> None:
    await word_list(personas["alice"], personas["bob"].department_id, "hello\trecord\n")
    socket = await open_socket(personas["bob"])
    for text in ("hi", "again"):  # two answers on one socket: an id each
        engine.default = Script(content=["Hello", f" {text}"])
        await send(socket, engine.model, text)
        await finish(socket)
    await socket.disconnect()
    await sync_to_async(drain)()

    logged = [r.request_id for r in lines.records if r.getMessage().startswith("chat: answer ")]  # type: ignore[attr-defined]
    sent = engine.seen.request_ids
    used = [r async for r in UsageRecord.objects.order_by("created_at", "id").values_list("request_id", flat=True)]
    hits = [r async for r in SafetyHit.objects.order_by("id").values_list("request_id", flat=True)]
    assert len(set(sent)) == 2 and all(len(rid) == 32 for rid in sent)
    assert logged == sent == used == hits
