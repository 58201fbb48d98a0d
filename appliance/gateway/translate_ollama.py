"""OpenAI's chat/completions shapes to Ollama's native ``/api/chat`` and ``/api/generate`` and back.

Why native rather than Ollama's own ``/v1`` routes: the native API is Ollama's reference surface
(docs/api.md), reports exact counts in every final line (``prompt_eval_count``, ``eval_count``)
whether or not the client streams, carries ``think`` and ``message.thinking`` for reasoning models
(relayed as vLLM's ``reasoning_content``, which the chat portal and Cherry Studio already read),
and takes per-request ``options`` such as ``num_ctx`` that the ``/v1`` shim does not.

Field mapping: ``max_tokens``/``max_completion_tokens`` → ``options.num_predict``; ``temperature``,
``top_p``, ``seed``, ``stop``, ``frequency_penalty``, ``presence_penalty`` → ``options``; a
``response_format`` of ``json_object`` → ``format: "json"``, ``json_schema`` → its schema; content
parts → ``content`` text plus base64 ``images``; ``tools`` as is; ``tool_calls`` with their
``arguments`` as objects (Ollama) or JSON strings (OpenAI). A completion is sent ``raw`` (no chat
template), as OpenAI's ``/v1/completions`` continues text verbatim.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from appliance.engines import client
from appliance.gateway.errors import bad_request
from appliance.gateway.metering import Guard, UsageStatus
from appliance.gateway.protocol import Call, Kind
from appliance.gateway.relay import DONE, error_event, sse

PATHS = {Kind.CHAT: "/api/chat", Kind.COMPLETION: "/api/generate"}
_OPTIONS = {
    "max_tokens": "num_predict",
    "max_completion_tokens": "num_predict",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "top_k": "top_k",  # not OpenAI's, but vLLM's and Ollama's: clients such as Open WebUI send it
    "min_p": "min_p",
}


# --- requests -----------------------------------------------------------------------------------


def request_body(call: Call) -> dict[str, Any]:
    body = call.body
    out: dict[str, Any] = {"model": call.model, "stream": call.stream, "options": _options(body)}
    if call.kind is Kind.CHAT:
        out["messages"] = [_message(m) for m in body["messages"]]
        if body.get("tools"):
            out["tools"] = body["tools"]
    else:
        out.update(prompt=_single_prompt(body.get("prompt")), raw=True)
        if isinstance(body.get("suffix"), str):
            out["suffix"] = body["suffix"]
    if isinstance(body.get("think"), bool | str):
        out["think"] = body["think"]
    if (fmt := _format(body.get("response_format"))) is not None:
        out["format"] = fmt
    return out


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options = {target: body[name] for name, target in _OPTIONS.items() if body.get(name) is not None}
    stop = body.get("stop")
    if stop:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return options


def _format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return "json"
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema")
    return None


def _single_prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if not isinstance(prompt, str):
        raise bad_request("Ollama deployments take one prompt string per request.", param="prompt")
    return prompt


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message["role"]}
    content = message.get("content")
    if isinstance(content, list):
        texts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
        images = [_image(p) for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
        out["content"] = "\n".join(texts)
        if images:
            out["images"] = [i for i in images if i]
    else:
        out["content"] = content or ""
    if message.get("tool_calls"):
        out["tool_calls"] = [_tool_call_to_ollama(c) for c in message["tool_calls"]]
    return out


def _image(part: dict[str, Any]) -> str:
    url = str((part.get("image_url") or {}).get("url", ""))
    # Ollama takes base64 only; a remote URL would mean the appliance fetching from the network.
    if not url.startswith("data:"):
        raise bad_request("Images must be sent inline as data: URLs.", param="messages")
    return url.partition(",")[2]


def _tool_call_to_ollama(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    if isinstance(function.get("arguments"), str):
        try:
            function["arguments"] = json.loads(function["arguments"] or "{}")
        except ValueError:
            raise bad_request("tool_calls arguments must be JSON.", param="messages") from None
    return {"function": function}


def _tool_calls_to_openai(calls: list[dict[str, Any]], *, streamed: bool) -> list[dict[str, Any]]:
    out = []
    for index, call in enumerate(calls):
        function = call.get("function") or {}
        arguments = function.get("arguments", {})
        entry: dict[str, Any] = {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": function.get("name", ""), "arguments": json.dumps(arguments, ensure_ascii=False)},
        }
        out.append({"index": index, **entry} if streamed else entry)
    return out


# --- responses ----------------------------------------------------------------------------------


def _finish(line: dict[str, Any], tool_calls: bool) -> str:
    if line.get("done_reason") == "length":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def _usage(line: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(line.get("prompt_eval_count") or 0), int(line.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _parts(line: dict[str, Any], kind: Kind) -> tuple[str, str, list[dict[str, Any]]]:
    """(text, thinking, tool calls) of one Ollama line or answer."""
    if kind is Kind.CHAT:
        message = line.get("message") or {}
        return message.get("content") or "", message.get("thinking") or "", message.get("tool_calls") or []
    return line.get("response") or "", line.get("thinking") or "", []


def whole(raw: bytes, call: Call, guard: Guard) -> dict[str, Any]:
    """A non-streamed Ollama answer as OpenAI's ``chat.completion`` or ``text_completion``."""
    line = json.loads(raw)
    usage = _usage(line)
    guard.set_usage(usage["prompt_tokens"], usage["completion_tokens"])
    text, thinking, calls = _parts(line, call.kind)
    finish = _finish(line, bool(calls))
    if call.kind is Kind.CHAT:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["reasoning_content"] = thinking
        if calls:
            message["tool_calls"] = _tool_calls_to_openai(calls, streamed=False)
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion"}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion"}
    return {**head, "created": int(time.time()), "model": call.model, "choices": [choice], "usage": usage}


class NdjsonToSse:
    """Ollama's NDJSON stream, line by line, as OpenAI's SSE chunks."""

    def __init__(self, call: Call, guard: Guard) -> None:
        self.call, self.guard, self.pending = call, guard, b""
        chat = call.kind is Kind.CHAT
        self.head = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": call.model,
        }
        self.started, self.tool_calls = False, False

    def feed(self, data: bytes) -> bytes:
        *lines, self.pending = (self.pending + data).split(b"\n")
        return b"".join(self.line(json.loads(line)) for line in lines if line.strip())

    def chunk(self, delta: dict[str, Any] | None = None, text: str = "", finish: str | None = None) -> bytes:
        if self.call.kind is Kind.CHAT:
            choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return sse({**self.head, "choices": [choice]})

    def line(self, line: dict[str, Any]) -> bytes:
        if "error" in line:
            self.guard.status = UsageStatus.ERROR
            return error_event(str(line["error"]))
        out = []
        if not self.started and self.call.kind is Kind.CHAT:
            out.append(self.chunk({"role": "assistant", "content": ""}))
        self.started = True
        text, thinking, calls = _parts(line, self.call.kind)
        for field, value in (("reasoning_content", thinking), ("content", text)):
            if value:
                self.guard.first_token()
                self.guard.add_completion_tokens(1)
                out.append(self.chunk({field: value}, text=value))
        if calls:
            self.tool_calls = True
            out.append(self.chunk({"tool_calls": _tool_calls_to_openai(calls, streamed=True)}))
        if line.get("done"):
            out.append(self._final(line))
        return b"".join(out)

    def _final(self, line: dict[str, Any]) -> bytes:
        usage = _usage(line)
        self.guard.set_usage(usage["prompt_tokens"], usage["completion_tokens"])
        out = [self.chunk(finish=_finish(line, self.tool_calls))]
        if self.call.include_usage:
            out.append(sse({**self.head, "choices": [], "usage": usage}))
        return b"".join([*out, DONE])


async def relay_ndjson(opened: client.Opened, call: Call, guard: Guard) -> AsyncGenerator[bytes, None]:
    translator = NdjsonToSse(call, guard)
    try:
        async for data in client.reads(opened):
            out = translator.feed(data)
            if out:
                yield out
            await guard.atouch()
    except client.EngineFailure as exc:
        guard.status = UsageStatus.ERROR
        yield error_event(f"The engine stopped answering: {exc.code}.")
    except ValueError:
        guard.status = UsageStatus.ERROR
        yield error_event("The engine sent a line that is not JSON.")
