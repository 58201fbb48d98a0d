"""Engine adapters: a deployment request in, `docker.containers.create(...)` arguments out.

Pure Python, importable without Django. `engine_for(name, image)` gives the adapter; its
`build_spec(request)` gives the node's containers and `health_check(base_url, client)` probes one.

Talking to a running engine is apart, for the web processes (the gateway and the chat), and reads
Django's settings, so this package does not import it: `client` (pooled connections, replica choice,
retry), `balancer` (requests in flight across processes), `sse` (the stream parser).
"""

from __future__ import annotations

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
)
from .flags import FlagError
from .llamacpp import LlamaCppPythonEngine, LlamaServerEngine, llamacpp_engine_for
from .ollama import OllamaEngine
from .registry import ENGINES, GGUF_ENGINES, LLAMACPP, REGISTRY, Dialect, EngineKind, speaks
from .vllm import VllmEngine

__all__ = [
    "ENGINES",
    "GGUF_ENGINES",
    "REGISTRY",
    "ContainerSpec",
    "Dialect",
    "Engine",
    "EngineError",
    "EngineKind",
    "EngineRequest",
    "FlagError",
    "HealthResult",
    "HealthState",
    "LlamaCppPythonEngine",
    "LlamaServerEngine",
    "ModelCreateError",
    "OllamaEngine",
    "Progress",
    "Role",
    "VllmEngine",
    "build_specs",
    "engine_for",
    "speaks",
]


def engine_for(name: str, image: str = "") -> Engine:
    """The adapter for an engine name; llama.cpp's depends on the image (see llamacpp.py)."""
    if name == VllmEngine.name:
        return VllmEngine()
    if name == OllamaEngine.name:
        return OllamaEngine()
    if name == LLAMACPP.name:
        return llamacpp_engine_for(image)
    raise EngineError("engine", f"{name!r} is not one of {', '.join(ENGINES)}")


def build_specs(req: EngineRequest) -> list[ContainerSpec]:
    """The containers `req.node_name` runs for the request, by the request's own engine and image."""
    return engine_for(req.engine, req.image).build_spec(req)
