"""`manage.py capacity`: the planner's answer as JSON or a table, and errors that name the option."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from appliance.catalog.planner import PLAN_KEYS

pytestmark = pytest.mark.django_db

STANDARD = ["--model", "deepseek-r1-distill-qwen-32b", "--gpus", "4", "--gpu-memory", "24", "--context", "4096"]


def run(*args: str) -> str:
    out = StringIO()
    call_command("capacity", *args, stdout=out)
    return out.getvalue()


def test_json_has_every_plan_key() -> None:
    data = json.loads(run(*STANDARD, "--dtype", "fp16", "--tp", "4", "--json"))
    assert tuple(data) == PLAN_KEYS
    assert (data["weights_bytes"], data["kv_bytes_per_token"]) == (65_527_752_704, 262_144)
    assert (data["max_tokens_in_cache"], data["max_concurrent_sequences"], data["fits"]) == (79_349, 19, True)
    assert data["n_gpu_layers"] is None


def test_gguf_json_gives_gpu_layers_and_host_ram() -> None:
    args = ["--model", "deepseek-r1-ud-iq1_s", "--engine", "llamacpp", "--gpus", "1", "--gpu-memory", "24"]
    data = json.loads(run(*args, "--context", "2048", "--cpu-ram", "256", "--json"))
    assert data["n_gpu_layers"] == 7 and data["cpu_ram_bytes"] > 100 * 1024**3


def test_mla_json_for_r1_on_two_h20_nodes() -> None:
    args = ["--model", "deepseek-r1", "--gpus", "16", "--gpu-memory", "96", "--context", "8192", "--tp", "8"]
    data = json.loads(run(*args, "--pp", "2", "--kv-dtype", "bf16", "--json"))
    assert data["kv_bytes_per_token"] == (512 + 64) * 61 * 2 and data["max_concurrent_sequences"] == 167


def test_table_is_readable() -> None:
    text = run(*STANDARD, "--dtype", "fp16")
    assert "max_concurrent_sequences   19" in text and "61.03 GiB" in text and "fits                       yes" in text


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--tp", "3"], "--tp (tensor_parallel)"),
        (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--dtype", "int3"], "--dtype"),
        (["--engine", "tgi"], "--engine"),
    ],
)
def test_errors_name_the_option(extra: list[str], option: str) -> None:
    with pytest.raises(CommandError, match=option.replace("(", r"\(").replace(")", r"\)")):
        run(*STANDARD, *extra, "--json")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--gpus", "0"], "--gpus"),
        (["--gpu-memory", "-24"], "--gpu-memory"),
        (["--context", "200000"], "--context"),
        (["--model", "gpt-5"], "--model"),
    ],
)
def test_bad_numbers_name_the_option(args: list[str], option: str) -> None:
    values = dict(zip(STANDARD[::2], STANDARD[1::2], strict=True))
    values.update(dict(zip(args[::2], args[1::2], strict=True)))
    with pytest.raises(CommandError, match=f"^{option} "):
        run(*[token for pair in values.items() for token in pair])


def test_exit_status_is_non_zero_on_error() -> None:
    proc = subprocess.run(
        [sys.executable, "manage.py", "capacity", *STANDARD, "--tp", "3", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "--tp (tensor_parallel)" in proc.stderr and proc.stdout == ""
