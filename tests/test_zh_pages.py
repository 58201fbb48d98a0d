"""The main pages rendered in zh-Hans contain no English prose: every word of Latin script is either a
technical name kept as is (GPU, API, vLLM…) or comes from the data (user, node and model names)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from html.parser import HTMLParser
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from appliance.accounts.models import Department, User
from appliance.catalog.models import Profile, ProfileVersion
from appliance.catalog.services import merged_catalog
from appliance.deployments.models import Deployment, Instance
from appliance.gpus.models import Gpu, Node
from tests.scenes import seed_appliance

pytestmark = pytest.mark.django_db

# Names that stay in Latin script in a Chinese UI (products, units, protocols, file formats).
TERMS = set(
    "GPU GPUs CPU API CSV JSON SKU MIG KV RAM GiB MiB GB MB TB ID URL HTTP HTTPS OpenAI NVIDIA CUDA NVML Docker "
    "vLLM llama cpp llama-server Ollama SmolLM2 GGUF Unsloth SHA tar gz tgz xz zst docker save Ray MLA TP PP "
    "token tokens Token Tokens Bearer ak DeepSeek Qwen RTX H20 H100 HGX Xeon UTC v1 CNY W C IP tensor Q4 "
    "fp8 fp16 bf16 int4 int8 awq gptq auto Enter Shift scp n-gpu-layers vllm-openai-v WebSocket Django MoE int "
    # AI: the label the regulation prescribes, 内容由 AI 生成; max: of max_tokens (API)
    "catalog AI LDAP Active Directory OIDC SSO DN max".split()
)
SKIP_TAGS = {"script", "style", "code", "pre", "option", "noscript", "template", "textarea"}
WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]")


class _Text(HTMLParser):
    """Visible text outside code, scripts and the options of pickers (those list data)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP_TAGS:
            self.depth += 1
        for name, value in attrs:
            if name in ("placeholder", "aria-label", "data-confirm") and value and not self.depth:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP_TAGS and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth:
            self.parts.append(data)


def _data_words() -> set[str]:
    values: list[Any] = []
    values += User.objects.values_list("username", "display_name")
    values += Department.objects.values_list("code", "name")
    values += Profile.objects.values_list("slug", "name", "description")
    values += ProfileVersion.objects.values_list("model", "engine", "gpu_model", "precision")
    values += Node.objects.values_list("name", "hostname", "cpu_model", "os")
    values += Gpu.objects.values_list("name")
    values += Deployment.objects.values_list("name", "served_model_name", "engine", "image", "model_slug")
    values += [[v for v in asdict(e).values() if isinstance(v, str)] for e in merged_catalog().values()]
    values += ProfileVersion.objects.values_list("note")
    values += Instance.objects.values_list("container_name")
    values += [(str(settings.APPLIANCE_IMAGE_IMPORT_DIR),)]
    return {word for row in values for value in row for word in WORD.findall(str(value or ""))}


def english_words(html: str, allowed: set[str]) -> list[str]:
    parser = _Text()
    parser.feed(html)
    words = WORD.findall(" ".join(parser.parts))
    return sorted({w for w in words if w not in allowed and w.lower() not in {t.lower() for t in allowed}})


@pytest.fixture
def appliance(personas: dict, departments: dict, seeded_profiles: None) -> dict[str, Any]:
    return {**seed_appliance(personas, departments), "profile": Profile.objects.get(slug="flagship-671b")}


def _pages(appliance: dict[str, Any], personas: dict) -> list[str]:
    dep, profile = appliance["deployment"], appliance["profile"]
    return [
        "/", "/deployments/", "/deployments/new/", f"/deployments/{dep.pk}/", "/users/",
        f"/users/{personas['bob'].pk}/", "/departments/", "/api-keys/", "/audit-log/", "/nodes/", "/gpus/",
        "/gpu-quotas/", "/profiles/", f"/profiles/{profile.pk}/", "/catalog/", "/capacity/", "/usage/", "/images/",
        "/chat/", "/password/", "/sign-in-rules/", f"/usage/departments/{personas['alice'].department_id}/",
    ]  # fmt: skip


def test_main_pages_have_no_english_in_zh_hans(appliance: dict[str, Any], personas: dict) -> None:
    allowed = TERMS | _data_words()
    found: dict[str, list[str]] = {}
    for username, urls in (
        ("root", _pages(appliance, personas)),
        ("bob", ["/", "/chat/", "/api-keys/", "/usage/", "/gpus/"]),
        ("alice", [f"/usage/departments/{personas['alice'].department_id}/"]),
    ):
        client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
        client.force_login(personas[username])
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            words = english_words(response.content.decode(), allowed)
            if words:
                found[f"{username} {url}"] = words
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)


def test_chat_script_strings_are_translated(personas: dict) -> None:
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(personas["bob"])
    html = client.get("/chat/").content.decode()
    found = re.search(r'id="chat-config" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None
    config = json.loads(found[1])
    strings = {**config["strings"], **config["errors"], **{t["value"]: t["label"] for t in config["tasks"]}}
    placeholders = re.compile(r"%\(\w+\)[sd]")
    english = {k: t for k, t in strings.items() if english_words(f"<p>{placeholders.sub('', t)}</p>", TERMS)}
    assert not english, english
