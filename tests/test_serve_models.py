"""Several runs served by one process, each under its run directory's name, and every kind of language model
the CLI trains among them: a ReLU rnn, whose state restarts every `context` characters, included."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from charrnn.api import load
from charrnn.cli.sample import SAMPLE_SEPARATOR
from charrnn.serving.registry import names_for
from charrnn.storage import checkpoint
from tests.conftest import make_text, run, train_run

pytest.importorskip("fastapi", reason="charrnn serve needs the [serve] extra (FastAPI, uvicorn)")
from charrnn.serving import app as serve  # noqa: E402
from charrnn.serving.limits import ServerLimits  # noqa: E402


@pytest.fixture(scope="module")
def bounded_run(tmp_path_factory):
    """A ReLU rnn trained on windows of 4 characters: read as trained, its state restarts every 2, which
    changes its text from the first restart on."""
    root = tmp_path_factory.mktemp("bounded")
    data = root / "text.txt"
    data.write_text(make_text(20_000))
    train_run(root / "run", data, model={"cell": "rnn", "nonlinearity": "relu"}, seq_len=4, max_steps=50)
    assert load(root / "run").model.config.context == 4
    return root / "run"


@pytest.fixture(scope="module")
def server(tiny_run, bounded_run):
    """The tiny LSTM first, then the bounded rnn: both run directories are named `run`."""
    models = [(load(tiny_run), tiny_run), (load(bounded_run), bounded_run)]
    app = serve.build_models_app(models, ServerLimits(max_length=100_000, max_concurrent=4))
    with serve.background(app) as url:
        yield url, app.state.registry


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


def printed(run_dir, *flags) -> list[str]:
    result = run("sample", run_dir, *flags)
    assert result.exit_code == 0, result.output
    return result.stdout.split(SAMPLE_SEPARATOR)


def test_runs_are_named_by_their_directories_and_equal_names_are_told_apart(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "run").mkdir(parents=True)
    (tmp_path / "c.pt").write_bytes(b"")
    paths = [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "c.pt", tmp_path / "a" / "run"]
    assert names_for(paths) == ["run", "run-2", "c", "run-3"]


def test_models_lists_every_run_and_the_first_answers_by_default(client, tiny_run, bounded_run):
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["run", "run-2"]
    assert client.get("/v1/model").json() == client.get("/v1/model", params={"model": "run"}).json()
    assert client.get("/v1/model", params={"model": "run-2"}).json()["model"]["cell"] == "rnn"
    body = {"prime": "Alice ", "length": 60, "seed": 2}
    assert (
        client.post("/v1/generate", json=body).json()
        == client.post("/v1/generate", json=body | {"model": "run"}).json()
    )


@pytest.mark.parametrize(
    "options",
    [
        {"prime": "Alice was beginning to get very tired of sitting by her sister", "length": 150},
        {"prime": "T", "length": 100, "temperature": 1.2, "top_k": 5},
        {"length": 90, "temperature": 0},
    ],
)
def test_a_bounded_context_model_gives_the_text_charrnn_sample_prints(client, bounded_run, options):
    body = {**options, "seed": 4, "model": "run-2"}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    expected = printed(bounded_run, *flags, "--seed", 4)
    assert client.post("/v1/generate", json=body).json()["samples"] == expected
    with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert "".join(json.loads(d)["text"] for d in data[:-1]) == expected[0]


def test_a_bounded_context_completion_is_the_text_charrnn_sample_prints(client, bounded_run):
    prompt = "Alice was beginning"
    body = {"model": "run-2", "prompt": prompt, "max_tokens": 100, "temperature": 0.9, "seed": 6}
    completion = client.post("/v1/completions", json=body).json()
    expected = printed(bounded_run, "--prime", prompt, "--length", 100, "--temperature", 0.9, "--seed", 6)
    assert prompt + completion["choices"][0]["text"] == expected[0]


def test_a_bounded_context_model_takes_one_sample_per_request(client):
    response = client.post("/v1/generate", json={"model": "run-2", "num_samples": 2})
    assert response.status_code == 422 and "Send num_samples 1" in response.json()["error"]


def test_a_client_that_leaves_a_bounded_stream_frees_its_row(server):
    url, registry = server
    batcher = registry.get("run-2").batcher
    with httpx.Client(base_url=url, timeout=30) as client:
        body = {"model": "run-2", "length": 100_000, "stream": True}
        with client.stream("POST", "/v1/generate", json=body) as response:
            lines = response.iter_lines()
            # Past a restart or two: the row is held from one piece to the next.
            text = ""
            while len(text) < 50:
                line = next(lines)
                if line.startswith("data: "):
                    text += json.loads(line[6:])["text"]
            assert batcher.rows_in_use == 1
    for _ in range(500):
        if batcher.rows_in_use == 0:
            break
        httpx.get(f"{url}/healthz")
    assert batcher.rows_in_use == 0


def test_a_fill_model_among_others_is_refused_with_one_error_line(tiny_run, tmp_path):
    content = checkpoint.load(tiny_run)
    content["train_config"] = {**content["train_config"], "objective": "fill"}
    checkpoint.save(tmp_path / "fill.pt", content)
    result = run("serve", tiny_run, tmp_path / "fill.pt", "--port", 0)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "fill model" in result.stderr


def test_charrnn_serve_serves_every_run_it_is_given(tiny_run, bounded_run):
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", str(tiny_run), str(bounded_run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        url = process.stderr.readline().split()[1]
        listed = httpx.get(f"{url}/v1/models", timeout=30).json()
        body = {"model": "run-2", "prime": "Alice ", "length": 40, "seed": 1}
        generated = httpx.post(f"{url}/v1/generate", json=body, timeout=30).json()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        process.kill()
    assert [m["id"] for m in listed["data"]] == ["run", "run-2"]
    assert generated["samples"] == printed(bounded_run, "--prime", "Alice ", "--length", 40, "--seed", 1)
    assert process.returncode == 130
