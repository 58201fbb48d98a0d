"""What a new answer will be asked of: the model the user may use, its parameters, the history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from appliance.accounts.models import User
from appliance.chat.choices import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TASK,
    DEFAULT_TEMPERATURES,
    MAX_TOKENS_LIMIT,
    ErrorCode,
    Role,
    Status,
    Task,
)
from appliance.chat.metering import Admission, max_tokens_cap
from appliance.chat.models import Conversation
from appliance.core.context import current, new_request_id
from appliance.core.exceptions import PermissionDenied
from appliance.core.ttlcache import TtlCache
from appliance.deployments import routing
from appliance.deployments.models import Deployment
from appliance.engines import prompt
from appliance.engines.prompt import TemplateCost
from appliance.safety import rules
from appliance.safety.matcher import Matcher


@dataclass(frozen=True)
class ChatSettings:
    """What the user picked for this answer; None: the model's default."""

    model: str
    system_prompt: str = ""
    task: str = DEFAULT_TASK
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class ModelChoice:
    name: str
    deployment_id: int
    department_id: int
    upstreams: tuple[routing.Endpoint, ...]  # the replicas; the engine client picks the least busy
    reasoning: bool
    chat_defaults: dict[str, float]
    max_model_len: int
    deployment_ids: tuple[int, ...] = ()
    # On demand and not running: the generation starts these deployments and waits (no upstreams yet).
    starting: bool = False
    configured_max_tokens: int | None = None
    template: TemplateCost = field(default_factory=routing.default_template_cost)

    def temperature_for(self, task: str) -> float:
        return float(self.chat_defaults.get(task, DEFAULT_TEMPERATURES.get(task, DEFAULT_TEMPERATURES[DEFAULT_TASK])))

    @property
    def default_max_tokens(self) -> int:
        return default_max_tokens(self.max_model_len, self.configured_max_tokens)


def default_max_tokens(max_model_len: int, configured: int | None = None) -> int:
    """The completion budget when the user sets none: the profile's, else up to DEFAULT_MAX_TOKENS; either way
    at least half the context is left to the prompt."""
    return max(1, min(configured or DEFAULT_MAX_TOKENS, max_model_len // 2))


@dataclass(frozen=True)
class Job:
    """Everything a generation needs, computed under the request's permissions before it starts."""

    message_id: int
    conversation_id: int
    user_id: int
    department_id: int | None
    deployment_id: int
    model: str
    upstreams: tuple[routing.Endpoint, ...]
    payload: dict[str, Any]
    assume_reasoning: bool
    prompt_tokens: int
    max_tokens: int
    # The request context's id (the socket message that asked, see consumers.py): the answer's id in log
    # lines, the engine request (X-Request-ID) and its usage record; unique per answer, as its reservation is.
    request_id: str
    deployment_ids: tuple[int, ...] = ()  # the deployments behind upstreams (or to start), marked as in use
    starting: bool = False  # on demand, not running: start deployment_ids and wait for upstreams
    safety: Matcher | None = None  # the content-safety rules of the user's department; None: none apply

    def admission(self) -> Admission:
        return Admission(
            request_id=self.request_id, user_id=self.user_id, department_id=self.department_id,
            deployment_id=self.deployment_id, model=self.model, prompt_tokens=self.prompt_tokens,
            max_tokens=self.max_tokens,
        )  # fmt: skip


# The running replicas a user's answers go to, kept as the gateway keeps a key's route
# (appliance.core.ttlcache): three queries less per answer. Kept per department, since who may use a
# deployment depends on the department alone (Deployment._use_scope; platform admins may use all): one
# person rarely asks twice within the cache's seconds, a department's people together often. A replica
# stopped meanwhile is skipped by the engine client's retry; a model that stopped or that the
# department lost is refused within those seconds.
_choices: TtlCache[tuple[int | None, str], ModelChoice] = TtlCache()
_EVERY_DEPLOYMENT = -1  # the key of platform admins' choices


def _choice_key(user: User, name: str) -> tuple[int | None, str]:
    return (_EVERY_DEPLOYMENT if user.is_platform_admin else user.department_id), name


def choose_model(user: User, name: str) -> ModelChoice:
    """The running deployments of ``name`` the user may use (routing's rule), else the on-demand ones
    to start, else PermissionDenied."""
    key = _choice_key(user, name)
    cached, choice = _choices.get(key)
    if cached and choice is not None:
        return choice
    endpoints = routing.endpoints(user, name) if name else []
    if not endpoints:
        return _to_start(user, name)  # looked up afresh at every answer until the model runs
    first = endpoints[0]
    deployment = Deployment.objects.select_related("profile_version").get(pk=first.deployment_id)
    choice = ModelChoice(
        name=name, deployment_id=first.deployment_id, department_id=first.department_id,
        upstreams=tuple(endpoints), reasoning=first.is_reasoning,
        chat_defaults=dict(deployment.profile_version.chat_defaults or {}),
        max_model_len=deployment.profile_version.max_model_len,
        deployment_ids=tuple(dict.fromkeys(e.deployment_id for e in endpoints)),
        configured_max_tokens=deployment.profile_version.default_max_tokens,
        template=routing.worst_template(endpoints),
    )  # fmt: skip
    _choices.put(key, choice)
    return choice


def _to_start(user: User, name: str) -> ModelChoice:
    ids = routing.on_demand_to_start(user, name).get(name) if name else None
    if not ids:
        raise PermissionDenied(_("This model is not available to you."), code=ErrorCode.MODEL_UNAVAILABLE)
    deployment = Deployment.objects.select_related("profile_version").get(pk=ids[0])
    return ModelChoice(
        name=name, deployment_id=deployment.pk, department_id=deployment.department_id, upstreams=(),
        reasoning=routing.is_reasoning(deployment.model_slug),
        chat_defaults=dict(deployment.profile_version.chat_defaults or {}),
        max_model_len=deployment.profile_version.max_model_len, deployment_ids=tuple(ids), starting=True,
        configured_max_tokens=deployment.profile_version.default_max_tokens,
    )  # fmt: skip


def history(conversation: Conversation) -> list[dict[str, str]]:
    """The messages sent to the engine: system prompt, then the current turns (never the reasoning)."""
    messages = _system(conversation)
    rows = conversation.messages.current().exclude(status=Status.STREAMING).values_list("role", "content")
    for role, content in rows:
        if role == Role.USER or content.strip():
            messages.append({"role": role, "content": content})
    return messages


def estimate_tokens(messages: list[dict[str, str]], template: TemplateCost) -> int:
    """Never below what the engine bills: each text bounded per byte, plus the template as measured."""
    return sum(prompt.message_bound(m) for m in messages) + template.chat(len(messages))


def first_turn(conversation: Conversation, question: str) -> list[dict[str, str]]:
    """``history`` of a conversation whose only message is ``question`` (a new one), without reading it back."""
    return [*_system(conversation), {"role": str(Role.USER), "content": question}]


def _system(conversation: Conversation) -> list[dict[str, str]]:
    """The system prompt as the first message, when the conversation has one."""
    if conversation.system_prompt.strip():
        return [{"role": "system", "content": conversation.system_prompt}]
    return []


def budget(user: User, conversation: Conversation, choice: ModelChoice) -> int:
    """The answer's max_tokens. The default respects the quota's cap; a budget the user set explicitly is
    refused by the quota instead."""
    cap = max_tokens_cap(user)
    default = choice.default_max_tokens if cap is None else max(1, min(choice.default_max_tokens, cap))
    return min(conversation.max_tokens or default, MAX_TOKENS_LIMIT)


def plan(
    user: User,
    conversation: Conversation,
    message_id: int,
    choice: ModelChoice,
    *,
    max_tokens: int | None = None,
    messages: list[dict[str, str]] | None = None,
) -> Job:
    """The job of the answer ``message_id``; ``max_tokens`` (``budget``) and ``messages`` (``history``)
    when the caller has them already."""
    task = conversation.task if conversation.task in Task.values else DEFAULT_TASK
    temperature = conversation.temperature if conversation.temperature is not None else choice.temperature_for(task)
    max_tokens = max_tokens if max_tokens is not None else budget(user, conversation, choice)
    messages = messages if messages is not None else history(conversation)
    # No stream_options: chat/upstream.py asks every engine for the usage chunk, as the gateway does.
    payload = {
        "model": choice.name, "messages": messages, "stream": True, "temperature": temperature,
        "max_tokens": max_tokens,
    }  # fmt: skip
    return Job(
        message_id=message_id, conversation_id=conversation.pk, user_id=user.pk,
        department_id=user.department_id, deployment_id=choice.deployment_id, model=choice.name,
        upstreams=choice.upstreams, payload=payload, assume_reasoning=choice.reasoning,
        prompt_tokens=estimate_tokens(messages, choice.template), max_tokens=max_tokens,
        request_id=current().request_id or new_request_id(),
        deployment_ids=choice.deployment_ids, starting=choice.starting, safety=rules.matcher_for(user.department_id),
    )  # fmt: skip
