"""Every cell trains on Alice with its own defaults, and a model whose state restarts is read as it trained."""

import json
import math

import pytest
import torch

from charrnn.data import corpus
from charrnn.errors import CharRNNError
from charrnn.evaluation.dynamic import dynamic_evaluate
from charrnn.evaluation.score import evaluate
from charrnn.generation.sampling import generate
from charrnn.model.network import CharRNN
from charrnn.settings.config import DynamicEvalConfig, ModelConfig, SampleConfig
from charrnn.settings.presets import CELL_LR
from charrnn.settings.resolve import Sources, resolve
from tests.conftest import run

CLIPPING = {"norm": {}, "value": {"clip_value": 0.5, "clip_norm": 0.0}}
RNN = [(init, nonlinearity) for init in ("default", "identity") for nonlinearity in ("tanh", "relu")]
MATRIX = [("lstm", "default", "tanh"), ("gru", "default", "tanh")] + [("rnn", i, n) for i, n in RNN]
THE_NOTES_REMEDY = ("rnn", "identity", "relu", "value")


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    try:
        path, _ = corpus.fetch("alice", corpora_dir=tmp_path_factory.mktemp("corpora"))
    except CharRNNError as e:
        pytest.skip(f"Alice is neither in a mirror nor downloadable here: {e}")
    return path


def train_losses(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines]


@pytest.mark.parametrize(
    "cell, init, nonlinearity, clipping",
    [
        pytest.param(*combo, clip, marks=[] if (*combo, clip) == THE_NOTES_REMEDY else [pytest.mark.slow])
        for combo in MATRIX
        for clip in CLIPPING
    ],
)
def test_every_cell_trains_on_alice_with_its_own_defaults(alice, tmp_path, cell, init, nonlinearity, clipping):
    options = {"cell": cell, "init": init, "nonlinearity": nonlinearity, **CLIPPING[clipping]}
    given = {k: v for k, v in options.items() if (k, v) not in (("init", "default"), ("nonlinearity", "tanh"))}
    outcome = train_run_with_only(tmp_path, alice, given)
    losses = train_losses(tmp_path)
    assert outcome.step == 30 and all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5, losses
    assert outcome.best_val_bpc < math.log2(75)


def train_run_with_only(out_dir, data, options):
    """A run of 30 steps of a 2 x 64 model with nothing else given: the cell's defaults and the recipe decide."""
    from charrnn.api import train

    return train(out_dir, data=str(data), num_layers=2, hidden_size=64, max_steps=30, eval_every=10, **options)


def test_the_notes_remedy_trains_from_the_command_line(alice, tmp_path):
    result = run(
        "train", "--data", alice, "--cell", "rnn", "--init", "identity", "--nonlinearity", "relu",
        "--clip-value", "0.5", "--clip-norm", "0", "--layers", "2", "--hidden-size", "64",
        "--max-steps", "30", "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "non-finite" not in result.stderr and "diverged" not in result.stderr
    assert all(math.isfinite(loss) for loss in train_losses(tmp_path))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_each_cell_has_its_own_learning_rate_unless_one_is_given(cell):
    resolved = resolve(Sources(given={"cell": cell}))
    assert resolved.train.lr == CELL_LR[cell] and resolved.origin["lr"] == f"{cell} cell"
    assert resolve(Sources(given={"cell": cell, "lr": 3e-4})).train.lr == 3e-4
    assert resolve(Sources(given={"cell": cell}, preset="quick")).train.lr == 1e-2


def test_identity_init_turns_weight_drop_off_and_relu_bounds_the_context():
    identity = resolve(Sources(given={"cell": "rnn", "init": "identity"}))
    assert identity.model["weight_drop"] == 0.0 and identity.model.get("context") is None
    relu = resolve(Sources(given={"cell": "rnn", "nonlinearity": "relu", "seq_len": 48}))
    assert relu.model["context"] == 48
    kept = resolve(Sources(given={"cell": "rnn", "init": "identity", "weight_drop": 0.2}))
    assert kept.model["weight_drop"] == 0.2


def test_compare_trains_each_cell_at_the_learning_rate_train_gives_it(tmp_path, text_file):
    result = run(
        "compare", "--data", text_file, "--only", "rnn-tanh,gru,lstm", "--max-steps", "2", "--out", tmp_path,
        "--hidden-size", "16", "--embed-size", "4", "--seq-len", "16", "--batch-size", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, cell in (("rnn-tanh", "rnn"), ("gru", "gru"), ("lstm", "lstm")):
        recorded = (tmp_path / name / "config.toml").read_text()
        assert f"lr = {resolve(Sources(given={'cell': cell})).train.lr!r}" in recorded


def relu_model(context: int) -> CharRNN:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=20, cell="rnn", nonlinearity="relu", init="identity", hidden_size=16, embed_size=8, context=context
    )
    return CharRNN(config).eval()


def test_scoring_a_bounded_context_sees_only_that_context():
    model = relu_model(context=32)
    ids = torch.randint(20, (600,))
    other = ids.clone()
    other[:300] = torch.randint(20, (300,))  # differs only far before the scored span
    assert evaluate(model, ids, 400, 600).nats == pytest.approx(evaluate(model, other, 400, 600).nats, rel=1e-6)
    unbounded = CharRNN(ModelConfig(**{**vars(model.config), "context": None})).eval()
    unbounded.load_state_dict(model.state_dict())
    assert evaluate(unbounded, ids, 400, 600).nats != evaluate(unbounded, other, 400, 600).nats


def test_dynamic_evaluation_of_a_bounded_context_warms_on_that_context_only():
    model = relu_model(context=32)
    ids = torch.randint(20, (600,))
    other = ids.clone()
    other[360:380] = torch.randint(20, (20,))  # within the default 1,000 characters of warm-up, beyond the context
    settings = DynamicEvalConfig(lr=1e-9, decay=0.0)  # adapting by nothing: only the reading differs
    first, second = (dynamic_evaluate(model, text, 400, 600, settings).nats for text in (ids, other))
    assert first == pytest.approx(second, rel=1e-6)


def test_sampling_a_bounded_context_forgets_what_came_before_it():
    model = relu_model(context=16)
    vocab_chars = [chr(ord("a") + i) for i in range(20)]
    from charrnn.data.vocabulary import Vocabulary

    vocab = Vocabulary(vocab_chars)
    config = SampleConfig(length=60, temperature=0.0)
    tail = "abcdefghij"

    def sample(prime):
        return "".join(chars[0] for chars in generate(model, vocab, config, prime=prime))

    assert sample("qrst" * 5 + tail) == sample("lmno" * 5 + tail)
