"""The engine adapter contract: a deployment request in, Docker container specs out.

Framework-free (the docker SDK's types and httpx, no Django), so deployment services, a Celery task
or a test can build and inspect the exact `client.containers.create(**kwargs)` arguments with no
engine image and no Docker daemon.
"""

from __future__ import annotations

import copy
import ipaddress
import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import httpx
from docker.types import DeviceRequest

from .flags import ExtraArgs
from .prompt import TemplateCost, measure

MODELS_MOUNT = "/models"
NS_PER_S = 1_000_000_000  # Docker healthcheck durations are nanoseconds
# json-file with rotation: an engine logging every request would otherwise fill an appliance's disk.
LOG_CONFIG: dict[str, Any] = {"type": "json-file", "config": {"max-size": "50m", "max-file": "5"}}
# The console restarts a failed engine itself, with backoff and an audit record; Docker restarting
# it behind the console's back would hide a crash loop.
RESTART_POLICY: dict[str, Any] = {"Name": "no"}
# Without GPUs a container must say so: CUDA base images (vLLM's, Ollama's) set
# NVIDIA_VISIBLE_DEVICES=all, and on a host whose default runtime is nvidia that alone exposes every
# GPU. "void" makes the NVIDIA runtime behave as runc (NVIDIA Container Toolkit user guide).
NO_GPU = "void"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EngineError(ValueError):
    """A request an engine cannot turn into a container; `field` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class ModelCreateError(Exception):
    """The engine refused to create the model; the message is the engine's own."""


class Progress(Protocol):
    """Where an engine reports a model's creation: milestones for people, and signs of life."""

    def event(self, text: str) -> None: ...

    def alive(self) -> None: ...


class Role(StrEnum):
    SINGLE = "single"
    RAY_HEAD = "ray-head"
    RAY_WORKER = "ray-worker"


class HealthState(StrEnum):
    READY = "ready"  # answers and serves the model
    LOADING = "loading"  # answers, but the model is not served yet
    NO_MODEL = "no-model"  # answers, and waits for the console to create the model through its API (Ollama)
    DOWN = "down"  # nothing answers: starting, stopped or crashed
    UNHEALTHY = "unhealthy"  # answers, wrongly


@dataclass(frozen=True)
class HealthResult:
    """One probe of an engine's HTTP API."""

    state: HealthState
    detail: str = ""
    models: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.state is HealthState.READY


@dataclass(frozen=True)
class EngineRequest:
    """Everything an engine adapter needs to describe one node's container(s) of a deployment.

    Exactly one of `model_path` (relative to `models_dir`, which is mounted read-only at /models)
    and `hf_model_id` (resolved offline from `models_dir`/hub, vLLM only) names the model. With
    `models_dir` None nothing is mounted and `model_path` is relative to the image's own /models.
    """

    deployment_id: str
    console_id: str
    node_name: str
    engine: str
    image: str
    served_model_name: str
    host_port: int
    model_path: str = ""
    hf_model_id: str = ""
    gpu_uuids: Sequence[str] = ()
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    quantization: str | None = None
    max_num_seqs: int | None = None
    n_gpu_layers: int | None = None
    parallel: int | None = None
    threads: int | None = None
    extra_args: ExtraArgs = ()
    env: Mapping[str, str] = field(default_factory=dict)
    models_dir: str | None = "/var/lib/appliance/models"
    role: Role = Role.SINGLE
    ray_head_address: str = ""  # the head node's address on the cluster network (ray-worker)
    node_ip: str = ""  # this node's address on the cluster network (ray roles)
    node_rank: int = 0
    bind_address: str = "127.0.0.1"  # host address the API is published on; the console fronts it
    reasoning_parser: str | None = None  # None: chosen from the model name; "": none
    template: str | None = None  # Ollama TEMPLATE
    user: str | None = None  # None keeps the image's user
    # The deployment's engine key: vLLM and llama.cpp refuse requests without it (Bearer). Passed in
    # the container's environment, never on its command line (which `ps` on the node shows).
    api_key: str = field(default="", repr=False)
    allowed_media_domains: Sequence[str] = ()  # hosts vLLM may fetch image_url from; none: nothing is fetched

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpu_uuids", tuple(self.gpu_uuids))
        object.__setattr__(self, "allowed_media_domains", tuple(self.allowed_media_domains))
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "env", dict(self.env))
        validate_request(self)

    @property
    def container_model_path(self) -> str:
        return posixpath.join(MODELS_MOUNT, self.model_path) if self.model_path else ""


def validate_request(req: EngineRequest) -> None:
    """Refuse what no engine could run; engine-specific checks live in each adapter."""
    _check_identity(req)
    _check_model(req)
    _check_numbers(req)
    _check_gpus(req.gpu_uuids)
    _check_cluster(req)
    _check_env(req.env)


def _check_identity(req: EngineRequest) -> None:
    for name in ("deployment_id", "console_id", "node_name"):
        if not _NAME.match(getattr(req, name)):
            raise EngineError(name, "1–63 letters, digits, '.', '_' or '-', starting with a letter or digit")
    for name in ("engine", "image", "served_model_name"):
        if not getattr(req, name).strip():
            raise EngineError(name, "must not be empty")


def _check_model(req: EngineRequest) -> None:
    if bool(req.model_path) == bool(req.hf_model_id):
        raise EngineError("model_path", "give exactly one of model_path and hf_model_id")
    path = req.model_path
    # The path is joined under /models: an absolute path or ".." would reach outside the mount.
    if path and (path.startswith("/") or ".." in path.split("/")):
        raise EngineError("model_path", "must be relative to models_dir, without '..'")
    if req.models_dir is not None and not req.models_dir.startswith("/"):
        raise EngineError("models_dir", "must be an absolute host path")


def _int_at_least(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    # bool is an int to Python; True tensor-parallel GPUs is a bug upstream, not a 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise EngineError(name, f"must be an integer ≥ {minimum}")
    if maximum is not None and value > maximum:
        raise EngineError(name, f"must be an integer ≤ {maximum}")


def _check_numbers(req: EngineRequest) -> None:
    _int_at_least("host_port", req.host_port, 1, 65535)
    _int_at_least("tensor_parallel", req.tensor_parallel, 1)
    _int_at_least("pipeline_parallel", req.pipeline_parallel, 1)
    _int_at_least("node_rank", req.node_rank, 0)
    for name in ("max_model_len", "max_num_seqs", "parallel", "threads"):
        if getattr(req, name) is not None:
            _int_at_least(name, getattr(req, name), 1)
    if req.n_gpu_layers is not None:
        _int_at_least("n_gpu_layers", req.n_gpu_layers, -1)  # -1: every layer
    util = req.gpu_memory_utilization
    if util is not None and (isinstance(util, bool) or not isinstance(util, int | float) or not 0 < util <= 1):
        raise EngineError("gpu_memory_utilization", "must be a fraction in (0, 1]")


def _check_gpus(uuids: Sequence[str]) -> None:
    # Indices, "all" or a comma would let a container reach GPUs the scheduler gave to someone else.
    for uuid in uuids:
        if not isinstance(uuid, str) or not _GPU_UUID.match(uuid):
            raise EngineError("gpu_uuids", f"{uuid!r} is not a GPU-… or MIG-… UUID")
    if len(set(uuids)) != len(uuids):
        raise EngineError("gpu_uuids", "lists a GPU twice")


def _check_cluster(req: EngineRequest) -> None:
    _check_ip("bind_address", req.bind_address)
    if req.role is Role.SINGLE:
        return
    _check_ip("node_ip", req.node_ip)
    if req.role is Role.RAY_WORKER:
        _check_ip("ray_head_address", req.ray_head_address)


def _check_ip(name: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise EngineError(name, f"{value!r} is not an IP address") from None


def _check_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not _ENV_NAME.match(key) or not isinstance(value, str):
            raise EngineError("env", f"{key!r} must be a variable name with a string value")


@dataclass
class ContainerSpec:
    """The arguments of one `client.containers.create(...)`, plus what the console needs to probe it.

    `container_port` is where the API listens inside the container (on the host itself under host
    networking); `health_path` and `models_path` are empty for a container with no HTTP API (a Ray
    worker), which is judged through its head.
    """

    name: str
    image: str
    command: list[str]
    labels: dict[str, str]
    environment: dict[str, str]
    container_port: int
    health_path: str
    models_path: str
    role: Role = Role.SINGLE
    metrics_path: str | None = None
    entrypoint: list[str] | None = None
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    device_requests: list[DeviceRequest] = field(default_factory=list)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    ipc_mode: str | None = None
    shm_size: str | None = None
    network_mode: str | None = None
    user: str | None = None
    healthcheck: dict[str, Any] | None = None
    log_config: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(LOG_CONFIG))
    restart_policy: dict[str, Any] = field(default_factory=lambda: dict(RESTART_POLICY))

    _ALWAYS: ClassVar[tuple[str, ...]] = ("name", "image", "command", "labels", "environment", "log_config")
    _IF_SET: ClassVar[tuple[str, ...]] = (
        *("restart_policy", "entrypoint", "ports", "device_requests", "volumes", "ipc_mode", "shm_size"),
        *("network_mode", "user", "healthcheck"),
    )

    def to_create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `client.containers.create(**kwargs)`; a fresh copy each call."""
        kwargs = {name: getattr(self, name) for name in self._ALWAYS}
        kwargs.update({name: getattr(self, name) for name in self._IF_SET if getattr(self, name)})
        return copy.deepcopy(kwargs)


class Engine(ABC):
    """One inference engine: how to run it in Docker and how to tell whether it serves.

    `health_check` probes the engine's HTTP API at `base_url` with the caller's httpx client (its
    timeouts apply) and never raises for a network failure: an engine that does not answer is DOWN,
    one that answers but has no model yet is LOADING, one that answers wrongly is UNHEALTHY. With
    `expect_model`, READY also requires the engine to list that model.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    default_image: ClassVar[str]
    container_port: ClassVar[int]
    health_path: ClassVar[str]
    models_path: ClassVar[str]
    metrics_path: ClassVar[str | None] = None
    # The engine's usage.prompt_tokens counts the whole prompt even when part of it was cached
    # (vLLM, llama-server). Ollama reports only what it evaluated, so its measurement can be low.
    counts_cached_prompt: ClassVar[bool] = True

    def template_cost(self, base_url: str, client: httpx.Client, model: str) -> TemplateCost | None:
        """What the chat template adds to a prompt, asked of the serving engine (None: it did not say)."""
        return measure(base_url, client, model)

    @abstractmethod
    def build_spec(self, req: EngineRequest) -> list[ContainerSpec]:
        """The container(s) this node runs for the request; validates the request first."""

    @abstractmethod
    def validate_extra_args(self, args: ExtraArgs) -> None:
        """Raise `FlagError` (a ValueError) naming unknown or console-owned flags and listing the known ones."""

    @abstractmethod
    def health_check(self, base_url: str, client: httpx.Client, *, expect_model: str | None = None) -> HealthResult:
        """Probe a running engine; see the class docstring for the states."""

    def create_model(
        self, base_url: str, client: httpx.Client, req: EngineRequest, model_file: str, progress: Progress
    ) -> None:
        """Give the engine its model from `model_file` (a host path) once it answers NO_MODEL; idempotent.

        Only engines whose health check can answer NO_MODEL implement it; raises ModelCreateError.
        """
        raise NotImplementedError(f"{self.name} loads its model itself")


def labels_for(req: EngineRequest) -> dict[str, str]:
    """Labels by which the console finds, and reconciles, the containers it owns."""
    return {
        "appliance.console": req.console_id,
        "appliance.deployment": req.deployment_id,
        "appliance.node": req.node_name,
        "appliance.engine": req.engine,
        "appliance.role": str(req.role),
    }


def container_name(req: EngineRequest) -> str:
    suffix = {Role.SINGLE: "", Role.RAY_HEAD: "-head", Role.RAY_WORKER: f"-worker{req.node_rank}"}[req.role]
    return f"appliance-{req.engine}-{req.deployment_id}{suffix}"


def device_requests_for(uuids: Sequence[str]) -> list[DeviceRequest]:
    """Exactly the scheduled GPUs, by UUID: never a count or "all", which would take whatever is free."""
    if not uuids:
        return []
    return [DeviceRequest(driver="nvidia", device_ids=list(uuids), capabilities=[["gpu"]])]


def gpu_environment(uuids: Sequence[str]) -> dict[str, str]:
    return {"NVIDIA_VISIBLE_DEVICES": ",".join(uuids) if uuids else NO_GPU}


def model_volumes(req: EngineRequest) -> dict[str, dict[str, str]]:
    if req.models_dir is None:
        return {}
    return {req.models_dir: {"bind": MODELS_MOUNT, "mode": "ro"}}


def published_port(req: EngineRequest, container_port: int) -> dict[str, tuple[str, int]]:
    return {f"{container_port}/tcp": (req.bind_address, req.host_port)}


def merge_env(managed: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The request's env on top of the adapter's, refusing to override what the adapter owns."""
    clash = sorted(set(managed) & set(extra))
    if clash:
        raise EngineError("env", f"set by the console, not overridable: {', '.join(clash)}")
    return {**managed, **extra}


def healthcheck(test: list[str], *, start_period_s: int, interval_s: int = 30) -> dict[str, Any]:
    """Docker's own healthcheck, so `docker ps` agrees with the console; start_period covers loading."""
    return {
        "test": ["CMD", *test],
        "interval": interval_s * NS_PER_S,
        "timeout": 5 * NS_PER_S,
        "retries": 3,
        "start_period": start_period_s * NS_PER_S,
    }


def http_probe_command(
    port: int, path: str, *, python: str = "python3", host: str = "127.0.0.1", key_variable: str = ""
) -> list[str]:
    # urlopen raises on a refused connection or a non-2xx status, so the exit code is the verdict.
    url = f"http://{host}:{port}{path}"
    if not key_variable:
        return [python, "-c", f"import urllib.request as u; u.urlopen('{url}', timeout=4)"]
    # The key is read from the container's environment when the probe runs, so it is not written
    # into the healthcheck that `docker inspect` shows next to it.
    auth = f"{{'Authorization': 'Bearer ' + os.environ.get('{key_variable}', '')}}"
    script = f"import os, urllib.request as u; u.urlopen(u.Request('{url}', headers={auth}), timeout=4)"
    return [python, "-c", script]


def require_api_key(req: EngineRequest, engine: str) -> None:
    if not req.api_key:
        raise EngineError("api_key", f"{engine} is given the deployment's engine key; none was set")


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def connect_host(bind_address: str) -> str:
    """The host to reach an API published on `bind_address` from the node itself (URL form)."""
    address = ipaddress.ip_address(bind_address)
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return f"[{address}]" if address.version == 6 else str(address)


def probe(client: httpx.Client, base_url: str, path: str) -> httpx.Response | None:
    """GET base_url + path; None when nothing answers (refused, reset, timed out)."""
    try:
        return client.get(base_url.rstrip("/") + path)
    except httpx.TransportError:
        return None


def down(base_url: str, path: str) -> HealthResult:
    return HealthResult(HealthState.DOWN, f"no answer from {base_url.rstrip('/')}{path}")


def unexpected(resp: httpx.Response) -> HealthResult:
    return HealthResult(HealthState.UNHEALTHY, f"{resp.request.url.path} answered HTTP {resp.status_code}")


def openai_model_ids(resp: httpx.Response) -> tuple[str, ...]:
    """The ids in an OpenAI `/v1/models` answer; () for anything that is not one."""
    try:
        data = resp.json().get("data", [])
    except (ValueError, AttributeError):
        return ()
    return tuple(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)


def serving(models: tuple[str, ...], expect_model: str | None) -> HealthResult:
    """READY when the engine lists `expect_model` (or nothing was expected), else it serves the wrong one."""
    if expect_model is not None and expect_model not in models:
        listed = ", ".join(models) or "no model"
        return HealthResult(HealthState.UNHEALTHY, f"serves {listed}, not {expect_model}", models)
    return HealthResult(HealthState.READY, "", models)
