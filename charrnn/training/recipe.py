"""The recipe: the model size, cell, regularisation and budget that fit a text and the time or steps given.

`charrnn train --data FILE` with nothing else trains what this chooses; every option the user gives
(on the command line, in a --config file or a preset) wins over it. The rules, each from runs on
several texts (docs/recipes.md); the sizing's constants and the fit of a time budget are in `sizing.py`:

- Budget. With neither --max-steps nor --max-time, about 42.5 passes over the training text, at least
  MIN_STEPS and at most DEFAULT_STEPS_CAP: Alice's tuned 1,350 steps is both its 42.5 passes and the cap,
  so no default run takes longer than the default model does on Alice.
- Size. Hidden units such that the run sees about CHARS_PER_PARAMETER training characters per recurrent
  parameter (Alice's default model sees 2.95), and never more than PARAMETERS_PER_CHAR recurrent
  parameters per training character (the default model has 14.4 on Alice). Under --max-time a text the chosen
  size would see fewer than FEW_PASSES times gets TIMED_CHARS_PER_PARAMETER instead: there steps, not the text,
  are what is short, and a smaller model buys more of them. For --max-time the steps come
  from timing a few training steps of two or three sizes on the device, then the chosen size's validation,
  checkpoints and weight averaging (`step_timing.py`): the steps are those that fit in what is left of the
  budget once the timing, the validations every --eval-every steps and the last validation are paid for.
  A budget that leaves fewer than MIN_TIMED_STEPS steps of the smallest model, on the fewest streams the batch
  rule allows, is refused.
- Batch. Under --max-time, a model that would take fewer than MIN_TIMED_UPDATES steps trains on fewer
  streams (halved down to MIN_TIMED_BATCH_SIZE), sized again: more updates of nearly as many characters.
- Output layer. A vocabulary of more than TIED_VOCABULARY characters scores the characters with their embedding
  (`--tie-embedding`), as wide as the hidden state: there the output layer, not the recurrence, holds most of
  the weights, and a rare character's row learns from being read as well as predicted.
- Cell. The LSTM, unless the budget gives it fewer than MIN_LSTM_STEPS steps of the batch it was given or 32
  streams: then a GRU with an embedding of GRU_EMBED_SIZE (a tied one stays as wide as the hidden state), sized
  again. A batch the batch rule halved keeps the LSTM; as MIN_LSTM_STEPS is below MIN_TIMED_UPDATES, a time budget
  reaches the GRU only with --batch-size given.
- Regularisation, by passes over the text: the more often each character is seen, the more dropout,
  embedding dropout and weight drop (PASSES_REGULARISATION); weight averaging only for a run long
  enough to average (MIN_STEPS_TO_AVERAGE).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

from charrnn.errors import CharRNNError
from charrnn.settings.config import ModelConfig, TrainConfig, format_duration
from charrnn.settings.presets import DEFAULT_MAX_STEPS
from charrnn.training.sizing import MIN_STEPS_TO_AVERAGE, OverheadSeconds, Sizing, StepSeconds, eval_every

DEFAULT_PASSES = 42.5
MIN_STEPS = 200
DEFAULT_STEPS_CAP = DEFAULT_MAX_STEPS
# A time budget whose model would take fewer than MIN_TIMED_UPDATES steps halves its batch of streams, down to
# MIN_TIMED_BATCH_SIZE: on the CPU a step's time falls nearly as fast as its batch, so the run reads about as many
# characters in several times as many updates. At 60 s, validation bpc against batches of 32: Chinese 7.648 at 4
# (8.919 at 32), C 1.983 at 16, prose 2.475 at 16, Python 2.179 at 16 (2.374, 2.578, 2.448 at 32; docs/results.md).
MIN_TIMED_UPDATES = 1500
MIN_TIMED_BATCH_SIZE = 4
# (least passes, dropout, embedding dropout, weight drop), most passes first: Alice's defaults from 30 passes,
# where they were tuned (42.5); light dropout alone below, where a two-minute run on Alice (about 20 passes)
# validated better with it than with half the defaults; none for a text seen less than 3 times.
PASSES_REGULARISATION = ((30, 0.3, 0.1, 0.25), (3, 0.1, 0.0, 0.0), (0, 0.0, 0.0, 0.0))
# Fewer LSTM steps than this, and a GRU learns more: on Alice in two minutes (about 700 LSTM or 480 GRU steps)
# the GRU validated at 1.891 bpc and the LSTM at 1.95 at best; at 1,350 steps the LSTM leads (1.819 to 1.828).
# Those were batches of 32. A run the batch rule gave fewer streams keeps the LSTM, which the CPU runs faster: on
# Chinese in 60 s on 4 streams, a GRU (483 steps) validated at 9.222 bpc and the LSTM (1,365) at 7.963.
MIN_LSTM_STEPS = 1000
# The GRU chosen for a short budget learns faster from a larger embedding than the LSTM's 64: on Alice in two
# minutes, three seeds each, 192 validated at 1.866 bpc on average, 128 at 1.880 and 64 at 1.887 (docs/results.md).
GRU_EMBED_SIZE = 192
# A vocabulary larger than this ties the output layer to the embedding. On Chinese (6,128 characters) in 60 s, on
# 4 streams of a 2 x 64 LSTM, seeds 0 to 3, validation bpc 7.811 to 7.912 tied (mean 7.865), 7.963 to 8.325 with
# an output layer of its own (mean 8.105), 7.893 to 8.090 tied through a learnt projection (mean 8.026).
TIED_VOCABULARY = 1000
AVERAGE_DECAY = 0.995
MAX_WARMUP_STEPS = 100


@dataclass(frozen=True)
class Recipe:
    values: dict  # field name -> value, only for options nobody gave
    reason: str  # one line: what was chosen and why


def choose(
    train: TrainConfig,
    model: dict,
    origin: dict,
    train_chars: int,
    vocab_size: int,
    step_seconds: StepSeconds | None = None,
    *,
    overhead: OverheadSeconds | None = None,
    spent_s: Callable[[], float] = lambda: 0.0,
) -> Recipe:
    """The recipe for a fresh run of `train` and `model` (resolved without it; `origin` says which options
    were given) on a text with `train_chars` training characters. `step_seconds` times a step of a given
    shape, `overhead` the rest of a run of it, and `spent_s` says how much of the budget timing has spent
    so far; without `step_seconds` (under torchrun, where the processes must agree) a time budget is sized
    as the default budget would be."""

    def left_out(name: str) -> bool:
        return origin.get(name, "default") == "default"

    chars_per_step = train.batch_size * train.seq_len
    default_steps = min(DEFAULT_STEPS_CAP, max(MIN_STEPS, round(DEFAULT_PASSES * train_chars / chars_per_step)))
    timed = train.max_time is not None and step_seconds is not None
    given_steps = train.max_steps if not left_out("max_steps") else None
    if not timed:
        given_steps = given_steps or default_steps
    averages = None if left_out("ema_decay") else bool(train.ema_decay)
    step_seconds = functools.cache(step_seconds) if timed else None
    sizing = Sizing(train, train_chars, step_seconds, overhead, spent_s, averages)
    shape = ModelConfig(vocab_size=vocab_size, **model)
    values = {}
    if _ties(shape, left_out):
        shape = dataclasses.replace(shape, tie_embedding=True, embed_size=shape.hidden_size)
        values["tie_embedding"] = True
    fewer_streams = timed and left_out("batch_size")
    try:
        hidden, steps, per_step = sizing.fit(shape, left_out("hidden_size"), given_steps)
    except CharRNNError:
        if not fewer_streams:
            raise
        steps = 0  # too short for 32 streams: the fewest are tried, and refused in turn if they fit no better
    if fewer_streams and steps < MIN_TIMED_UPDATES:
        train = dataclasses.replace(train, batch_size=_fewer_streams(train.batch_size, steps))
        sizing = dataclasses.replace(sizing, train=train)
        values["batch_size"] = train.batch_size
        hidden, steps, per_step = sizing.fit(shape, left_out("hidden_size"), given_steps)
    if left_out("cell") and shape.cell == "lstm" and steps < MIN_LSTM_STEPS and "batch_size" not in values:
        own_embedding = left_out("embed_size") and not shape.tie_embedding
        gru = {"cell": "gru"} | ({"embed_size": GRU_EMBED_SIZE} if own_embedding else {})
        shape = dataclasses.replace(shape, **gru)
        values.update(gru)
        hidden, steps, per_step = sizing.fit(shape, left_out("hidden_size"), given_steps)
    why = [_shape(shape, hidden, train.batch_size, values)]
    if left_out("hidden_size"):
        values["hidden_size"] = hidden
    if left_out("max_steps") and train.max_time is None:
        values["max_steps"] = steps
        why.append(f"{steps:,} steps")
    elif per_step is not None:
        why.append(f"about {steps:,} steps in {format_duration(train.max_time)} ({per_step:.2f} s a step)")
    passes = steps * train.batch_size * train.seq_len / train_chars
    why.append(f"{passes:.3g} passes over {train_chars:,} training characters")
    _, dropout, embed_dropout, weight_drop = next(tier for tier in PASSES_REGULARISATION if passes >= tier[0])
    regularisers = {"dropout": dropout, "embed_dropout": embed_dropout, "weight_drop": weight_drop}
    regularisers["ema_decay"] = AVERAGE_DECAY if steps >= MIN_STEPS_TO_AVERAGE else 0.0
    regularisers["warmup_steps"] = min(MAX_WARMUP_STEPS, steps // 10)
    regularisers["eval_every"] = eval_every(train, steps)
    values.update({k: v for k, v in regularisers.items() if left_out(k)})
    why.append(_regularisation(values))
    return Recipe(values, "; ".join(part for part in why if part))


def _ties(shape: ModelConfig, left_out: Callable[[str], bool]) -> bool:
    """Whether the recipe ties the output layer to an embedding as wide as the hidden state (sizing.py sizes
    both; `resolve` sets the width from the hidden size): for a large vocabulary, where neither was given."""
    large_vocabulary = shape.vocab_size > TIED_VOCABULARY and not shape.bidirectional
    return large_vocabulary and left_out("tie_embedding") and left_out("embed_size")


def _shape(shape: ModelConfig, hidden: int, batch_size: int, values: dict) -> str:
    """The model the recipe chose, naming what it chose beyond the size (`lstm 2 x 64, batches of 4`)."""
    embedding = f", embedding {shape.embed_size}" if "embed_size" in values else ""
    embedding += ", output layer tied to the embedding" if "tie_embedding" in values else ""
    batches = f", batches of {batch_size}" if "batch_size" in values else ""
    return f"{shape.cell} {shape.num_layers} x {hidden}{embedding}{batches}"


def _fewer_streams(batch_size: int, steps: int) -> int:
    """The batch size, halved from `batch_size` down to MIN_TIMED_BATCH_SIZE, that would take MIN_TIMED_UPDATES
    steps if a step's time followed its batch (it falls more slowly, so the run gets somewhat fewer)."""
    while batch_size // 2 >= MIN_TIMED_BATCH_SIZE and steps < MIN_TIMED_UPDATES:
        batch_size, steps = batch_size // 2, steps * 2
    return batch_size


def _regularisation(values: dict) -> str:
    parts = [
        f"{label} {values[name]:g}" if values[name] else f"no {label}"
        for name, label in (
            ("dropout", "dropout"),
            ("embed_dropout", "embedding dropout"),
            ("weight_drop", "weight drop"),
        )
        if name in values
    ]
    if "ema_decay" in values:
        parts.append(f"weight averaging {values['ema_decay']:g}" if values["ema_decay"] else "no weight averaging")
    return ", ".join(parts)
