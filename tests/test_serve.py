import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from typer.testing import CliRunner

from charrnn.api import load
from charrnn.cli import app as cli
from charrnn.cli.sample import SAMPLE_SEPARATOR
from charrnn.generation.sampling import generate
from charrnn.settings.config import SampleConfig
from charrnn.storage import checkpoint

pytest.importorskip("fastapi", reason="charrnn serve needs the [serve] extra (FastAPI, uvicorn)")
pytest.importorskip("uvicorn", reason="charrnn serve needs the [serve] extra (FastAPI, uvicorn)")
from charrnn.serving import app as serve  # noqa: E402

runner = CliRunner()
JSON = {"content-type": "application/json"}
MAX_LENGTH = 1_000_000


def run_cli(*args):
    return runner.invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def server(tiny_run):
    """A real server on a free loopback port: its URL, and the app's batcher."""
    app = serve.build_app(load(tiny_run), tiny_run, max_length=MAX_LENGTH, max_concurrent=64)
    with serve.background(app) as url:
        yield url, app.state.batcher


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def events_of(response) -> list:
    """The data of each server-sent event: a dict, or the final '[DONE]'."""
    found = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def streamed(client, body) -> tuple[httpx.Response, list]:
    with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
        return response, events_of(response)


def until(condition, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_healthz_and_the_model_as_info_describes_it(client, tiny_run):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = run_cli("info", tiny_run, "--json")
    assert info.exit_code == 0, info.output
    assert client.get("/v1/model").json() == json.loads(info.stdout)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"prime": "Alice ", "length": 120, "temperature": 1.0},
        {"prime": "The queen", "length": 80, "top_k": 5},
        {"prime": "t", "length": 80, "top_p": 0.9, "temperature": 1.3},
        {"prime": "Tea ", "length": 60, "temperature": 0},
        {"prime": "Alice ", "length": 50, "num_samples": 3},
        {"length": 0, "prime": "cat"},
    ],
)
def test_generate_gives_the_text_charrnn_sample_prints(client, tiny_run, options):
    seed = 11
    response = client.post("/v1/generate", json={**options, "seed": seed})
    assert response.status_code == 200, response.text
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    printed = run_cli("sample", tiny_run, *flags, "--seed", seed)
    assert printed.exit_code == 0, printed.output
    assert response.json() == {"samples": printed.stdout.split(SAMPLE_SEPARATOR), "seed": seed}


def test_without_a_seed_the_response_names_the_one_it_used(client, tiny_run):
    body = client.post("/v1/generate", json={"prime": "Alice ", "length": 40}).json()
    again = client.post("/v1/generate", json={"prime": "Alice ", "length": 40, "seed": body["seed"]}).json()
    assert again == body
    assert (
        run_cli("sample", tiny_run, "--prime", "Alice ", "--length", 40, "--seed", body["seed"]).stdout
        == (body["samples"][0])
    )


def test_a_stream_sends_the_prime_then_the_new_text_then_done(client):
    body = {"prime": "Alice ", "length": 300, "seed": 5}
    response, events = streamed(client, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-seed"] == "5"
    assert events[0] == {"text": "Alice "} and events[-1] == "[DONE]"
    text = "".join(event["text"] for event in events[:-1])
    assert text == client.post("/v1/generate", json=body).json()["samples"][0]


def test_score_is_what_eval_data_json_prints(client, tiny_run, tmp_path):
    text = "Alice was beginning to get very tired of sitting by her sister on the bank.\nThe queen!"
    known = "".join(c for c in text if c in client.get("/v1/model").json()["vocab"])
    path = tmp_path / "score.txt"
    path.write_text(known)
    printed = run_cli("eval", tiny_run, "--data", path, "--json")
    assert printed.exit_code == 0, printed.output
    assert client.post("/v1/score", json={"text": known}).json() == json.loads(printed.stdout)
    skipped = client.post("/v1/score", json={"text": text, "skip_unknown": True}).json()
    assert skipped["skipped"] == len(text) - len(known)


BAD_REQUESTS = [
    # (path, body, status, a fragment of the error)
    ("/v1/generate", {"temperature": -1}, 422, "temperature must be at least 0"),
    ("/v1/generate", {"temperature": "hot"}, 422, "temperature: input should be a valid number"),
    ("/v1/generate", {"top_p": 2}, 422, "top_p must be"),
    ("/v1/generate", {"top_k": 0}, 422, "top_k must be at least 1"),
    ("/v1/generate", {"length": -5}, 422, "length must be at least 0"),
    ("/v1/generate", {"length": True}, 422, "length: input should be a valid integer"),
    ("/v1/generate", {"seed": -1}, 422, "seed must be at least 0"),
    ("/v1/generate", {"num_samples": 0}, 422, "num_samples must be at least 1"),
    ("/v1/generate", {"prime": "tea €"}, 422, "'€'"),
    ("/v1/generate", {"temprature": 0.5}, 422, "unknown field 'temprature'"),
    ("/v1/generate", {"stream": True, "num_samples": 2}, 422, "a stream sends one sample"),
    ("/v1/generate", {"length": MAX_LENGTH + 1}, 413, "Send a length of at most 1,000,000"),
    ("/v1/generate", {"num_samples": 65}, 413, "Send a num_samples of at most 64"),
    ("/v1/generate", {"prime": "tea " * 100_000, "num_samples": 8}, 413, "shorter prime"),
    ("/v1/generate", [1, 2], 422, "not a JSON object"),
    ("/v1/generate", {"prime": "tea \ud800"}, 422, "half of a UTF-16 surrogate pair"),
    ("/v1/score", {"text": "tea €"}, 422, "'€'"),
    ("/v1/score", {"text": "\udfff tea"}, 422, "half of a UTF-16 surrogate pair"),
    ("/v1/score", {"text": "t"}, 422, "Pass a longer `text`"),
    ("/v1/score", {"text": "tea", "model": "../../etc"}, 404, "no model named '../../etc'"),
    ("/v1/generate", {"model": "/tmp/evil.pt"}, 404, "Send a `model` of"),
    ("/v1/completions", {"prompt": "tea", "n": 2}, 422, "Send n 1"),
    ("/v1/completions", {"prompt": "tea", "max_tokens": -1}, 422, "max_tokens: input should be greater"),
    ("/v1/completions", {"prompt": ["tea"]}, 422, "prompt: input should be a valid string"),
    ("/v1/completions", {"max_tokens": MAX_LENGTH + 1}, 413, "Send a max_tokens of at most"),
    ("/v1/completions", {"prompt": "tea €"}, 422, "'€'"),
    ("/v1/completions", {"prompt": "tea", "stop": "\n"}, 422, "unknown field 'stop'"),
    ("/v1/completions", {"top_p": 0}, 422, "top_p: input should be greater than 0"),
    ("/v1/score", {}, 422, "text: field required"),
]


@pytest.mark.parametrize("path, body, status, fragment", BAD_REQUESTS)
def test_bad_requests_get_a_4xx_that_says_what_and_how(client, path, body, status, fragment):
    # json.dumps escapes what is not ASCII, so that a lone surrogate gets to the server as JSON spells it.
    response = client.post(path, content=json.dumps(body), headers=JSON)
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]
    error = response.json()["error"]
    # OpenAI's endpoints answer in OpenAI's shape, which its clients read.
    message = error["message"] if path == "/v1/completions" else error
    assert fragment in message
    # The advice names what a client sends, not a flag of the command line.
    assert " --" not in message
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "content, status, fragment",
    [
        (b'{"prime": "Alice ",', 400, "not valid JSON"),
        (b"", 422, "no body"),
        (b"prime=Alice", 400, "not valid JSON"),
        (b'{"prime": "\xff"}', 400, "cannot be read as JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "cannot be read as JSON"),
    ],
)
def test_a_body_that_is_not_json_is_refused(client, content, status, fragment):
    response = client.post("/v1/generate", content=content, headers=JSON)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_wrong_paths_and_methods_get_error_bodies_too(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and "no such endpoint: /v1/nothing" in missing.json()["error"]
    wrong = client.get("/v1/generate")
    assert wrong.status_code == 405 and "does not take GET" in wrong.json()["error"]


def test_the_openapi_schema_documents_the_fields_and_their_defaults(client):
    schema = client.get("/openapi.json").json()
    fields = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert fields["length"]["default"] == SampleConfig().length
    assert fields["temperature"]["default"] == SampleConfig().temperature
    assert {"prime", "top_k", "top_p", "seed", "num_samples", "stream"} <= set(fields)
    assert set(schema["paths"]) >= {"/healthz", "/v1/model", "/v1/generate", "/v1/score"}


@pytest.fixture
def small_server(tiny_run):
    app = serve.build_app(load(tiny_run), tiny_run, max_length=MAX_LENGTH, max_concurrent=2, max_body_bytes=1000)
    with serve.background(app) as url:
        yield url, app.state.batcher


def test_a_body_over_the_limit_gets_413_with_or_without_a_length(small_server):
    url, _ = small_server
    with httpx.Client(base_url=url) as client:
        declared = client.post("/v1/score", json={"text": "a" * 2000})
        assert declared.status_code == 413 and "limit of 1,000 bytes" in declared.json()["error"]
        chunked = client.post("/v1/score", content=(b'{"text": "' + b"a" * 500 for _ in range(4)))
        assert chunked.status_code == 413 and "error" in chunked.json()


def test_more_streams_than_max_concurrent_get_429_at_once(small_server):
    url, batcher = small_server
    with httpx.Client(base_url=url, timeout=30) as a, httpx.Client(base_url=url, timeout=30) as b:
        with (
            a.stream("POST", "/v1/generate", json={"length": MAX_LENGTH, "stream": True}) as first,
            b.stream("POST", "/v1/generate", json={"length": MAX_LENGTH, "stream": True}) as second,
        ):
            assert first.status_code == second.status_code == 200
            started = time.monotonic()
            refused = httpx.post(f"{url}/v1/generate", json={"length": 10}, timeout=30)
            assert refused.status_code == 429 and time.monotonic() - started < 5
            assert "limit of 2 samples" in refused.json()["error"]
            assert refused.headers["retry-after"] == "1"
            scored = httpx.post(f"{url}/v1/score", json={"text": "the cat"}, timeout=30)
            assert scored.status_code == 429 and int(scored.headers["retry-after"]) > 0
    assert until(lambda: batcher.rows_in_use == 0)
    assert httpx.post(f"{url}/v1/generate", json={"length": 10}, timeout=30).status_code == 200


def test_a_client_that_disconnects_stops_its_generation(server):
    url, batcher = server
    assert until(lambda: batcher.rows_in_use == 0)
    with httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/generate", json={"length": MAX_LENGTH, "stream": True}) as response:
            first = next(line for line in response.iter_lines() if line.startswith("data: "))
            assert batcher.rows_in_use == 1, f"the generation is not running after its first event: {first}"
    assert until(lambda: batcher.rows_in_use == 0, timeout=5)
    steps = batcher.steps
    time.sleep(0.3)
    assert batcher.steps == steps


def test_a_client_that_leaves_before_its_samples_are_done_stops_their_generation(server):
    url, batcher = server
    assert until(lambda: batcher.rows_in_use == 0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/generate", json={"length": MAX_LENGTH, "num_samples": 2}, timeout=0.5)
    assert until(lambda: batcher.rows_in_use == 0, timeout=5)


def reference_samples(loaded, body) -> list[str]:
    """What generate() gives for a request's body, on its own."""
    prime = body.get("prime", "")
    config = SampleConfig(**{k: v for k, v in body.items() if k not in ("prime", "stream")})
    samples = [prime] * config.num_samples
    for chars in generate(loaded.model, loaded.vocab, config, prime, config.seed):
        samples = [s + c for s, c in zip(samples, chars)]
    return samples


def test_requests_that_arrive_together_are_stepped_together_and_keep_their_own_text(server, tiny_run):
    url, batcher = server
    loaded = load(tiny_run)
    rng = random.Random(3)
    bodies = []
    for seed in range(16):
        stream = seed % 2 == 0
        bodies.append(
            {
                "prime": rng.choice(["", "A", "Alice ", "The queen said "]),
                "length": rng.randint(100, 400),
                "temperature": rng.choice([0.0, 0.5, 1.0]),
                "top_k": rng.choice([None, 4]),
                "top_p": rng.choice([None, 0.8]),
                "num_samples": 1 if stream else rng.randint(1, 3),
                "seed": seed,
                "stream": stream,
            }
        )
    steps_before = batcher.steps
    results = [None] * len(bodies)

    def request(i):
        with httpx.Client(base_url=url, timeout=60) as client:
            if bodies[i]["stream"]:
                results[i] = ["".join(e["text"] for e in streamed(client, bodies[i])[1][:-1])]
            else:
                results[i] = client.post("/v1/generate", json=bodies[i]).json()["samples"]

    threads = [threading.Thread(target=request, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [reference_samples(loaded, body) for body in bodies]
    # Stepped one after another they would take the sum of their lengths in steps.
    assert batcher.steps - steps_before < sum(b["length"] for b in bodies) / 2


def test_the_server_answers_while_long_streams_run(server):
    url, _ = server
    stop = threading.Event()

    def stream_until_stopped():
        with httpx.Client(base_url=url, timeout=60) as client:
            with client.stream("POST", "/v1/generate", json={"length": MAX_LENGTH, "stream": True}) as response:
                for _ in response.iter_lines():
                    if stop.is_set():
                        return

    threads = [threading.Thread(target=stream_until_stopped) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        assert time.monotonic() - started < 2
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_serve_without_a_checkpoint_fails_with_an_error(tmp_path):
    result = run_cli("serve", tmp_path / "missing")
    assert result.exit_code == 1 and result.stderr.startswith("error: no checkpoint at")


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_refuses_a_port_out_of_range_before_loading(tiny_run, port):
    result = run_cli("serve", tiny_run, "--port", port)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: --port must be at least 0 and at most 65535, got {port}")


def test_serve_refuses_a_port_that_is_not_a_number(tiny_run):
    assert run_cli("serve", tiny_run, "--port", "http").exit_code == 2


def test_serve_refuses_a_fill_model(tiny_run, tmp_path):
    content = checkpoint.load(tiny_run)
    content["train_config"] = {**content["train_config"], "objective": "fill"}
    checkpoint.save(tmp_path / "fill.pt", content)
    result = run_cli("serve", tmp_path / "fill.pt", "--port", 0)
    assert result.exit_code == 1 and "fill model" in result.stderr


def test_serve_names_a_port_in_use(tiny_run):
    with serve.background(serve.build_app(load(tiny_run), tiny_run, max_length=10, max_concurrent=1)) as url:
        result = run_cli("serve", tiny_run, "--port", url.rsplit(":", 1)[1])
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1" in result.stderr


def test_without_fastapi_serve_says_what_to_install(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "charrnn.serving.app")
    monkeypatch.delattr("charrnn.serving.app")
    # A host no machine has: should the import succeed after all, the command ends instead of serving.
    result = run_cli("serve", tiny_run, "--host", "256.0.0.1")
    assert result.exit_code == 1 and "pip install 'charrnn-lm[serve]'" in result.stderr


def test_serve_prints_its_url_and_ctrl_c_ends_it_with_130(tiny_run):
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", str(tiny_run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        first = process.stderr.readline()
        assert first.startswith("serving http://127.0.0.1:"), first
        # The socket listens before the URL is printed, so the request waits for the server, if need be.
        assert httpx.get(f"{first.split()[1]}/healthz", timeout=30).json() == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        out, rest = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted" in rest
    assert out == ""


BAD_MIX = [(path, body, status) for path, body, status, _ in BAD_REQUESTS if len(json.dumps(body)) < 1000]


async def _stream_timed(client: httpx.AsyncClient, body: dict) -> tuple[float, str]:
    """Seconds to the first new character, and the whole text, of one streamed request."""
    started, first, text = time.perf_counter(), None, ""
    async with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return first, text
            if line.startswith("data: "):
                text += json.loads(line[6:])["text"]
                if first is None and len(text) > len(body.get("prime", "")):
                    first = time.perf_counter() - started
    raise AssertionError(f"the stream ended without [DONE] after {len(text)} characters")


@pytest.mark.slow
def test_under_load_every_good_request_is_answered_in_full_and_none_fails(server, capsys):
    url, batcher = server
    length = 200

    async def load_phase():
        deadline, burst, waits = time.monotonic() + 20, [], []

        async def client_loop(i):
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                # Each client's first request comes in the burst of all 64 at once, on 64 new connections.
                times = burst
                while time.monotonic() < deadline:
                    body = {"prime": "Alice ", "length": length, "seed": i}
                    first, text = await _stream_timed(client, body)
                    assert len(text) == len("Alice ") + length
                    times.append(first)
                    times = waits

        await asyncio.gather(*(client_loop(i) for i in range(64)))
        return burst, waits

    async def mixed_phase():
        rng = random.Random(0)
        requests = [("bad", rng.choice(BAD_MIX)) for _ in range(1000)] + [("good", None) for _ in range(200)]
        rng.shuffle(requests)
        statuses, queue = [], list(enumerate(requests))

        async def worker():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                while queue:
                    i, (kind, bad) = queue.pop()
                    if kind == "good" and i % 2:
                        _, text = await _stream_timed(client, {"length": 50, "seed": i})
                        assert len(text) == 50
                        statuses.append(200)
                    elif kind == "good":
                        response = await client.post("/v1/generate", json={"prime": "Tea ", "length": 50, "seed": i})
                        assert response.status_code == 200 and len(response.json()["samples"][0]) == 54
                        statuses.append(200)
                    else:
                        path, body, status = bad
                        response = await client.post(path, content=json.dumps(body), headers=JSON)
                        assert response.status_code == status and "error" in response.json(), response.text
                        statuses.append(response.status_code)
            return statuses

        await asyncio.gather(*(worker() for _ in range(16)))
        return statuses

    burst, waits = asyncio.run(load_phase())
    statuses = asyncio.run(mixed_phase())
    assert len(statuses) == 1200 and max(statuses) < 500
    assert batcher.rows_in_use == 0
    cuts = statistics.quantiles(waits, n=100)
    with capsys.disabled():
        print(
            f"\nserve load: {len(burst) + len(waits)} streams of {length} characters from 64 clients in 20 s; "
            f"time to first character p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms "
            f"(the first 64, all at once: p50 {statistics.median(burst) * 1000:.0f} ms, max "
            f"{max(burst) * 1000:.0f} ms); then 1,000 bad requests and 200 good ones, no 5xx "
            f"({torch.get_num_threads()} torch thread(s), machine shared)"
        )
