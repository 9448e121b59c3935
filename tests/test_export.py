import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from charrnn.api import load
from charrnn.cli import app
from charrnn.errors import CharRNNError
from charrnn.generation.sampling import Stepper, generate
from charrnn.serving.onnx_export import export
from charrnn.settings.config import SampleConfig
from charrnn.storage import checkpoint
from tests.conftest import make_text, train_run

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
PRIME = "Alice was "
LENGTH = 200
CELLS = {
    "rnn-tanh": {"cell": "rnn", "nonlinearity": "tanh", "num_layers": 1},
    "rnn-tanh-2": {"cell": "rnn", "nonlinearity": "tanh", "num_layers": 2},
    "lstm": {"cell": "lstm", "num_layers": 2},
    "gru": {"cell": "gru", "num_layers": 2},
    "lstm-tied": {"cell": "lstm", "num_layers": 2, "tie_embedding": True, "embed_size": 32},
}
# Where the snippet that samples without PyTorch is published; each copy must run.
SNIPPETS = [(ROOT / "docs" / "export.md", "## Sampling without PyTorch")]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "text.txt"
    path.write_text(make_text(20_000))
    return path


@pytest.fixture(scope="module", params=list(CELLS))
def exported(request, data):
    """A briefly trained run of each cell and its ONNX file."""
    run_dir = data.parent / request.param
    train_run(run_dir, data, model=CELLS[request.param], max_steps=150)
    loaded = load(run_dir)
    path = export(loaded, data.parent / f"{request.param}.onnx").path
    return loaded, ort.InferenceSession(str(path)), path


def onnx_step(session, ids, state):
    logits, *new_state = session.run(None, {"ids": np.asarray(ids, dtype=np.int64), **state})
    return logits, dict(zip(state, new_state))


def zero_onnx_state(session, config, batch):
    names = [i.name for i in session.get_inputs()][1:]
    return {name: np.zeros((config.num_layers, batch, config.hidden_size), np.float32) for name in names}


def onnx_greedy(session, loaded, primes, length):
    """Each prime stepped one character at a time from the zero state, then `length` greedy characters,
    all through the ONNX file; returns the texts and the ids fed at every step."""
    ids = [[loaded.vocab.index[ch] for ch in prime] for prime in primes]
    state = zero_onnx_state(session, loaded.model.config, len(primes))
    fed = []
    for position in range(len(primes[0]) + length):
        step_ids = [row[position] for row in ids]
        fed.append(step_ids)
        logits, state = onnx_step(session, step_ids, state)
        if position >= len(primes[0]) - 1 and position < len(primes[0]) + length - 1:
            for row, chosen in zip(ids, logits.argmax(-1).tolist()):
                row.append(chosen)
    return ["".join(loaded.vocab.chars[i] for i in row) for row in ids], fed


def largest_logit_difference(session, loaded, fed):
    """The largest |ONNX - Stepper| logit over every step of the ids `fed` (one list of ids per step)."""
    batch = len(fed[0])
    stepper = Stepper(loaded.model, batch)
    layers = stepper.zero_state()
    state = zero_onnx_state(session, loaded.model.config, batch)
    worst = 0.0
    with torch.inference_mode():
        for step_ids in fed:
            reference, layers = stepper.step(torch.tensor(step_ids), layers)
            logits, state = onnx_step(session, step_ids, state)
            worst = max(worst, float(np.abs(logits - reference.numpy()).max()))
    return worst


def test_onnx_steps_give_charrnns_logits_and_greedy_text(exported):
    loaded, session, _ = exported
    (text,), fed = onnx_greedy(session, loaded, [PRIME], LENGTH)
    assert len(set(text[len(PRIME) :])) >= 4, "the model should have learnt more than one repeated character"
    config = SampleConfig(length=LENGTH, temperature=0)
    assert text == PRIME + "".join(chars[0] for chars in generate(loaded.model, loaded.vocab, config, PRIME))
    assert largest_logit_difference(session, loaded, fed) <= 1e-4


def test_onnx_steps_many_streams_at_once(exported):
    loaded, session, _ = exported
    primes = ["Alice was ", "The queen ", "Tea party "]
    texts, fed = onnx_greedy(session, loaded, primes, LENGTH)
    assert texts == [onnx_greedy(session, loaded, [prime], LENGTH)[0][0] for prime in primes]
    assert largest_logit_difference(session, loaded, fed) <= 1e-4


def test_the_file_declares_its_inputs_outputs_and_metadata(exported):
    loaded, session, path = exported
    model = onnx.load(path)
    onnx.checker.check_model(model)
    lstm = loaded.model.config.cell == "lstm"
    assert [i.name for i in session.get_inputs()] == ["ids", "h", "c"][: 3 if lstm else 2]
    assert [o.name for o in session.get_outputs()] == ["logits", "h_out", "c_out"][: 3 if lstm else 2]
    assert session.get_inputs()[0].type == "tensor(int64)"
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["vocab"]) == loaded.vocab.chars
    assert json.loads(meta["model_config"]) == loaded.content["model_config"]
    assert meta["format"] == "charrnn-onnx-step" and meta["charrnn_version"] == loaded.content["charrnn_version"]


def python_block(path: Path, heading: str) -> str:
    """The first ```python block between `heading` and the next heading of the Markdown file at `path`."""
    text = path.read_text()
    assert heading in text.splitlines(), f"{path} has no heading {heading!r}"
    section = re.split(r"^#{1,6} ", text.split(f"\n{heading}\n", 1)[1], flags=re.M)[0]
    block = re.search(r"^```python\n(.*?)^```$", section, flags=re.M | re.S)
    assert block, f"no ```python block under {heading!r} in {path}"
    return block.group(1)


@pytest.mark.parametrize("path, heading", SNIPPETS, ids=[str(p.relative_to(ROOT)) for p, _ in SNIPPETS])
def test_the_published_snippet_samples_without_torch(path, heading, data, tmp_path):
    train_run(tmp_path / "run", data, max_steps=10)
    export(load(tmp_path / "run"), tmp_path / "model.onnx")
    snippet = python_block(path, heading)
    assert 'path = "model.onnx"' in snippet
    # Importing torch fails in the snippet's process: it must run on numpy and onnxruntime alone.
    blocker = "import sys\nsys.modules['torch'] = None\n"
    result = subprocess.run(
        [sys.executable, "-c", blocker + snippet], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    vocab = json.loads({p.key: p.value for p in onnx.load(tmp_path / "model.onnx").metadata_props}["vocab"])
    text = result.stdout.removesuffix("\n")
    assert text.startswith("Alice ") and len(text) > len("Alice ") + 100
    assert set(text) <= set(vocab)


def test_cli_export_writes_the_file_and_names_it(tmp_path, data):
    train_run(tmp_path / "run", data, max_steps=2)
    out = tmp_path / "models" / "tiny.onnx"
    out.parent.mkdir()
    out.write_bytes(b"an older export")
    result = run("export", tmp_path / "run", "--format", "onnx", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    assert len(result.stderr.splitlines()) == 1 and "lstm" in result.stderr and "KiB" in result.stderr
    onnx.checker.check_model(onnx.load(out))
    assert [p.name for p in out.parent.iterdir()] == ["tiny.onnx"]


def test_cli_export_refuses_an_unknown_format(tiny_run, tmp_path):
    result = run("export", tiny_run, "--format", "tflite", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert "onnx" in result.output and not (tmp_path / "m.onnx").exists()


def test_cli_export_refuses_a_fill_model(tmp_path, data):
    train_run(tmp_path / "fill", data, model={"bidirectional": True}, objective="fill", max_steps=2)
    result = run("export", tmp_path / "fill", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "fill model" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_the_published_snippet_restarts_a_bounded_context_as_charrnn_does(data, tmp_path):
    # A ReLU rnn restarts its state every --seq-len / 2 characters: here every 4, often enough to change its text.
    relu = {"cell": "rnn", "nonlinearity": "relu", "num_layers": 1}
    train_run(tmp_path / "relu", data, model=relu, seq_len=8, max_steps=150)
    result = run("export", tmp_path / "relu", "--out", tmp_path / "model.onnx")
    assert result.exit_code == 0, result.output
    settings = 'prime, length, temperature = "Alice ", 200, 0.8\n'
    snippet = python_block(ROOT / "docs" / "export.md", "## Sampling without PyTorch")
    assert settings in snippet
    prime = "Alice was curious. The queen said "  # longer than the 4 characters re-read at each restart
    greedy = snippet.replace(settings, f"prime, length, temperature = {prime!r}, {LENGTH}, 0\n")
    blocker = "import sys\nsys.modules['torch'] = None\n"
    done = subprocess.run(
        [sys.executable, "-c", blocker + greedy], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = load(tmp_path / "relu")
    text = done.stdout.removesuffix("\n")
    assert text == loaded.generate(prime, LENGTH, temperature=0)
    loaded.model.config = dataclasses.replace(loaded.model.config, context=None)
    assert text != loaded.generate(prime, LENGTH, temperature=0), "the restarts should change this model's text"


def test_cli_export_names_out_when_its_directory_is_missing(tiny_run, tmp_path):
    result = run("export", tiny_run, "--out", tmp_path / "missing" / "m.onnx")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "--out" in result.stderr and "Traceback" not in result.output


def test_export_without_the_onnx_package_says_what_to_install(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(CharRNNError, match=re.escape("pip install 'charrnn-lm[export]'")):
        export(load(tiny_run), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_checkpoint_with_non_finite_weights_is_refused(tiny_run, tmp_path):
    content = checkpoint.load(tiny_run)
    content["model"]["head.bias"][0] = float("nan")
    checkpoint.save(tmp_path / "broken.pt", content)
    with pytest.raises(CharRNNError, match="non-finite"):
        export(load(tmp_path / "broken.pt"), tmp_path / "m.onnx")
