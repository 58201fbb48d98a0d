"""The engine protocol doubles (deploy/engine-doubles), run as plain processes: what they accept and refuse
as the real engines do, and the console's Ollama model creation against them (blob push, create, twice)."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.engines import EngineRequest, HealthState, ModelCreateError, OllamaEngine
from appliance.engines.flags import OLLAMA_IMAGE, VLLM_IMAGE
from appliance.engines.vllm import serve_args

ROOT = Path(__file__).resolve().parents[3]
DOUBLES = ROOT / "deploy" / "engine-doubles"
PYTHONPATH = os.pathsep.join([str(DOUBLES / "common"), str(ROOT / "appliance" / "engines")])


class Recorder:
    """`Progress` that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.beats = 0

    def event(self, text: str) -> None:
        self.events.append(text)

    def alive(self) -> None:
        self.beats += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gguf(path: Path, architecture: str = "llama", padding: int = 3 << 20) -> Path:
    """A GGUF v3 header with one key (general.architecture), padded so the upload takes several reads."""
    key, value = b"general.architecture", architecture.encode()
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    header += struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value
    path.write_bytes(header + b"\0" * padding)
    return path


@pytest.fixture
def ollama(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "ollama.log"
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "store"),
           "PYTHONPATH": PYTHONPATH}  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(DOUBLES / "ollama" / "ollama"), "serve"], env=env, stdout=out)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url + "/")
        yield url, log
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for(url: str) -> None:
    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def request(**overrides: object) -> EngineRequest:
    fields: dict[str, object] = {
        "deployment_id": "7",
        "console_id": "c1",
        "node_name": "n1",
        "engine": "ollama",
        "image": OLLAMA_IMAGE,
        "served_model_name": "smol",
        "model_path": "smol.gguf",
        "host_port": 20000,
        "max_model_len": 2048,
        "template": "{{ .Prompt }}",
    }
    return EngineRequest(**(fields | overrides))  # type: ignore[arg-type]


def test_model_is_pushed_created_and_served(ollama: tuple[str, Path], tmp_path: Path) -> None:
    url, log = ollama
    model = gguf(tmp_path / "smol.gguf")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    engine, progress = OllamaEngine(), Recorder()
    with httpx.Client(timeout=10) as client:
        assert engine.health_check(url, client, expect_model="smol").state is HealthState.NO_MODEL
        engine.create_model(url, client, request(), str(model), progress)
        assert engine.health_check(url, client, expect_model="smol").ok
        show = client.post(f"{url}/api/show", json={"model": "smol"}).json()
    assert progress.events[:2] == [
        "hashing smol.gguf (3 MiB)",
        f"pushing smol.gguf to Ollama as blob sha256:{digest} (3 MiB)",
    ]
    template, params = (e.removeprefix("Ollama: creating new layer ") for e in progress.events[-4:-2])
    assert progress.events[-7:] == [
        "pushed 3 of 3 MiB",
        "Ollama: parsing GGUF",
        f"Ollama: using existing layer sha256:{digest}",
        f"Ollama: creating new layer {template}",
        f"Ollama: creating new layer {params}",
        "Ollama: writing manifest",
        "Ollama: success",
    ]
    assert template == "sha256:" + hashlib.sha256(b"{{ .Prompt }}").hexdigest()
    assert show["details"]["family"] == "llama" and progress.beats > 0
    assert log.read_text().count(f"POST /api/blobs/sha256:{digest}") == 1


def test_a_second_delivery_neither_pushes_nor_creates_again(ollama: tuple[str, Path], tmp_path: Path) -> None:
    url, log = ollama
    model = gguf(tmp_path / "smol.gguf")
    with httpx.Client(timeout=10) as client:
        OllamaEngine().create_model(url, client, request(), str(model), Recorder())
        again = Recorder()
        OllamaEngine().create_model(url, client, request(), str(model), again)
        # Another model from the same file: the blob is there (HEAD 200), only the create runs.
        other = Recorder()
        OllamaEngine().create_model(url, client, request(served_model_name="smol-b"), str(model), other)
    assert again.events == ["smol already exists in Ollama"]
    assert any(e.endswith("is already in Ollama") for e in other.events)
    assert not any(e.startswith("pushing") for e in other.events) and other.events[-1] == "Ollama: success"
    assert log.read_text().count("POST /api/blobs/") == 1 and log.read_text().count("POST /api/create") == 2


def test_a_file_that_is_not_gguf_fails_with_ollamas_message(ollama: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = ollama
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with httpx.Client(timeout=10) as client, pytest.raises(ModelCreateError, match=r"^supplied file was not in GGUF"):
        OllamaEngine().create_model(url, client, request(model_path="bad.gguf"), str(bad), Recorder())


def test_a_missing_file_is_a_clear_failure(ollama: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = ollama
    with httpx.Client(timeout=10) as client, pytest.raises(ModelCreateError, match="cannot read the model file"):
        OllamaEngine().create_model(url, client, request(), str(tmp_path / "absent.gguf"), Recorder())


def test_ollama_double_refuses_what_ollama_refuses(ollama: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = ollama
    unknown = "sha256:" + "b" * 64
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.head(f"/api/blobs/{unknown}").status_code == 404
        bad = c.post("/api/blobs/sha256:xyz", content=b"x")
        assert (bad.status_code, bad.json()) == (400, {"error": "invalid digest format"})
        mismatch = c.post(f"/api/blobs/{unknown}", content=b"abc")
        assert mismatch.status_code == 400 and mismatch.json()["error"].startswith("digest mismatch, expected")
        created = c.post("/api/create", json={"model": "x", "files": {"x.gguf": unknown}, "stream": False})
        assert created.status_code == 500 and "no such file or directory" in created.json()["error"]
        nothing = c.post("/api/create", json={"model": "x"})
        assert (nothing.status_code, nothing.json()) == (400, {"error": "neither 'from' or 'files' was specified"})
        assert c.post("/api/create", json={"model": "bad name!", "files": {}}).json() == {"error": "invalid model name"}
        assert c.post("/api/create", content=b"").json() == {"error": "missing request body"}
        chat = c.post("/api/chat", json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
        assert (chat.status_code, chat.json()) == (404, {"error": "model 'nope' not found"})
        assert c.post("/api/generate", json={"model": "nope", "prompt": "hi"}).status_code == 404
        openai = c.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
        assert openai.status_code == 404 and openai.json()["error"]["type"] == "not_found_error"
        assert c.post("/v1/chat/completions", json={"model": "x", "messages": []}).status_code == 400
        assert (c.get("/nowhere").status_code, c.post("/api/tags").status_code) == (404, 405)


def test_ollama_double_streams_ndjson_and_reports_counts(ollama: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = ollama
    with httpx.Client(timeout=10) as client:
        OllamaEngine().create_model(url, client, request(), str(gguf(tmp_path / "smol.gguf")), Recorder())
        body = {"model": "smol", "messages": [{"role": "user", "content": "Say hello."}], "options": {"num_predict": 5}}
        with client.stream("POST", f"{url}/api/chat", json=body) as resp:
            assert resp.headers["content-type"] == "application/x-ndjson"
            lines = [httpx.Response(200, content=line).json() for line in resp.iter_lines() if line]
        ps = client.get(f"{url}/api/ps").json()["models"]
        version = client.get(f"{url}/api/version").json()
    assert [line["done"] for line in lines] == [False] * 5 + [True]
    assert lines[-1]["eval_count"] == 5 and lines[-1]["prompt_eval_count"] == 2 and lines[-1]["done_reason"] == "length"
    assert "".join(line["message"]["content"] for line in lines).startswith("Hello!")
    assert [m["name"] for m in ps] == ["smol:latest"] and version == {"version": "0.32.15"}


def _vllm(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "VLLM_DOUBLE_LOAD_SECONDS": "0"}
    cmd = [sys.executable, str(DOUBLES / "vllm" / "vllm"), "serve", *args]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3)
    except subprocess.TimeoutExpired as exc:  # it parsed its arguments and serves: that is the success
        return subprocess.CompletedProcess(cmd, 0, str(exc.stdout or ""), str(exc.stderr or ""))


def test_vllm_double_refuses_an_unknown_flag_like_vllms_argparse(tmp_path: Path) -> None:
    done = _vllm("--model", str(tmp_path), "--port", str(free_port()), "--max-modle-len", "8", tmp_path=tmp_path)
    assert done.returncode == 2 and "unrecognized arguments: --max-modle-len" in done.stderr


def test_vllm_double_refuses_a_model_directory_that_does_not_exist(tmp_path: Path) -> None:
    done = _vllm("--model", str(tmp_path / "absent"), tmp_path=tmp_path)
    assert done.returncode == 1 and "Can't load the configuration" in done.stderr


def test_vllm_double_accepts_what_the_console_generates(tmp_path: Path) -> None:
    req = EngineRequest(
        deployment_id="3", console_id="c1", node_name="n1", engine="vllm", image=VLLM_IMAGE,
        served_model_name="r1-7b", model_path="r1", host_port=20001, models_dir=None, tensor_parallel=2,
        max_model_len=8192, max_num_seqs=30, dtype="half", gpu_memory_utilization=0.9,
        extra_args={"--enable-prefix-caching": True, "max_num_batched_tokens": 4096},
    )  # fmt: skip
    args = serve_args(req, host="127.0.0.1", port=free_port())
    args[args.index("--model") + 1] = str(tmp_path)
    done = _vllm(*args, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "'served_model_name': ['r1-7b']" in done.stdout and "'enable_prefix_caching': True" in done.stdout
