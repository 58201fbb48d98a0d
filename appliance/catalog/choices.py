"""Tiers, engines, precisions and fit states of SKU profiles, and the constants they share."""

from __future__ import annotations

from types import MappingProxyType

from django.db import models
from django.utils.translation import gettext_lazy as _

from appliance.catalog.planner import DTYPE_CHOICES, KV_DTYPE_CHOICES
from appliance.engines.registry import GGUF_ENGINES, REGISTRY


class Tier(models.TextChoices):
    BASIC = "basic", _("Basic")
    STANDARD = "standard", _("Standard")
    FLAGSHIP = "flagship", _("Flagship")
    CUSTOM = "custom", _("Custom")


# From the engine registry: one member per engine, its name the value and its label the label. (The stubs
# type only the class form of TextChoices, whose members would name each engine a second time.)
Engine = models.TextChoices(  # type: ignore[call-overload]
    "Engine", [(kind.name.upper(), (kind.name, kind.label)) for kind in REGISTRY.values()]
)


class FitStatus(models.TextChoices):
    FITS = "fits", _("Fits as specified")
    ADAPTED = "adapted", _("Fits adapted")
    NO_FIT = "no_fit", _("Does not fit")


# The planner's vocabulary, so a profile can always be planned.
PRECISIONS = DTYPE_CHOICES
KV_DTYPES = KV_DTYPE_CHOICES
GPU_OPTIONAL_ENGINES = GGUF_ENGINES  # llama.cpp and Ollama also run on CPU alone

# DeepSeek's recommended sampling temperature per task (api-docs.deepseek.com, "Temperature").
CHAT_TASKS = ("code", "math", "data_analysis", "conversation", "translation", "creative_writing")
DEFAULT_CHAT_DEFAULTS = MappingProxyType(
    {"code": 0.0, "math": 0.0, "data_analysis": 1.0, "conversation": 1.3, "translation": 1.3, "creative_writing": 1.5}
)
TEMPERATURE_MAX = 2.0  # the OpenAI-compatible APIs' upper bound

# Drivers report a little less than a card's nominal size (an RTX 4090 "24 GB" reads 23.99 GiB, an H20
# "96 GB" 95.6 GiB, an H100 "80 GB" 79.6 GiB), so a GPU qualifies for a profile's minimum memory per GPU
# when it has at least this share of it.
MEMORY_TOLERANCE = 0.97
