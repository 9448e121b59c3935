import json
import sys

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.data.splits import splits
from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.model.network import CharRNN
from charrnn.settings.config import ModelConfig
from charrnn.studies.gradients import (
    FreshModel,
    Unrolled,
    build_fresh,
    gradient_norms,
    jacobian_sigma_max,
    measure_fresh,
    parse_spec,
    profile,
    windows,
)
from tests.conftest import make_text

runner = CliRunner()
SHAPE = {"num_layers": 1, "hidden_size": 32, "embed_size": 8}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def text_ids():
    text = make_text(20_000)
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    val = splits(len(ids))["val"]
    return ids, len(vocab), (val.start, val.end)


def measure(text_ids, spec, shape=SHAPE, steps=30, count=4):
    ids, vocab_size, span = text_ids
    fresh = parse_spec(spec)
    model = build_fresh(fresh, vocab_size, shape, seed=0)
    return profile(model, ids, span, steps, count, spec, fresh.init_scale)


@pytest.mark.parametrize("spec", ["rnn", "rnn-relu:identity:1.0", "lstm", "gru"])
def test_one_norm_per_k_and_one_singular_value_per_layer(text_ids, spec):
    result = measure(text_ids, spec, shape={"num_layers": 2, "hidden_size": 16, "embed_size": 4}, steps=12)
    assert len(result.grad_norms) == 13
    assert len(result.w_hh_sigma_max) == 2
    assert all(n > 0 for n in result.grad_norms)
    assert result.jacobian_sigma_max > 0


@pytest.mark.parametrize("spec", ["rnn-relu:identity:1.5", "rnn:default:5"])
def test_a_large_recurrent_scale_makes_the_gradient_explode(text_ids, spec):
    norms = measure(text_ids, spec).grad_norms
    assert norms[30] > norms[15] > norms[0]
    assert norms[30] > 100 * norms[0]


@pytest.mark.parametrize("spec", ["rnn-relu:identity:0.5", "rnn:identity:0.5", "rnn:default:0.5"])
def test_a_small_recurrent_scale_makes_the_gradient_vanish(text_ids, spec):
    norms = measure(text_ids, spec).grad_norms
    assert norms[30] < norms[15] < norms[0]
    assert norms[30] < 1e-6 * norms[0]


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5])
def test_identity_init_singular_value_is_the_scale(text_ids, scale):
    assert measure(text_ids, f"rnn:identity:{scale}", shape={**SHAPE, "num_layers": 2}).w_hh_sigma_max == (
        pytest.approx([scale, scale], rel=1e-6)
    )
    # One ReLU layer's step Jacobian is scale * I on the active units: its largest singular value is the scale too.
    assert measure(text_ids, f"rnn-relu:identity:{scale}").jacobian_sigma_max == pytest.approx(scale, rel=1e-4)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_power_iteration_finds_the_jacobians_largest_singular_value(text_ids, cell):
    ids, vocab_size, span = text_ids
    model = build_fresh(FreshModel(cell, {"cell": cell}), vocab_size, {**SHAPE, "hidden_size": 8}, seed=3)
    unrolled = Unrolled(model.requires_grad_(False))
    inputs, targets = windows(ids, *span, 6, 3)
    _, states = gradient_norms(unrolled, inputs, targets)
    embedded = model.embedding(inputs)
    exact = []
    for t in range(1, 7):
        for row in range(3):
            x = embedded[row : row + 1, t]
            jacobian = torch.autograd.functional.jacobian(lambda h, x=x: unrolled.step(x, h)[0], states[t - 1][row])
            exact.append(torch.linalg.matrix_norm(jacobian, ord=2))
    assert jacobian_sigma_max(unrolled, inputs, states, seed=0) == pytest.approx(float(torch.stack(exact).mean()), 1e-3)


def test_gradients_match_the_fused_module(text_ids):
    """dL/dh_{t-k} from the step-by-step equations equals the fused nn.LSTM's, started from h_{t-k}."""
    ids, vocab_size, span = text_ids
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=vocab_size, num_layers=2, hidden_size=8, embed_size=4)).eval()
    model.requires_grad_(False)
    inputs, targets = windows(ids, *span, 10, 3)
    norms, states = gradient_norms(Unrolled(model), inputs, targets)
    for k in (0, 4, 10):
        start = states[10 - k].clone().requires_grad_(True)
        h1, c1, h2, c2 = start.split(8, dim=-1)
        state = (torch.stack([h1, h2]), torch.stack([c1, c2]))
        rest = inputs[:, 11 - k :]
        if rest.shape[1]:
            logits = model.head(model.rnn(model.embedding(rest), state)[0][:, -1])
        else:
            logits = model.head(h2)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, targets, reduction="sum"), start)
        assert norms[k] == pytest.approx(float(grad.norm(dim=-1).mean()), rel=1e-4)


def test_windows_need_enough_text(text_ids):
    ids, _, _ = text_ids
    with pytest.raises(CharRNNError, match="fewer than --steps 100 needs"):
        windows(ids, 0, 50, 100, 2)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("rnn", ({"cell": "rnn"}, 1.0)),
        ("rnn-relu:identity:1.5", ({"cell": "rnn", "nonlinearity": "relu", "init": "identity"}, 1.5)),
        ("gru::0.8", ({"cell": "gru"}, 0.8)),
    ],
)
def test_parse_spec(spec, expected):
    fresh = parse_spec(spec)
    assert (fresh.options, fresh.init_scale, fresh.label) == (*expected, spec)


@pytest.mark.parametrize("spec", ["tcn", "rnn:identity:big", "rnn:identity:1:2"])
def test_parse_spec_refuses_what_it_cannot_read(spec):
    with pytest.raises(CharRNNError, match="CELL\\[:INIT\\[:SCALE\\]\\]"):
        parse_spec(spec)


def test_the_same_seed_gives_the_same_profile(text_file):
    args = ([FreshModel("gru", {"cell": "gru"})], str(text_file), SHAPE, 8, 2, 5)
    assert measure_fresh(*args) == measure_fresh(*args)


# The command


def test_json_for_several_fresh_models(text_file):
    result = run(
        "gradients", "--data", text_file, "--model", "rnn", "--model", "lstm", *("--hidden-size", 16, "--layers", 1),
        *("--steps", 8, "--windows", 2, "--json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["steps"], report["windows"]) == (8, 2)
    assert [m["label"] for m in report["models"]] == ["rnn", "lstm"]
    for entry in report["models"]:
        assert len(entry["grad_norms"]) == 9 and len(entry["w_hh_sigma_max"]) == 1
        assert entry["model_config"]["hidden_size"] == 16


def test_table_and_plot_for_one_fresh_model(text_file, tmp_path):
    pytest.importorskip("matplotlib")
    result = run(
        "gradients", "--data", text_file, "--cell", "rnn", "--init", "identity", "--init-scale", 0.9,
        *("--nonlinearity", "relu", "--hidden-size", 16, "--layers", 1, "--steps", 40, "--windows", 2),
        *("--plot", tmp_path / "g.png"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "rnn-relu:identity:0.9" in result.stdout
    assert [line.split()[0] for line in lines if line.strip()[:1].isdigit()][:3] == ["0", "2", "4"]
    assert "0.900" in result.stdout  # sigma_max of W_hh
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


def test_a_checkpoint_on_its_own_text(tiny_run):
    result = run("gradients", tiny_run, "--steps", 6, "--windows", 2, "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["models"]
    assert entry["label"] == str(tiny_run) and entry["init_scale"] is None
    assert len(entry["grad_norms"]) == 7 and len(entry["w_hh_sigma_max"]) == 2


def assert_error(result, fragment, code=1):
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert fragment in result.stderr.replace("\n", " "), result.stderr


@pytest.mark.parametrize(
    "args, fragment, code",
    [
        (["--model", "tcn"], "cannot read the model 'tcn'", 1),
        (["--model", "rnn", "--cell", "gru"], "Use --model SPEC instead", 2),
        (["--init-scale", 0], "the init scale must be positive", 1),
        (["--cell", "lstm", "--init", "identity"], "vanilla rnn cell only", 1),
        (["--steps", 0], "--steps and --windows must be at least 1", 1),
        (["--windows", 0], "--steps and --windows must be at least 1", 1),
        (["--steps", 5000], "fewer than --steps 5000 needs", 1),
    ],
)
def test_bad_options(text_file, args, fragment, code):
    assert_error(run("gradients", "--data", text_file, "--hidden-size", 8, "--layers", 1, *args), fragment, code)


def test_checkpoint_errors(tiny_run, tmp_path):
    assert_error(run("gradients", tmp_path / "nope"), "no checkpoint at")
    assert_error(run("gradients", tiny_run, "--hidden-size", 8), "a checkpoint keeps its own", 2)
    assert_error(run("gradients", tiny_run, "--cell", "rnn"), "Use --model SPEC instead", 2)
    other = tmp_path / "other.txt"
    other.write_text("€" * 3000)
    assert_error(run("gradients", tiny_run, "--data", other), "characters the model never saw")


def test_plot_without_matplotlib_says_how_to_install_it(text_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the extra looks like
    result = run("gradients", "--data", text_file, "--plot", tmp_path / "g.png")
    assert_error(result, "--plot needs matplotlib")
    assert "pip install 'charrnn-lm[plot]'" in result.stderr
    assert not (tmp_path / "g.png").exists()
