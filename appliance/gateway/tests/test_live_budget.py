"""Issue 12: under 500 parallel chats against a live engine, the settled total never exceeds the budget.

Before the fix, 500 chats ("hi", max_tokens 16) against tokens_per_day 2,000 admitted 95 whose usage
came to 2,280 tokens: the reservation guessed 5 prompt tokens where the chat template made 20-30.
Needs Docker and the CPU engine image (appliance/llamacpp-cpu, llama-server); skipped without them.
The template cost is measured on the engine as the node worker does when a deployment comes up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from appliance.accounts.models import User
from appliance.deployments.models import Instance
from appliance.deployments.node import measured_template
from appliance.engines import LlamaServerEngine
from appliance.engines.flags import LLAMACPP_IMAGE
from appliance.gateway.tests.conftest import free_port
from appliance.gateway.tests.factories import api_key, running_deployment
from appliance.quotas import drain
from appliance.quotas.models import Quota, UsageRecord

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

BUDGET, REQUESTS, MAX_TOKENS = 2000, 500, 16
# Daphne (Twisted) listens with a backlog of 50: 500 connections opened at once are reset. The 500
# requests are all started together and share 64 kept-alive connections, so refused ones recycle
# their connection in a millisecond while the admitted ones race for the budget's last tokens.
CONNECTIONS = 64


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    try:
        client = docker.from_env()
        client.ping()
        image = client.images.get(LLAMACPP_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{LLAMACPP_IMAGE} is not built (deploy/engine-image/)")
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    # The image's own port: llama-server's 8080 in the rebuilt image, 8000 in the llama-cpp-python one.
    port, inside = free_port(), next(iter(image.attrs["Config"]["ExposedPorts"])).split("/")[0]
    container = client.containers.run(
        LLAMACPP_IMAGE, detach=True, name=f"budget-live-{uuid.uuid4().hex[:8]}",
        ports={f"{inside}/tcp": ("127.0.0.1", port)}, labels={"appliance.test": "gateway"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the engine did not start: {container.logs(tail=30).decode(errors='replace')}")
        yield url
    finally:
        container.remove(force=True)
        client.close()


async def _burst(base_url: str, key: str, model: str) -> list[int]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS}
        headers = {"Authorization": f"Bearer {key}"}
        answers = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=body, headers=headers) for _ in range(REQUESTS))
        )
    return [a.status_code for a in answers]


def test_500_parallel_chats_never_settle_past_the_budget(
    gateway_url: str, engine_url: str, personas: dict[str, User]
) -> None:
    model = httpx.get(f"{engine_url}/v1/models").json()["data"][0]["id"]
    engine = LlamaServerEngine()
    with httpx.Client(timeout=60) as client:
        cost = measured_template(engine, engine_url, client, model)
    assert cost is not None and cost.template > 5  # SmolLM2's template: a system prompt and role markers
    port = int(engine_url.rsplit(":", 1)[1])
    dep = running_deployment(personas["bob"].department, personas["root"], model, [port])  # type: ignore[arg-type]
    Instance.objects.filter(deployment=dep).update(template_tokens=cost.template, message_tokens=cost.per_message)
    Quota.objects.create(department=personas["bob"].department, tokens_per_day=BUDGET)

    statuses = asyncio.run(_burst(gateway_url, api_key(personas["bob"]), model))

    drain.drain()
    records = list(UsageRecord.objects.filter(user=personas["bob"], status="ok"))
    settled = sum(r.total_tokens for r in records)
    print(f"admitted {statuses.count(200)}, refused {statuses.count(429)}, settled {settled} of {BUDGET}")
    assert statuses.count(200) == len(records) > 0 and statuses.count(429) > 0
    assert set(statuses) <= {200, 429}
    assert settled <= BUDGET
