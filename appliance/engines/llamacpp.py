"""llama.cpp, in two servers that differ in flags, port and health route.

- `llama-server`, llama.cpp's own C++ server (`-m`, `-c`, `-ngl`, `-np`), port 8080, `/health`
  answering 503 while the model loads and 200 once it serves. Two images run it: upstream
  `ghcr.io/ggml-org/llama.cpp:server[-cuda]`, and the appliance's CPU image `appliance/llamacpp-cpu`
  (deploy/engine-image/: the prebuilt xllamacpp wheel behind upstream's command line). This is the default.
- llama-cpp-python 0.3.36's `python -m llama_cpp.server`, for an image whose repository is named
  `llama-cpp-python`: flags are its settings' field names (`--n_ctx`); no /health route and no parallel
  slots (one request at a time), so readiness is `/v1/models`.

`llamacpp_engine_for(image)` picks the variant. Without GPUs every layer stays on the CPU whatever
`n_gpu_layers` says, so a plan made for a GPU node still builds on a CPU or simulated one.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import httpx

from .base import (
    ContainerSpec,
    Engine,
    EngineError,
    EngineRequest,
    HealthResult,
    HealthState,
    Role,
    container_name,
    device_requests_for,
    down,
    gpu_environment,
    healthcheck,
    http_probe_command,
    labels_for,
    merge_env,
    model_volumes,
    openai_model_ids,
    probe,
    published_port,
    require_api_key,
    serving,
    unexpected,
)
from .flags import (
    LLAMA_CPP_PYTHON_FLAGS,
    LLAMA_CPP_PYTHON_VERSION,
    LLAMA_SERVER_FLAGS,
    LLAMA_SERVER_IMAGE,
    LLAMA_SERVER_VERSION,
    LLAMACPP_IMAGE,
    ExtraArgs,
    FlagTable,
    check_flags,
    exact_flag_name,
    llama_server_flag_name,
    render_args,
)
from .registry import LLAMACPP

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - inside the container; the host side binds req.bind_address
LOAD_SECONDS = 1800  # a 131 GB dynamic quant of R1 takes minutes to map and warm
UNUSED_FIELDS = ("hf_model_id", "gpu_memory_utilization", "dtype", "quantization", "max_num_seqs", "template")


class _LlamaCpp(Engine):
    """What both llama.cpp servers share: one node, one GGUF, an OpenAI-compatible API."""

    name = LLAMACPP.name
    version = LLAMA_CPP_PYTHON_VERSION
    models_path = "/v1/models"
    variant: ClassVar[str]
    entrypoint: ClassVar[tuple[str, ...]]
    flags: ClassVar[FlagTable]
    managed: ClassVar[frozenset[str]]
    key_variable: ClassVar[str]  # the environment variable the server reads its API key from

    def build_spec(self, req: EngineRequest) -> list[ContainerSpec]:
        self._validate(req)
        spec = ContainerSpec(
            name=container_name(req),
            image=req.image,
            entrypoint=list(self.entrypoint),
            command=[*self.server_args(req), *render_args(req.extra_args, self.flags, self.flag_name)],
            labels=labels_for(req),
            environment=merge_env({**gpu_environment(req.gpu_uuids), self.key_variable: req.api_key}, req.env),
            container_port=self.container_port,
            health_path=self.health_path,
            models_path=self.models_path,
            metrics_path=self.metrics_path,
            ports=published_port(req, self.container_port),
            device_requests=device_requests_for(req.gpu_uuids),
            volumes=model_volumes(req),
            user=req.user,
            healthcheck=healthcheck(self.probe_command(), start_period_s=LOAD_SECONDS),
        )
        return [spec]

    def validate_extra_args(self, args: ExtraArgs) -> None:
        check_flags(args, self.flags, engine=self.variant, managed=self.managed, normalise=self.flag_name)

    @abstractmethod
    def flag_name(self, token: str) -> str:
        """The option a command-line token names, as the server's parser reads it."""

    @abstractmethod
    def server_args(self, req: EngineRequest) -> list[str]:
        """The server's arguments derived from the request's fields."""

    @abstractmethod
    def probe_command(self) -> list[str]:
        """Docker's in-container healthcheck, with a client the image has."""

    def _validate(self, req: EngineRequest) -> None:
        if req.engine != self.name:
            raise EngineError("engine", f"{req.engine!r} is not {self.name}")
        if req.role is not Role.SINGLE:
            raise EngineError("role", "llama.cpp runs on one node")
        if req.tensor_parallel != 1 or req.pipeline_parallel != 1:
            raise EngineError("tensor_parallel", "llama.cpp splits layers across its GPUs by itself: leave it at 1")
        for name in UNUSED_FIELDS:
            if getattr(req, name):
                raise EngineError(name, "llama.cpp does not use it")
        if not req.model_path.endswith(".gguf"):
            raise EngineError("model_path", "llama.cpp is given a .gguf file")
        require_api_key(req, self.variant)
        self.validate_extra_args(req.extra_args)


class LlamaCppPythonEngine(_LlamaCpp):
    """`python -m llama_cpp.server` (llama-cpp-python 0.3.36, llama_cpp/server/settings.py)."""

    container_port = 8000
    health_path = "/v1/models"  # no /health route in llama_cpp/server/app.py
    metrics_path = None
    flags = LLAMA_CPP_PYTHON_FLAGS
    managed = frozenset(
        {"--model", "--model_alias", "--host", "--port", "--n_ctx", "--n_gpu_layers", "--n_threads"}
        | {"--interrupt_requests", "--api_key"}
    )
    # pydantic-settings: ServerSettings.api_key is read from API_KEY (llama_cpp/server/settings.py).
    key_variable = "API_KEY"
    default_image = LLAMACPP_IMAGE

    variant = f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}"
    entrypoint = ("python", "-m", "llama_cpp.server")

    def flag_name(self, token: str) -> str:
        return exact_flag_name(token)

    def server_args(self, req: EngineRequest) -> list[str]:
        if req.parallel not in (None, 1):
            raise EngineError("parallel", "llama-cpp-python's server serves one request at a time")
        args = ["--model", req.container_model_path, "--model_alias", req.served_model_name]
        args += ["--host", ALL_INTERFACES, "--port", str(self.container_port)]
        args += _optional(
            {"--n_ctx": req.max_model_len, "--n_gpu_layers": _gpu_layers(req), "--n_threads": req.threads}
        )
        # With the default (true) a queued request cuts the running stream short (see the image's CMD).
        return [*args, "--interrupt_requests", "false"]

    def probe_command(self) -> list[str]:
        # Every route of this server wants the key once it has one, /v1/models included.
        return http_probe_command(
            self.container_port, self.health_path, python="python", key_variable=self.key_variable
        )

    def health_check(self, base_url: str, client: httpx.Client, *, expect_model: str | None = None) -> HealthResult:
        # The server loads the model before it listens, so a 200 here means it serves.
        resp = probe(client, base_url, self.models_path)
        if resp is None:
            return down(base_url, self.models_path)
        if resp.status_code != httpx.codes.OK:
            return unexpected(resp)
        return serving(openai_model_ids(resp), expect_model)


class LlamaServerEngine(_LlamaCpp):
    """`llama-server` (flags from tools/server/README.md; upstream's images and the appliance's CPU image)."""

    container_port = 8080
    health_path = "/health"
    metrics_path = "/metrics"  # served because the command passes --metrics
    flags = LLAMA_SERVER_FLAGS
    managed = frozenset(
        {"--model", "--alias", "--host", "--port", "--ctx-size", "--gpu-layers", "--parallel", "--threads"}
        | {"--api-key", "--api-key-file"}
    )
    # common/arg.cpp: --api-key is also read from LLAMA_API_KEY (deploy/engine-image/llama_server.py
    # does the same for our CPU image); /health stays public.
    key_variable = "LLAMA_API_KEY"
    default_image = LLAMA_SERVER_IMAGE
    version = LLAMA_SERVER_VERSION

    variant = "llama-server"
    entrypoint = ("/app/llama-server",)  # the ENTRYPOINT of the server stage of .devops/*.Dockerfile

    def flag_name(self, token: str) -> str:
        return llama_server_flag_name(token)

    def server_args(self, req: EngineRequest) -> list[str]:
        args = ["-m", req.container_model_path, "--alias", req.served_model_name]
        args += ["--host", ALL_INTERFACES, "--port", str(self.container_port), "--metrics"]
        layers = _gpu_layers(req)
        # llama-server spells "every layer" as "all"; -1 is llama-cpp-python's spelling.
        ngl = "all" if layers == -1 else layers
        return args + _optional({"-c": req.max_model_len, "-ngl": ngl, "-np": req.parallel, "-t": req.threads})

    def probe_command(self) -> list[str]:
        return ["curl", "-f", f"http://localhost:{self.container_port}{self.health_path}"]

    def health_check(self, base_url: str, client: httpx.Client, *, expect_model: str | None = None) -> HealthResult:
        resp = probe(client, base_url, self.health_path)
        if resp is None:
            return down(base_url, self.health_path)
        if resp.status_code == httpx.codes.SERVICE_UNAVAILABLE:
            return HealthResult(HealthState.LOADING, "llama-server is loading the model")
        if resp.status_code != httpx.codes.OK:
            return unexpected(resp)
        models = probe(client, base_url, self.models_path)
        if models is None or models.status_code != httpx.codes.OK:
            return HealthResult(HealthState.UNHEALTHY, f"{self.models_path} did not answer 200")
        return serving(openai_model_ids(models), expect_model)


def llamacpp_engine_for(image: str) -> _LlamaCpp:
    """An image of a `llama-cpp-python` repository runs that server; every other runs llama-server."""
    repository = image.rsplit("@", 1)[0]
    if repository.rsplit("/", 1)[-1].split(":", 1)[0] == "llama-cpp-python":
        return LlamaCppPythonEngine()
    return LlamaServerEngine()


def _gpu_layers(req: EngineRequest) -> int | None:
    """Layers to offload; without GPUs, none, whatever the plan said."""
    return req.n_gpu_layers if req.gpu_uuids else 0


def _optional(flags: dict[str, object]) -> list[str]:
    return [token for flag, value in flags.items() if value is not None for token in (flag, str(value))]
