"""Texts of a handful of characters and budgets from the smallest up, through the CLI runner (issue 29).

Whatever the text's length, its vocabulary and the budget, `train` ends in success or one `error:` line
(exit 1), never a traceback; so do `eval`, `sample` and `fill` given tiny texts and primes. Hypothesis
generates the inputs; each example is small enough to keep the whole file to seconds.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY, run

EXAMPLES = settings(
    max_examples=12,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALPHABET = "ab\nc é😀"


def assert_ends_cleanly(result):
    """Success, or exactly one `error:` line and exit 1; no traceback either way."""
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == (result.exit_code == 1), result.stderr


def text_of(length: int, vocabulary: int, seed: int) -> str:
    chars = ALPHABET[:vocabulary]
    return "".join(chars[(seed + i * i) % len(chars)] for i in range(length))


BUDGETS = st.one_of(
    st.just([]),
    st.integers(1, 3).map(lambda n: ["--max-steps", str(n)]),
    st.sampled_from(["0.001s", "0.05s", "0.5s", "1s", "2s"]).map(lambda t: ["--max-time", t]),
)


@EXAMPLES
@given(
    length=st.one_of(st.integers(0, 3), st.integers(4, 300)),
    vocabulary=st.integers(1, len(ALPHABET)),
    seed=st.integers(0, 10),
    budget=BUDGETS,
    sized=st.booleans(),
)
def test_train_on_any_short_text_with_any_budget(tmp_path_factory, length, vocabulary, seed, budget, sized):
    root = tmp_path_factory.mktemp("tiny-train")
    data = root / "text.txt"
    data.write_text(text_of(length, vocabulary, seed), encoding="utf-8")
    # With no budget and no sizes the recipe trains at least its 200 steps: a budget keeps the example short.
    shape = TINY if sized else []
    if not budget and not sized:
        budget = ["--max-steps", "2"]
    result = run("train", "--data", data, "--out", root / "run", *shape, *budget)
    assert_ends_cleanly(result)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A language model and a fill model, a few steps each."""
    from tests.conftest import make_text

    root = tmp_path_factory.mktemp("tiny-runs")
    data = root / "text.txt"
    data.write_text(make_text(20_000))
    lm = run("train", "--data", data, "--out", root / "lm", *TINY, "--max-steps", "2")
    fill = run(
        "train", "--data", data, "--out", root / "fill", *TINY, "--max-steps", "2", "--objective", "fill",
        "--bidirectional",
    )  # fmt: skip
    assert lm.exit_code == 0 and fill.exit_code == 0, lm.output + fill.output
    return root, data.read_text()


def short_texts():
    return st.text(alphabet=st.sampled_from("The \n_éxZ😀"), max_size=3)


@EXAMPLES
@given(text=short_texts())
def test_eval_scores_or_refuses_any_tiny_text(tiny_runs, text):
    root, _ = tiny_runs
    path = root / "score.txt"
    path.write_text(text, encoding="utf-8")
    assert_ends_cleanly(run("eval", root / "lm", "--data", path))


@EXAMPLES
@given(prime=short_texts(), length=st.integers(0, 3))
def test_sample_continues_or_refuses_any_tiny_prime(tiny_runs, prime, length):
    root, _ = tiny_runs
    assert_ends_cleanly(run("sample", root / "lm", "--prime", prime, "--length", length, "--seed", 1))


@EXAMPLES
@given(text=short_texts())
def test_fill_restores_or_refuses_any_tiny_text(tiny_runs, text):
    root, _ = tiny_runs
    assert_ends_cleanly(run("fill", root / "fill", text, "--seed", 1))


@pytest.fixture(scope="module")
def score_server(tiny_runs):
    pytest.importorskip("fastapi", reason="charrnn serve needs the [serve] extra (FastAPI, uvicorn)")
    import httpx

    from charrnn.api import load
    from charrnn.serving import app as serve

    root, _ = tiny_runs
    app = serve.build_app(load(root / "lm"), root / "lm", max_length=100, max_concurrent=4)
    with serve.background(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@EXAMPLES
@given(text=short_texts(), skip_unknown=st.booleans())
def test_the_server_scores_or_refuses_any_tiny_text_naming_the_field(score_server, text, skip_unknown):
    response = score_server.post("/v1/score", json={"text": text, "skip_unknown": skip_unknown})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        error = response.json()["error"]
        assert error.startswith("text "), error
        assert "--" not in error, error  # the advice names the request's fields, not command-line flags
