"""Deployments whose one running instance is a test engine on 127.0.0.1, as the lifecycle leaves them."""

from __future__ import annotations

import itertools

from appliance.accounts.models import Department, User
from appliance.catalog.models import Profile, ProfileVersion
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Instance
from appliance.gpus.models import Node

_serial = itertools.count(1)
SMOLLM2 = "smollm2-135m-instruct-q4_1"
R1_DISTILL = "deepseek-r1-distill-qwen-7b"


def profile_version(chat_defaults: dict[str, float] | None = None) -> ProfileVersion:
    n = next(_serial)
    profile = Profile.objects.create(slug=f"chat-test-{n}", name=f"Chat test {n}")
    return ProfileVersion.objects.create(
        profile=profile, number=1, model=SMOLLM2, engine="llamacpp", gpus_per_node=0, max_model_len=8192,
        **({"chat_defaults": chat_defaults} if chat_defaults is not None else {}),
    )  # fmt: skip


def running_deployment(
    department: Department | None,
    created_by: User,
    served_model_name: str,
    port: int,
    *,
    model_slug: str = SMOLLM2,
    chat_defaults: dict[str, float] | None = None,
) -> Deployment:
    assert department is not None
    n = next(_serial)
    deployment = Deployment.objects.create(
        name=f"chat-{n}", department=department, profile_version=profile_version(chat_defaults), engine="llamacpp",
        model_slug=model_slug, served_model_name=served_model_name, image="test", state=State.RUNNING,
        created_by=created_by,
    )  # fmt: skip
    node, _ = Node.objects.get_or_create(name="chat-node", defaults={"hostname": "chat-node"})
    Instance.objects.create(
        deployment=deployment, node=node, state=State.RUNNING, container_name=f"chat-{n}-0", host_port=port,
        endpoint_host="127.0.0.1",
    )  # fmt: skip
    return deployment
