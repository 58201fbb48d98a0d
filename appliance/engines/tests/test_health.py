"""Health checks against a real HTTP server on 127.0.0.1 that answers the way each engine does."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from appliance.engines import HealthState, LlamaCppPythonEngine, LlamaServerEngine, OllamaEngine, VllmEngine

# path -> (status, body); a dict body is sent as JSON
Routes = dict[str, tuple[int, str | dict[str, object]]]
Serve = Callable[[Routes], str]


def openai_models(*ids: str) -> dict[str, object]:
    return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "me"} for i in ids]}


def handler_for(routes: Routes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = routes.get(self.path, (404, {"detail": "Not Found"}))
            payload = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[ThreadingHTTPServer] = []

    def start(routes: Routes) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(routes))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2.0) as c:
        yield c


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


def test_vllm_ready(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/health": (200, ""), "/v1/models": (200, openai_models("deepseek-r1-7b"))})
    result = VllmEngine().health_check(url, client, expect_model="deepseek-r1-7b")
    assert (result.state, result.models, result.ok) == (HealthState.READY, ("deepseek-r1-7b",), True)


def test_vllm_serving_another_model_is_unhealthy(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/health": (200, ""), "/v1/models": (200, openai_models("qwen2.5-7b"))})
    result = VllmEngine().health_check(url, client, expect_model="deepseek-r1-7b")
    assert result.state is HealthState.UNHEALTHY
    assert result.detail == "serves qwen2.5-7b, not deepseek-r1-7b"


def test_vllm_dead_engine_is_unhealthy(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/health": (503, "")})
    result = VllmEngine().health_check(url, client)
    assert result.state is HealthState.UNHEALTHY
    assert result.detail == "/health answered HTTP 503"


@pytest.mark.parametrize("engine", [VllmEngine(), OllamaEngine(), LlamaCppPythonEngine(), LlamaServerEngine()])
def test_nothing_listening_is_down(engine: VllmEngine, closed_port_url: str, client: httpx.Client) -> None:
    result = engine.health_check(closed_port_url, client)
    assert result.state is HealthState.DOWN and not result.ok


def ollama_routes(*names: str) -> Routes:
    tags: dict[str, object] = {
        "models": [{"name": n, "model": n, "size": 4683075271, "details": {"format": "gguf"}} for n in names]
    }
    return {"/": (200, "Ollama is running"), "/api/tags": (200, tags)}


def test_ollama_ready_once_the_model_is_created(serve: Serve, client: httpx.Client) -> None:
    url = serve(ollama_routes("deepseek-r1-7b:latest"))
    result = OllamaEngine().health_check(url, client, expect_model="deepseek-r1-7b")
    assert (result.state, result.models) == (HealthState.READY, ("deepseek-r1-7b:latest",))


def test_ollama_without_the_model_waits_for_the_console_to_create_it(serve: Serve, client: httpx.Client) -> None:
    url = serve(ollama_routes())
    result = OllamaEngine().health_check(url, client, expect_model="deepseek-r1-7b")
    assert result.state is HealthState.NO_MODEL
    assert OllamaEngine().health_check(url, client).state is HealthState.READY  # the server itself is up


def test_something_else_on_ollamas_port_is_unhealthy(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/": (200, "<html>nginx</html>")})
    assert OllamaEngine().health_check(url, client).state is HealthState.UNHEALTHY


def test_llama_cpp_python_ready_on_models(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/v1/models": (200, openai_models("smollm2-135m-instruct-q4_1"))})
    result = LlamaCppPythonEngine().health_check(url, client, expect_model="smollm2-135m-instruct-q4_1")
    assert result.state is HealthState.READY


def test_llama_cpp_python_error_is_unhealthy(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/v1/models": (500, {"detail": "boom"})})
    assert LlamaCppPythonEngine().health_check(url, client).state is HealthState.UNHEALTHY


def test_llama_server_loading_then_ready(serve: Serve, client: httpx.Client) -> None:
    loading: dict[str, object] = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    url = serve({"/health": (503, loading)})
    assert LlamaServerEngine().health_check(url, client).state is HealthState.LOADING

    url = serve({"/health": (200, {"status": "ok"}), "/v1/models": (200, openai_models("r1-iq1"))})
    result = LlamaServerEngine().health_check(url, client, expect_model="r1-iq1")
    assert (result.state, result.models) == (HealthState.READY, ("r1-iq1",))


def test_trailing_slash_in_base_url(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/health": (200, ""), "/v1/models": (200, openai_models("m"))})
    assert VllmEngine().health_check(url + "/", client).ok


def test_models_answer_that_is_not_json(serve: Serve, client: httpx.Client) -> None:
    url = serve({"/health": (200, ""), "/v1/models": (200, "not json")})
    result = VllmEngine().health_check(url, client, expect_model="m")
    assert result.state is HealthState.UNHEALTHY and result.models == ()
