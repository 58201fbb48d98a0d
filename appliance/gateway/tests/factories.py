"""Deployments that point at local test servers: rows in state running, as the lifecycle leaves them."""

from __future__ import annotations

import itertools

from django.db import transaction

from appliance.accounts.models import Department, User
from appliance.accounts.services import create_api_key
from appliance.catalog.models import Profile, ProfileVersion
from appliance.deployments.choices import State
from appliance.deployments.models import Deployment, Instance
from appliance.gpus.models import Node

_serial = itertools.count(1)


def _profile_version() -> ProfileVersion:
    profile, _ = Profile.objects.get_or_create(slug="gateway-test", defaults={"name": "Gateway test"})
    version = ProfileVersion.objects.filter(profile=profile).first()
    if version is None:
        version = ProfileVersion.objects.create(
            profile=profile,
            number=1,
            model="smollm2-135m-instruct",
            engine="llamacpp",
            gpus_per_node=0,
            max_model_len=2048,
        )
    return version


def _node() -> Node:
    node, _ = Node.objects.get_or_create(name="gw-node", defaults={"hostname": "gw-node"})
    return node


def running_deployment(
    department: Department, created_by: User, served_model_name: str, ports: list[int], *, engine: str = "llamacpp"
) -> Deployment:
    """A running deployment with one running instance per port, each listening on 127.0.0.1."""
    n = next(_serial)
    deployment = Deployment.objects.create(
        name=f"gw-{n}-{served_model_name}"[:64],
        department=department,
        profile_version=_profile_version(),
        engine=engine,
        model_slug="smollm2-135m-instruct",
        served_model_name=served_model_name,
        image="test",
        replicas=len(ports),
        state=State.RUNNING,
        created_by=created_by,
    )
    node = _node()
    for replica, port in enumerate(ports):
        Instance.objects.create(
            deployment=deployment,
            replica=replica,
            node=node,
            state=State.RUNNING,
            container_name=f"gw-{n}-{replica}",
            host_port=port,
            endpoint_host="127.0.0.1",
        )
    return deployment


def api_key(user: User) -> str:
    with transaction.atomic():
        _key, secret = create_api_key(user, name=f"gw-{next(_serial)}")
    return secret
