"""What `charrnn compare` trains: the RNN notes' configurations, the model they share and the plain recipe.

Plain data, without torch, so that the command's --help can list the names it takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from charrnn.errors import CharRNNError

COMPARE_MAX_TIME_S = 120.0
COMPARE_EVAL_EVERY = 50
# One layer of 256 units: small enough that every cell gets a few hundred steps in two minutes on a CPU,
# large enough that the cells differ in what they learn.
COMPARE_SHAPE = {
    "num_layers": 1,
    "hidden_size": 256,
    "embed_size": 64,
    "dropout": 0.25,
    "embed_dropout": 0.0,
    "weight_drop": 0.0,
}
# A fixed recipe, not `train`'s, so a published comparison stays reproducible and every cell is trained the
# same plain way; the learning rate is each cell's own default, as `train` chooses it (presets.CELL_LR).
COMPARE_TRAINING = {"weight_decay": 0.1, "warmup_steps": 100, "clip_norm": 1.0, "ema_decay": 0.0}


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    model: dict
    train: dict = field(default_factory=dict)


# The notes' story: a vanilla RNN, the two fixes for its vanishing gradient (identity init, gating),
# and what dropout and clipping each contribute.
DEFAULT_SET = (
    Entry("rnn-tanh", "vanilla tanh RNN, default init", {"cell": "rnn"}),
    Entry("rnn-identity", "tanh RNN, W_hh = I, zero biases", {"cell": "rnn", "init": "identity"}),
    Entry(
        "rnn-relu-identity",
        "ReLU RNN, W_hh = I, zero biases",
        {"cell": "rnn", "nonlinearity": "relu", "init": "identity"},
    ),
    Entry("gru", "GRU", {"cell": "gru"}),
    Entry("lstm", "LSTM", {"cell": "lstm"}),
    Entry("lstm-no-dropout", "LSTM, dropout 0", {"cell": "lstm", "dropout": 0.0}),
    Entry("rnn-no-clip", "vanilla tanh RNN, no gradient clipping", {"cell": "rnn"}, {"clip_norm": 0.0}),
)


def select(only: str | None) -> list[Entry]:
    """The default set, or the named subset of it in the order given."""
    if only is None:
        return list(DEFAULT_SET)
    by_name = {entry.name: entry for entry in DEFAULT_SET}
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        raise CharRNNError(
            f"unknown configuration {', '.join(map(repr, unknown)) or repr(only)} in --only. "
            f"Use names from: {', '.join(by_name)}"
        )
    return [by_name[name] for name in dict.fromkeys(names)]
