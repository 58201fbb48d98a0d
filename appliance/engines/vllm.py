"""vLLM: the OpenAI-compatible server of the `vllm/vllm-openai` image, on one node or across nodes with Ray.

One node runs `vllm serve` with tensor parallelism over its GPUs. The flagship tier (671B over
2 nodes × 8 GPUs) follows vLLM's multi-node recipe (examples/online_serving/run_cluster.sh and
docs/serving/parallelism_scaling.md): every node runs a container of the same image on the host
network; the head starts Ray and then `vllm serve --distributed-executor-backend ray`, each worker
joins the head's Ray; tensor parallel = GPUs per node, pipeline parallel = nodes.
"""

from __future__ import annotations

import shlex
from dataclasses import replace

import httpx

from .base import (
    MODELS_MOUNT,
    ContainerSpec,
    Engine,
    EngineError,
    EngineRequest,
    HealthResult,
    HealthState,
    Role,
    connect_host,
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
    VLLM_DTYPES,
    VLLM_FLAGS,
    VLLM_QUANTIZATIONS,
    VLLM_VERSION,
    ExtraArgs,
    check_flags,
    render_args,
    vllm_flag_name,
)
from .registry import VLLM

VLLM_PORT = 8000
RAY_PORT = 6379
# Every port Ray opens, pinned (docs/engines.md lists them for the cluster network's firewall). Ray has
# no authentication: these must be reachable from the other nodes of the cluster network only.
RAY_PORTS = {
    "--node-manager-port": 6380,
    "--object-manager-port": 6381,
    "--runtime-env-agent-port": 6382,
    "--dashboard-agent-grpc-port": 6383,
    "--dashboard-agent-listen-port": 6384,
    "--metrics-export-port": 6385,
    "--min-worker-port": 10002,
    "--max-worker-port": 10999,
}
# The dashboard's job-submission API runs arbitrary code: never started.
RAY_FLAGS = [
    *(f"{flag}={port}" for flag, port in RAY_PORTS.items()),
    "--include-dashboard=false",
    "--disable-usage-stats",
]
# Loading 671B from disk takes tens of minutes; vLLM also waits up to 1800 s for Ray workers
# (PG_WAIT_TIMEOUT in vllm/v1/executor/ray_utils.py) before it serves.
LOAD_SECONDS = 1800
R1_PARSER = "deepseek_r1"
NO_MEDIA_DOMAIN = "media.invalid"
# Flags the adapter derives from the request's fields; extra_args may not override them.
MANAGED = frozenset(
    {
        *("--model", "--served-model-name", "--host", "--port", "--tensor-parallel-size"),
        *("--pipeline-parallel-size", "--gpu-memory-utilization", "--max-model-len", "--dtype"),
        *("--quantization", "--max-num-seqs", "--reasoning-parser", "--distributed-executor-backend"),
        "--config",  # a YAML file of options would bypass every check here
        "--api-key",  # the console's key, set through VLLM_API_KEY
        "--allowed-media-domains",  # the department's list (image_url SSRF)
    }
)
UNUSED_FIELDS = ("n_gpu_layers", "parallel", "threads", "template")


class VllmEngine(Engine):
    name = VLLM.name
    version = VLLM_VERSION
    default_image = VLLM.default_image
    container_port = VLLM_PORT
    health_path = "/health"
    models_path = "/v1/models"
    metrics_path = VLLM.metrics_path

    def build_spec(self, req: EngineRequest) -> list[ContainerSpec]:
        self._validate(req)
        if req.role is Role.RAY_HEAD:
            return [self._head(req)]
        if req.role is Role.RAY_WORKER:
            return [self._worker(req)]
        return [self._single(req)]

    def validate_extra_args(self, args: ExtraArgs) -> None:
        check_flags(args, VLLM_FLAGS, engine=f"vllm {VLLM_VERSION}", managed=MANAGED, normalise=vllm_flag_name)

    def health_check(self, base_url: str, client: httpx.Client, *, expect_model: str | None = None) -> HealthResult:
        # vLLM listens only once the model is loaded, and /health turns 503 when its engine died: a
        # refused connection means "still loading or gone", a 503 means "broken".
        resp = probe(client, base_url, self.health_path)
        if resp is None:
            return down(base_url, self.health_path)
        if resp.status_code != httpx.codes.OK:
            return unexpected(resp)
        models = probe(client, base_url, self.models_path)
        if models is None or models.status_code != httpx.codes.OK:
            return HealthResult(HealthState.UNHEALTHY, f"{self.models_path} did not answer 200")
        return serving(openai_model_ids(models), expect_model)

    def _validate(self, req: EngineRequest) -> None:
        if req.engine != self.name:
            raise EngineError("engine", f"{req.engine!r} is not {self.name}")
        for name in UNUSED_FIELDS:
            if getattr(req, name) is not None:
                raise EngineError(name, "vLLM does not use it")
        if req.dtype is not None and req.dtype not in VLLM_DTYPES:
            raise EngineError("dtype", f"must be one of {', '.join(sorted(VLLM_DTYPES))}")
        if req.quantization is not None and req.quantization not in VLLM_QUANTIZATIONS:
            raise EngineError("quantization", f"must be one of {', '.join(sorted(VLLM_QUANTIZATIONS))}")
        if req.hf_model_id and req.models_dir is None:
            raise EngineError("models_dir", "an offline Hugging Face id needs the models_dir cache mounted")
        _check_gpu_count(req)
        if req.role is Role.RAY_HEAD and req.bind_address not in (req.node_ip, "127.0.0.1", "::1"):
            # Host networking: the API listens on the host itself, so only there and on the cluster
            # interface, never on every interface (0.0.0.0) or another network's address.
            raise EngineError(
                "bind_address", f"a Ray head serves on loopback or its node_ip {req.node_ip}, not {req.bind_address}"
            )
        if req.role is not Role.RAY_WORKER:
            require_api_key(req, "vLLM")
        self.validate_extra_args(req.extra_args)

    def _single(self, req: EngineRequest) -> ContainerSpec:
        inside = "0.0.0.0"  # noqa: S104 - all interfaces of the container; the host side binds req.bind_address
        spec = self._spec(req, ["vllm", "serve"], serve_args(req, host=inside, port=VLLM_PORT), VLLM_PORT)
        return replace(
            spec,
            ports=published_port(req, VLLM_PORT),
            # vLLM's workers share tensors through /dev/shm; Docker's 64 MB default is far too small.
            ipc_mode="host",
            healthcheck=healthcheck(http_probe_command(VLLM_PORT, self.health_path), start_period_s=LOAD_SECONDS),
        )

    def _head(self, req: EngineRequest) -> ContainerSpec:
        # Host networking: Ray and NCCL open ports of their own on every node, so the API listens on
        # the host port directly rather than through a published container port.
        args = [*serve_args(req, host=req.bind_address, port=req.host_port), "--distributed-executor-backend", "ray"]
        # `ray start` without --block returns once the head's daemons run; vLLM then waits for the
        # workers' GPUs to join the cluster before it serves.
        ray = f"ray start --head --node-ip-address={req.node_ip} --port={RAY_PORT} {' '.join(RAY_FLAGS)}"
        spec = self._spec(req, ["/bin/bash", "-c"], [f"{ray} && exec vllm serve {shlex.join(args)}"], req.host_port)
        probe_cmd = http_probe_command(req.host_port, self.health_path, host=connect_host(req.bind_address))
        return replace(
            spec, network_mode="host", ipc_mode="host", healthcheck=healthcheck(probe_cmd, start_period_s=LOAD_SECONDS)
        )

    def _worker(self, req: EngineRequest) -> ContainerSpec:
        # A worker has no HTTP API: it lends its GPUs to the head's Ray and is judged through the head.
        join = ["start", "--block", f"--address={req.ray_head_address}:{RAY_PORT}", f"--node-ip-address={req.node_ip}"]
        join += RAY_FLAGS
        spec = self._spec(req, ["ray"], join, 0)
        return replace(spec, health_path="", models_path="", metrics_path=None, network_mode="host", ipc_mode="host")

    def _spec(self, req: EngineRequest, entrypoint: list[str], command: list[str], port: int) -> ContainerSpec:
        return ContainerSpec(
            name=container_name(req),
            image=req.image,
            entrypoint=entrypoint,
            command=command,
            labels=labels_for(req),
            environment=vllm_environment(req),
            container_port=port,
            health_path=self.health_path,
            models_path=self.models_path,
            metrics_path=self.metrics_path,
            role=req.role,
            device_requests=device_requests_for(req.gpu_uuids),
            volumes=model_volumes(req),
            user=req.user,
        )


def serve_args(req: EngineRequest, *, host: str, port: int) -> list[str]:
    """The arguments of `vllm serve` for the request (flag names from vLLM 0.33.0's parser)."""
    args = ["--model", model_reference(req), "--served-model-name", req.served_model_name]
    args += ["--host", host, "--port", str(port)]
    args += ["--tensor-parallel-size", str(req.tensor_parallel), "--pipeline-parallel-size", str(req.pipeline_parallel)]
    optional = {
        "--gpu-memory-utilization": req.gpu_memory_utilization,
        "--max-model-len": req.max_model_len,
        "--dtype": req.dtype,
        "--quantization": req.quantization,
        "--max-num-seqs": req.max_num_seqs,
        "--reasoning-parser": reasoning_parser(req),
    }
    args += [token for flag, value in optional.items() if value is not None for token in (flag, str(value))]
    # Last, as it takes any number of values. Without any listed domain, one that can never resolve
    # (RFC 2606 .invalid): vLLM's default (no list) would fetch from anywhere, internal hosts included.
    media = ["--allowed-media-domains", *(req.allowed_media_domains or (NO_MEDIA_DOMAIN,))]
    return args + render_args(req.extra_args, VLLM_FLAGS, vllm_flag_name) + media


def model_reference(req: EngineRequest) -> str:
    return req.container_model_path or req.hf_model_id


def reasoning_parser(req: EngineRequest) -> str | None:
    """DeepSeek-R1 and its distills write <think>…</think>; the parser returns it as reasoning_content."""
    if req.reasoning_parser is not None:
        return req.reasoning_parser or None
    names = f"{req.served_model_name} {req.model_path} {req.hf_model_id}".lower()
    return R1_PARSER if "deepseek-r1" in names else None


def vllm_environment(req: EngineRequest) -> dict[str, str]:
    # The appliance is often air-gapped: never reach for the Hub, never phone home with usage stats.
    env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", **gpu_environment(req.gpu_uuids)}
    # A listed host could otherwise redirect vLLM's media fetch to an internal address.
    env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] = "0"
    if req.role is not Role.RAY_WORKER:
        # vLLM's --api-key, read from the environment (vllm/entrypoints/openai/cli_args.py): every
        # /v1 route then wants `Authorization: Bearer <key>`; /health stays open for probes.
        env["VLLM_API_KEY"] = req.api_key
    if req.hf_model_id:
        env["HF_HUB_CACHE"] = f"{MODELS_MOUNT}/hub"
    if req.role is not Role.SINGLE:
        # As run_cluster.sh does: pin vLLM and Ray to the cluster network on multi-NIC nodes.
        env.update(VLLM_HOST_IP=req.node_ip, RAY_NODE_IP_ADDRESS=req.node_ip, RAY_OVERRIDE_NODE_IP_ADDRESS=req.node_ip)
    return merge_env(env, req.env)


def _check_gpu_count(req: EngineRequest) -> None:
    # No GPUs is allowed: simulated nodes build specs they never start.
    if not req.gpu_uuids:
        return
    per_node = req.tensor_parallel * (req.pipeline_parallel if req.role is Role.SINGLE else 1)
    if len(req.gpu_uuids) != per_node:
        what = "tensor_parallel × pipeline_parallel" if req.role is Role.SINGLE else "tensor_parallel (GPUs per node)"
        raise EngineError("gpu_uuids", f"{len(req.gpu_uuids)} GPUs given, {what} needs {per_node}")
