import os

# Tiny test models run fastest on one thread, and several OpenMP pools on two cores thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.training.launch import open_training

WORDS = (
    "alice rabbit queen hatter tea party garden croquet cat grin door key bottle drink me "
    "curious shrink grow tiny tall white gloves fan watch pocket late dear"
).split()


def make_text(n_chars: int, seed: int = 0) -> str:
    """Deterministic English-like text: short sentences from a small vocabulary of words."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", ","]) + rng.choice([" ", "\n"])
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)[:n_chars]


@pytest.fixture(scope="session", autouse=True)
def cache_in_tmp(tmp_path_factory):
    """Encoded corpora go to the session's own directory, never the real ~/.cache; subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARRNN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        patch.delenv("CHARRNN_CACHE_MAX_MB", raising=False)
        yield


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A test's own cache directory, for tests that count or clear its entries."""
    from charrnn.data import cache

    directory = tmp_path / "cache"
    monkeypatch.setenv(cache.DIR_VARIABLE, str(directory))
    monkeypatch.delenv(cache.MAX_MB_VARIABLE, raising=False)
    return directory


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(make_text(20_000))
    return path


# Pinned in full, so that tuning the defaults for Alice does not change what these tests train.
TINY_MODEL = {
    "cell": "lstm",
    "num_layers": 2,
    "hidden_size": 32,
    "embed_size": 8,
    "dropout": 0.1,
    "embed_dropout": 0.0,
    "weight_drop": 0.0,
}
TINY_TRAIN = {
    "seq_len": 32,
    "batch_size": 8,
    "max_steps": 30,
    "eval_every": 10,
    "warmup_steps": 5,
    "lr": 1e-2,
    "ema_decay": 0.0,
}


def train_run(out_dir, data, model=None, force=False, **train):
    """Train to the end of the budget in-process; return the trainer's outcome."""
    options = {"data": str(data), **TINY_TRAIN, **train, **TINY_MODEL, **(model or {})}
    trainer = open_training(out_dir, options, force=force)
    try:
        for _ in trainer.run():
            pass
        return trainer.outcome()
    finally:
        trainer.close()


def interrupt_and_resume(out_dir, train_options, model_options, stop_at):
    """Train until `stop_at` (as Ctrl-C would stop it), then resume in a new Trainer to the end of the budget."""
    trainer = open_training(out_dir, {**train_options, **model_options})
    try:
        for progress in trainer.run():
            if progress.step == stop_at:
                trainer.stop.set()
    finally:
        trainer.close()
    resumed = open_training(out_dir, {}, resume=True)
    try:
        for _ in resumed.run():
            pass
    finally:
        resumed.close()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A small trained LSTM run directory, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("tiny")
    data = root / "text.txt"
    data.write_text(make_text(20_000))
    train_run(root / "run", data)
    return root / "run"


@pytest.fixture(autouse=True)
def _restore_torch_rng_and_threads():
    """Commands run in-process through CliRunner; --seed and --threads must not leak into the next test."""
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    yield
    torch.set_rng_state(state)
    torch.set_num_threads(threads)


# The CLI through Typer's runner, as a user types it: every argument a string.
TINY = ["--hidden-size", "16", "--embed-size", "4", "--layers", "1", "--seq-len", "16", "--batch-size", "4"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_error(result, *fragments, code=1):
    """`error: ...` on stderr with the exit code, no traceback, and each fragment in the message."""
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr.replace("\n", " "), result.stderr
