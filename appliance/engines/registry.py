"""The engines the appliance runs, each defined once: its name, whether it runs GGUF files, the API dialect
the gateway speaks to it, its default image and where it serves Prometheus metrics.

Everything else derives from here: the catalog's choices and planner, the launch spec, the gateway's
dialect switch, the image catalog's defaults (``APPLIANCE_IMAGE_<ENGINE>`` overrides them). Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from .flags import LLAMACPP_IMAGE, OLLAMA_IMAGE, VLLM_IMAGE


class Dialect(StrEnum):
    """The HTTP API an engine answers chat in."""

    OPENAI = "openai"  # /v1/chat/completions, server-sent events
    OLLAMA = "ollama"  # /api/chat, newline-delimited JSON (the gateway translates it)


@dataclass(frozen=True)
class EngineKind:
    name: str
    label: str
    gguf: bool  # loads GGUF files, and so also runs on CPU alone
    dialect: Dialect
    default_image: str  # the tag the engine's specs and flag tables were checked against (flags.py)
    metrics_path: str | None  # of the default image's server; None: it serves no Prometheus metrics


VLLM = EngineKind("vllm", "vLLM", False, Dialect.OPENAI, VLLM_IMAGE, "/metrics")
OLLAMA = EngineKind("ollama", "Ollama", True, Dialect.OLLAMA, OLLAMA_IMAGE, None)  # no Prometheus endpoint
# The appliance's own llama-server image (deploy/engine-image/), which passes --metrics.
LLAMACPP = EngineKind("llamacpp", "llama.cpp", True, Dialect.OPENAI, LLAMACPP_IMAGE, "/metrics")

REGISTRY: Mapping[str, EngineKind] = MappingProxyType({kind.name: kind for kind in (VLLM, OLLAMA, LLAMACPP)})
ENGINES: tuple[str, ...] = tuple(REGISTRY)
GGUF_ENGINES: frozenset[str] = frozenset(name for name, kind in REGISTRY.items() if kind.gguf)


def default_image(name: str) -> str:
    """The engine's default image; empty for an engine the appliance does not know."""
    kind = REGISTRY.get(name)
    return kind.default_image if kind is not None else ""


def speaks(name: str, dialect: Dialect) -> bool:
    kind = REGISTRY.get(name)
    return kind is not None and kind.dialect is dialect
