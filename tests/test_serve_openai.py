"""OpenAI's completions API, called through the official `openai` client as a user calls it."""

import httpx
import pytest

from charrnn.api import load
from tests.conftest import run

pytest.importorskip("fastapi", reason="charrnn serve needs the [serve] extra (FastAPI, uvicorn)")
openai = pytest.importorskip("openai", reason="the [dev] extra installs the openai client")
from charrnn.serving import app as serve  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_run):
    """uvicorn on a free loopback port, and the app's batcher."""
    app = serve.build_app(load(tiny_run), tiny_run, max_length=10_000, max_concurrent=4)
    with serve.background(app) as url:
        yield url, app.state.batcher


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0) as c:
        yield c


def sampled(tiny_run, prompt, length, *flags) -> str:
    """The new characters `charrnn sample` prints after `prompt`."""
    printed = run("sample", tiny_run, "--prime", prompt, "--length", length, *flags)
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.startswith(prompt)
    return printed.stdout[len(prompt) :]


def test_a_completion_is_the_text_charrnn_sample_prints_for_its_seed(client, tiny_run):
    completion = client.completions.create(
        model="run", prompt="Alice ", max_tokens=150, temperature=0.7, top_p=0.9, seed=3
    )
    assert completion.object == "text_completion" and completion.model == "run"
    assert completion.id and completion.created > 0
    [choice] = completion.choices
    assert choice.text == sampled(tiny_run, "Alice ", 150, "--temperature", 0.7, "--top-p", 0.9, "--seed", 3)
    assert choice.index == 0 and choice.finish_reason == "length" and choice.logprobs is None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (6, 150)
    assert completion.usage.total_tokens == 156


def test_a_streamed_completion_sends_the_same_text_in_chunks_then_ends(client, tiny_run):
    chunks = list(client.completions.create(model="run", prompt="The ", max_tokens=300, seed=8, stream=True))
    assert len(chunks) > 1 and all(c.object == "text_completion" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    text = "".join(c.choices[0].text for c in chunks)
    assert text == client.completions.create(model="run", prompt="The ", max_tokens=300, seed=8).choices[0].text
    assert text == sampled(tiny_run, "The ", 300, "--temperature", 1, "--seed", 8)


def test_without_a_model_the_first_answers_and_models_lists_them(client):
    assert client.completions.create(model=None, prompt="A", max_tokens=5, temperature=0).choices[0].text
    listed = client.models.list()
    assert [(m.id, m.object, m.owned_by) for m in listed.data] == [("run", "model", "charrnn")]


def test_the_client_raises_what_the_server_refuses_with_the_field_to_change(client):
    with pytest.raises(openai.UnprocessableEntityError, match="Send n 1"):
        client.completions.create(model="run", prompt="A", n=2)
    with pytest.raises(openai.NotFoundError, match="no model named 'gpt-4'"):
        client.completions.create(model="gpt-4", prompt="A")
    with pytest.raises(openai.APIStatusError, match="Send a max_tokens of at most 10,000"):
        client.completions.create(model="run", prompt="A", max_tokens=10_001)
    with pytest.raises(openai.UnprocessableEntityError, match="temperature: input should be greater"):
        client.completions.create(model="run", prompt="A", temperature=-1)


def test_a_client_that_leaves_a_streamed_completion_frees_its_row(server, client):
    url, batcher = server
    stream = client.completions.create(model="run", prompt="A", max_tokens=10_000, stream=True)
    assert next(iter(stream)).choices[0].text
    assert batcher.rows_in_use == 1
    stream.close()
    deadline = httpx.Timeout(5)
    with httpx.Client(base_url=url, timeout=deadline) as plain:
        # Freed at the next step: a request for every row is then answered.
        for _ in range(100):
            if batcher.rows_in_use == 0:
                break
            plain.get("/healthz")
    assert batcher.rows_in_use == 0
