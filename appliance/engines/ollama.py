"""Ollama: the `ollama/ollama` image serving one GGUF model, configured through its environment.

Ollama reads no command-line flags for `serve`: its settings are OLLAMA_* variables
(envconfig/config.go), so a deployment's extra_args are extra variables, checked against the names
that file reads. The model does not exist in Ollama until it is created from the GGUF: either run
`ollama create <name> -f <modelfile(req)>` inside the container, or push the file as a blob and
`POST /api/create` with `create_model_payload(...)` (the API shape of Ollama 0.32.15, docs/api.md).
The console does the latter (`OllamaEngine.create_model`), from the node's worker, once Ollama answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from .base import (
    ContainerSpec,
    Engine,
    EngineError,
    EngineRequest,
    HealthResult,
    HealthState,
    ModelCreateError,
    Progress,
    Role,
    container_name,
    device_requests_for,
    down,
    gpu_environment,
    healthcheck,
    is_loopback,
    labels_for,
    merge_env,
    model_volumes,
    probe,
    published_port,
    unexpected,
)
from .flags import OLLAMA_ENV, OLLAMA_VERSION, ExtraArgs, FlagError
from .registry import OLLAMA

OLLAMA_PORT = 11434
OLLAMA_HOME = "/root/.ollama"  # the image runs as root; its store must outlive the container
RUNNING = "Ollama is running"
_DIGEST = re.compile(r"^(sha256:)?([0-9a-f]{64})$")
# Variables the adapter sets from the request's fields; extra_args may not override them.
MANAGED = frozenset(
    {
        *("OLLAMA_HOST", "OLLAMA_MODELS", "OLLAMA_NUM_PARALLEL", "OLLAMA_CONTEXT_LENGTH"),
        *("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"),
    }
)
UNUSED_FIELDS = ("hf_model_id", "gpu_memory_utilization", "dtype", "quantization", "max_num_seqs")
CHUNK = 8 << 20  # bytes read, hashed and sent at a time
PUSH_STEPS = 4  # upload milestones reported as events: 25 %, 50 %, 75 %, 100 %
MIB = 1 << 20


class OllamaEngine(Engine):
    name = OLLAMA.name
    version = OLLAMA_VERSION
    default_image = OLLAMA.default_image
    container_port = OLLAMA_PORT
    health_path = "/"
    models_path = "/api/tags"
    metrics_path = OLLAMA.metrics_path  # Ollama has no Prometheus endpoint (server/routes.go)
    counts_cached_prompt = False  # prompt_eval_count leaves out the prefix it had cached

    def build_spec(self, req: EngineRequest) -> list[ContainerSpec]:
        self._validate(req)
        return [
            ContainerSpec(
                name=container_name(req),
                image=req.image,
                # The image's ENTRYPOINT is /bin/ollama; its CMD is this.
                command=["serve"],
                labels=labels_for(req),
                environment=ollama_environment(req),
                container_port=OLLAMA_PORT,
                health_path=self.health_path,
                models_path=self.models_path,
                ports=published_port(req, OLLAMA_PORT),
                device_requests=device_requests_for(req.gpu_uuids),
                volumes={**model_volumes(req), store_volume(req): {"bind": OLLAMA_HOME, "mode": "rw"}},
                user=req.user,
                # The image has no curl; the CLI lists models through the server, so it fails when the
                # server does not answer.
                healthcheck=healthcheck(["/bin/ollama", "list"], start_period_s=60),
            )
        ]

    def validate_extra_args(self, args: ExtraArgs) -> None:
        names = list(_env_pairs(args))
        unknown = [n for n in names if n not in OLLAMA_ENV]
        if unknown:
            known = sorted(OLLAMA_ENV)
            message = f"unknown variables for ollama {OLLAMA_VERSION}: {', '.join(unknown)}. Known: {', '.join(known)}"
            raise FlagError(message, unknown=unknown, known=known)
        owned = [n for n in names if n in MANAGED]
        if owned:
            message = f"set by the console from the deployment's fields, not extra_args: {', '.join(owned)}"
            raise FlagError(message, managed=owned, known=sorted(OLLAMA_ENV))

    def health_check(self, base_url: str, client: httpx.Client, *, expect_model: str | None = None) -> HealthResult:
        root = probe(client, base_url, self.health_path)
        if root is None:
            return down(base_url, self.health_path)
        if root.status_code != httpx.codes.OK or RUNNING not in root.text:
            return unexpected(root)
        tags = probe(client, base_url, self.models_path)
        if tags is None or tags.status_code != httpx.codes.OK:
            return HealthResult(HealthState.UNHEALTHY, f"{self.models_path} did not answer 200")
        models = _tag_names(tags)
        # Ollama answers before any model exists: the console creates it (create_model), then it serves.
        if expect_model is not None and not {expect_model, f"{expect_model}:latest"} & set(models):
            return HealthResult(HealthState.NO_MODEL, f"{expect_model} is not created yet", models)
        return HealthResult(HealthState.READY, "", models)

    def create_model(
        self, base_url: str, client: httpx.Client, req: EngineRequest, model_file: str, progress: Progress
    ) -> None:
        """Push the GGUF as a blob unless Ollama has it, then `POST /api/create`; nothing if the model exists.

        Every step asks Ollama first (the model in /api/tags, the blob by HEAD), so a second delivery of
        the same work, or one after a worker died half-way, finishes the job rather than repeating it.
        """
        try:
            if self.health_check(base_url, client, expect_model=req.served_model_name).ok:
                progress.event(f"{req.served_model_name} already exists in Ollama")
                return
            digest = file_digest(model_file, progress)
            push_blob(client, base_url, model_file, digest, progress)
            run_create(client, base_url, create_model_payload(req, digest, stream=True), progress)
        except httpx.TransportError as exc:
            raise ModelCreateError(f"Ollama stopped answering: {exc}") from exc

    def _validate(self, req: EngineRequest) -> None:
        if req.engine != self.name:
            raise EngineError("engine", f"{req.engine!r} is not {self.name}")
        if req.role is not Role.SINGLE:
            raise EngineError("role", "Ollama runs on one node")
        if req.tensor_parallel != 1 or req.pipeline_parallel != 1:
            raise EngineError("tensor_parallel", "Ollama splits layers across its GPUs by itself: leave it at 1")
        for name in UNUSED_FIELDS:
            if getattr(req, name):
                raise EngineError(name, "Ollama does not use it")
        if not req.model_path.endswith(".gguf"):
            raise EngineError("model_path", "Ollama is given a .gguf file")
        if not is_loopback(req.bind_address):
            # Ollama has no authentication: whoever reaches its port may use, pull or delete models.
            # Published on loopback, it is reachable only through the console on its own node.
            raise EngineError(
                "bind_address", f"Ollama has no authentication: published on loopback only, not {req.bind_address}"
            )
        if req.template is not None and '"""' in req.template:
            raise EngineError("template", 'must not contain """, which ends a Modelfile TEMPLATE')
        self.validate_extra_args(req.extra_args)


def ollama_environment(req: EngineRequest) -> dict[str, str]:
    env = {
        "OLLAMA_HOST": f"0.0.0.0:{OLLAMA_PORT}",
        "OLLAMA_MODELS": f"{OLLAMA_HOME}/models",
        "OLLAMA_NUM_PARALLEL": str(req.parallel or 1),
        "OLLAMA_MAX_QUEUE": "512",
        # Ollama unloads an idle model after 5 minutes by default; reloading a large one takes minutes.
        "OLLAMA_KEEP_ALIVE": "24h",
        "OLLAMA_MAX_LOADED_MODELS": "1",  # one deployment, one model
        **gpu_environment(req.gpu_uuids),
    }
    if req.max_model_len is not None:
        env["OLLAMA_CONTEXT_LENGTH"] = str(req.max_model_len)
    env.update(_env_pairs(req.extra_args))
    return merge_env(env, req.env)


def store_volume(req: EngineRequest) -> str:
    """A named volume per deployment of this console: created models survive a container being replaced,
    and two consoles (or test sessions) sharing a Docker engine never share a store."""
    return f"appliance-ollama-{req.console_id}-{req.deployment_id}"


def model_parameters(req: EngineRequest) -> dict[str, int]:
    """Modelfile PARAMETERs (api/types.go Options): num_ctx, num_gpu (layers on GPU), num_thread."""
    params: dict[str, int] = {}
    if req.max_model_len is not None:
        params["num_ctx"] = req.max_model_len
    if req.threads is not None:
        params["num_thread"] = req.threads
    if req.n_gpu_layers is not None:
        params["num_gpu"] = req.n_gpu_layers
    elif not req.gpu_uuids:
        params["num_gpu"] = 0  # say "CPU" outright rather than let Ollama look for a GPU
    return params


def modelfile(req: EngineRequest) -> str:
    """The Modelfile for `ollama create`, run inside the container where the GGUF is under /models."""
    lines = [f"FROM {req.container_model_path}"]
    lines += [f"PARAMETER {name} {value}" for name, value in model_parameters(req).items()]
    if req.template:
        lines.append(f'TEMPLATE """{req.template}"""')
    return "\n".join(lines) + "\n"


def blob_path(digest: str) -> str:
    """Where to HEAD (exists?) and POST (upload) the GGUF before `POST /api/create`."""
    return f"/api/blobs/sha256:{_hex_digest(digest)}"


def create_model_payload(req: EngineRequest, digest: str, *, stream: bool = False) -> dict[str, Any]:
    """The body of `POST /api/create` (Ollama ≥ 0.5.5 shape: `files`, `parameters`, `template`).

    `digest` is the SHA-256 of the GGUF, already uploaded to `blob_path(digest)`.
    """
    payload: dict[str, Any] = {
        "model": req.served_model_name,
        "files": {posixpath.basename(req.model_path): f"sha256:{_hex_digest(digest)}"},
        "stream": stream,
    }
    if parameters := model_parameters(req):
        payload["parameters"] = parameters
    if req.template:
        payload["template"] = req.template
    return payload


def file_digest(path: str, progress: Progress) -> str:
    """SHA-256 of the GGUF, the name Ollama stores it under; minutes for a large model, so it reports life."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ModelCreateError(f"cannot read the model file {path}: {exc.strerror}") from exc
    progress.event(f"hashing {posixpath.basename(path)} ({size / MIB:.0f} MiB)")
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(CHUNK):
            sha.update(piece)
            progress.alive()
    return sha.hexdigest()


def push_blob(client: httpx.Client, base_url: str, path: str, digest: str, progress: Progress) -> bool:
    """Upload the file unless Ollama has the blob (HEAD answers 200); True when it was uploaded."""
    url = base_url.rstrip("/") + blob_path(digest)
    head = client.head(url)
    if head.status_code == httpx.codes.OK:
        progress.event(f"blob sha256:{digest} is already in Ollama")
        return False
    if head.status_code != httpx.codes.NOT_FOUND:
        raise ModelCreateError(ollama_error(head))
    size = os.path.getsize(path)
    progress.event(f"pushing {posixpath.basename(path)} to Ollama as blob sha256:{digest} ({size / MIB:.0f} MiB)")
    # A declared length rather than chunked encoding: Ollama then knows the size it is receiving.
    resp = client.post(url, content=_upload(path, size, progress), headers={"Content-Length": str(size)})
    if resp.status_code not in (httpx.codes.OK, httpx.codes.CREATED):
        raise ModelCreateError(ollama_error(resp))
    return True


def _upload(path: str, size: int, progress: Progress) -> Iterator[bytes]:
    sent, step = 0, 1
    with open(path, "rb") as f:
        while piece := f.read(CHUNK):
            yield piece
            sent += len(piece)
            progress.alive()
            while size and step <= PUSH_STEPS and sent * PUSH_STEPS >= size * step:
                progress.event(f"pushed {sent / MIB:.0f} of {size / MIB:.0f} MiB")
                step += 1


def run_create(client: httpx.Client, base_url: str, payload: dict[str, Any], progress: Progress) -> None:
    """`POST /api/create`, streamed: each status line becomes an event; an error line is Ollama's refusal."""
    last = ""
    with client.stream("POST", base_url.rstrip("/") + "/api/create", json=payload) as resp:
        if resp.status_code != httpx.codes.OK:
            resp.read()
            raise ModelCreateError(ollama_error(resp))
        for line in resp.iter_lines():
            if not line.strip():
                continue
            message = json.loads(line)
            if "error" in message:
                raise ModelCreateError(str(message["error"]))
            last = str(message.get("status", ""))
            progress.event(f"Ollama: {last}")
    if last != "success":
        raise ModelCreateError(f"Ollama ended the creation of {payload['model']} without success (last: {last!r})")


def ollama_error(resp: httpx.Response) -> str:
    """Ollama's own words: the `error` of its JSON answer, else the status and the start of the body."""
    try:
        return str(resp.json()["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code} from {resp.request.url.path}: {resp.text[:200]}".strip()


def _hex_digest(digest: str) -> str:
    match = _DIGEST.match(digest)
    if not match:
        raise EngineError("digest", "must be 64 lowercase hex digits, optionally prefixed with sha256:")
    return match.group(2)


def _env_pairs(args: ExtraArgs) -> dict[str, str]:
    """Extra variables from {"NAME": value} or ["NAME=value", …]."""
    if isinstance(args, str):
        raise FlagError("extra_args must be a list of NAME=value or a mapping, not one string")
    if isinstance(args, Mapping):
        return {str(k): _env_value(v) for k, v in args.items()}
    pairs = [str(token).partition("=") for token in args]
    if any(not sep for _, sep, _ in pairs):
        raise FlagError("Ollama extra_args are environment variables: write NAME=value")
    return {name: value for name, _, value in pairs}


def _env_value(value: object) -> str:
    # Ollama parses booleans with Go's strconv.ParseBool, which reads "true" and "false".
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _tag_names(resp: httpx.Response) -> tuple[str, ...]:
    try:
        models = resp.json().get("models", [])
    except (ValueError, AttributeError):
        return ()
    return tuple(str(m["name"]) for m in models if isinstance(m, dict) and "name" in m)
