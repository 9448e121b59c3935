"""Values for the options a user leaves out, other than each field's own default: the budget when none is
given, the defaults that depend on the cell, and the presets of `charrnn train --preset NAME`. Resolution
(`resolve.py`) decides where each applies."""

from __future__ import annotations

from charrnn.errors import CharRNNError

BUDGET = ("max_steps", "max_time")

# The budget when none is given (its time on one machine: docs/performance.md, "Measured choices"). Steps,
# not time, so that `charrnn train` gives the same model on a busy machine as on an idle one.
DEFAULT_MAX_STEPS = 1350

# The peak learning rate each cell trains well at (docs/training.md, "Defaults that depend on the cell"):
# the LSTM's was tuned on Alice; the GRU ran best at 5e-3 of 3e-3, 5e-3 and 1e-2; the vanilla cell needs 2e-3.
CELL_LR = {"lstm": 1e-2, "gru": 5e-3, "rnn": 2e-3}


def cell_defaults(cell: str, init: str, nonlinearity: str, seq_len: int) -> dict:
    """The defaults that depend on the cell, by field name, below a preset, a config file and the command line."""
    values = {"lr": CELL_LR[cell]}
    if init == "identity":
        # DropConnect scales the kept entries of W_hh by 1 / (1 - p): an identity of 1.33 for p = 0.25,
        # so the state would grow by a third at every step.
        values["weight_drop"] = 0.0
    if cell == "rnn" and nonlinearity == "relu":
        # Nothing bounds a ReLU state carried on for ever; it reads windows of --seq-len from zero, as
        # Le, Jaitly & Hinton (2015) trained their identity-initialised ReLU networks.
        values["context"] = seq_len
    return values


# `charrnn train --preset NAME`: values, by field name, for the options the user leaves out.
# Budgets are steps, so a preset gives the same model on any machine; how long each takes on one machine
# is in docs/performance.md, "Measured choices".
PRESETS: dict[str, dict] = {
    # a smoke test that the whole pipeline runs
    "tiny": {
        "num_layers": 1,
        "hidden_size": 64,
        "embed_size": 16,
        "seq_len": 64,
        "batch_size": 8,
        "warmup_steps": 10,
        "max_steps": 100,
        "eval_every": 50,
    },
    # too short to overfit, so a high learning rate, light dropout, no weight drop, no averaging
    "quick": {
        "hidden_size": 256,
        "dropout": 0.1,
        "embed_dropout": 0.0,
        "weight_drop": 0.0,
        "lr": 1e-2,
        "weight_decay": 0.1,
        "ema_decay": 0.0,
        "max_steps": 600,
    },
    # the defaults of ModelConfig and TrainConfig
    "default": {"max_steps": DEFAULT_MAX_STEPS},
    # a larger model for a longer run
    "large": {"num_layers": 3, "hidden_size": 512, "dropout": 0.5, "max_steps": 2500},
}


def preset_values(name: str, given: dict) -> dict:
    """The preset's values, by field name; a budget given elsewhere (in `given`) replaces the preset's whole
    budget."""
    if name not in PRESETS:
        raise CharRNNError(f"unknown preset {name!r}. Use one of: {', '.join(PRESETS)}")
    given_budget = any(k in given for k in BUDGET)
    return {k: v for k, v in PRESETS[name].items() if not (k in BUDGET and given_budget)}
