"""How far back a loss reaches: |dL/dh_{t-k}| for k = 0..K, and the singular values that decide it.

The model runs step by step through the one-step equations in model.py (tested equal to the fused
modules), so every step's state h_t is a tensor of its own and autograd gives dL/dh_t for each.
The state h_t is everything the cell carries from step t to t+1: every layer's h, and the LSTM's c.
L is the cross-entropy of the prediction after the window's last character. By the chain rule
dL/dh_{t-k} = dL/dh_t · J_t · ... · J_{t-k+1}, with J_s = dh_s/dh_{s-1}; the notes' claim is that
the largest singular value of J (for the vanilla cell, of W_hh scaled by the activation's slope)
decides whether that product grows or vanishes with k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from charrnn.data import ids as corpus_ids
from charrnn.data.splits import splits
from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.generation.sampling import require_finite_weights
from charrnn.model.device import GATES, parameter_count, require_memory
from charrnn.model.network import CharRNN, gru_step, has_finite_weights, layer_weights, lstm_step, rnn_step
from charrnn.settings.config import ModelConfig, to_dict
from charrnn.storage import checkpoint

POWER_ITERATIONS = 50
SPEC_CELLS = {
    "rnn": {"cell": "rnn"},
    "rnn-relu": {"cell": "rnn", "nonlinearity": "relu"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
}
SPEC_HINT = "Write it as CELL[:INIT[:SCALE]], e.g. rnn:identity:1.0 or rnn-relu:identity:1.5 or lstm"


@dataclass(frozen=True)
class FreshModel:
    """A model at initialisation: its options (cell, init, nonlinearity) and a factor for W_hh."""

    label: str
    options: dict
    init_scale: float = 1.0


@dataclass(frozen=True)
class GradientProfile:
    label: str
    model_config: dict
    init_scale: float | None
    grad_norms: list[float]  # index k: mean over windows of |dL/dh_{t-k}|
    w_hh_sigma_max: list[float]  # per layer; the gates' stacked matrix for the LSTM and GRU
    jacobian_sigma_max: float  # mean over windows and steps of the largest singular value of dh_s/dh_{s-1}


def parse_spec(spec: str) -> FreshModel:
    """`CELL[:INIT[:SCALE]]`, CELL one of rnn, rnn-relu, lstm, gru."""
    parts = spec.split(":")
    if len(parts) > 3 or parts[0] not in SPEC_CELLS:
        raise CharRNNError(f"cannot read the model {spec!r}: the cell is one of {', '.join(SPEC_CELLS)}. {SPEC_HINT}")
    options = dict(SPEC_CELLS[parts[0]])
    if len(parts) > 1 and parts[1]:
        options["init"] = parts[1]
    try:
        scale = float(parts[2]) if len(parts) > 2 else 1.0
    except ValueError:
        raise CharRNNError(f"cannot read the scale in the model {spec!r}. {SPEC_HINT}") from None
    return FreshModel(spec, options, scale)


def build_fresh(fresh: FreshModel, vocab_size: int, shape: dict, seed: int) -> CharRNN:
    if not (fresh.init_scale > 0 and math.isfinite(fresh.init_scale)):
        raise CharRNNError(f"the init scale must be positive, got {fresh.init_scale:g}. Pass e.g. --init-scale 1.0")
    config = ModelConfig(vocab_size=vocab_size, **shape, **fresh.options)
    what = f"a {config.num_layers} x {config.hidden_size} {config.cell} with embedding {config.embed_size}'s weights"
    require_memory(
        4 * parameter_count(config), torch.device("cpu"), what, "Pass a smaller --hidden-size, --layers or --embed-size"
    )
    torch.manual_seed(seed)
    model = CharRNN(config)
    with torch.no_grad():
        for layer in range(model.config.num_layers):
            layer_weights(model.rnn, layer)[1].mul_(fresh.init_scale)
    if not has_finite_weights(model):
        raise CharRNNError(
            f"the init scale {fresh.init_scale:g} of {fresh.label} overflows W_hh to infinity. Pass a smaller scale"
        )
    return model.eval()


def windows(ids: Tensor, start: int, end: int, steps: int, count: int) -> tuple[Tensor, Tensor]:
    """`count` windows of steps+1 input characters, evenly spread over ids[start:end], and each one's next character."""
    length = steps + 2
    if end - start < length:
        raise CharRNNError(
            f"the validation split holds {end - start:,} characters, fewer than --steps {steps} needs ({length}). "
            "Pass fewer --steps or a longer text"
        )
    room = end - start - length
    if count > room + 1:
        raise CharRNNError(
            f"the validation split holds {room + 1:,} different windows of {length} characters, fewer than "
            f"--windows {count}. Pass at most --windows {room + 1}, or fewer --steps"
        )
    starts = [start + (room * i) // max(1, count - 1) for i in range(count)]
    chunks = torch.stack([ids[s : s + length].long() for s in starts])
    return chunks[:, :-1], chunks[:, -1]


class Unrolled:
    """The model's recurrence as a function of a flat state (batch, layers * hidden [* 2 for the LSTM])."""

    def __init__(self, model: CharRNN):
        self.model, self.config = model, model.config
        self.weights = [layer_weights(model.rnn, layer) for layer in range(self.config.num_layers)]
        self.parts = 2 if self.config.cell == "lstm" else 1
        self.size = self.config.num_layers * self.config.hidden_size * self.parts

    def step(self, x: Tensor, state: Tensor) -> Tensor:
        """Embedded input x and h_{t-1} -> h_t."""
        pieces = state.split(self.config.hidden_size, dim=-1)
        new = []
        for layer, weights in enumerate(self.weights):
            if self.config.cell == "lstm":
                h, c = lstm_step(x, (pieces[2 * layer], pieces[2 * layer + 1]), *weights)
                new += [h, c]
            elif self.config.cell == "gru":
                h = gru_step(x, pieces[layer], *weights)
                new.append(h)
            else:
                h = rnn_step(x, pieces[layer], *weights, nonlinearity=self.config.nonlinearity)
                new.append(h)
            x = h
        return torch.cat(new, dim=-1)

    def output(self, state: Tensor) -> Tensor:
        """The top layer's h, a slice of the state, which the model's head reads."""
        start = (self.config.num_layers - 1) * self.config.hidden_size * self.parts
        return state[:, start : start + self.config.hidden_size]


def gradient_norms(unrolled: Unrolled, inputs: Tensor, targets: Tensor) -> tuple[list[float], list[Tensor]]:
    """Mean over windows of |dL/dh_{t-k}| for k = 0..steps, and the states h_0..h_t themselves."""
    embedded = unrolled.model.embedding(inputs).detach()
    # The weights are frozen; the state carries the graph, from a zero start that asks for its gradient.
    state = torch.zeros(inputs.shape[0], unrolled.size, requires_grad=True)
    states = []
    for t in range(inputs.shape[1]):
        state = unrolled.step(embedded[:, t], state)
        states.append(state)
    # Summed, not averaged: each window's gradient is then exactly that of its own loss.
    loss = F.cross_entropy(unrolled.model.head(unrolled.output(state)), targets, reduction="sum")
    grads = torch.autograd.grad(loss, states)
    norms = [float(g.double().norm(dim=-1).mean()) for g in reversed(grads)]
    return norms, [s.detach() for s in states]


def jacobian_sigma_max(unrolled: Unrolled, inputs: Tensor, states: list[Tensor], seed: int) -> float:
    """Mean over windows and steps of the largest singular value of J_s = dh_s/dh_{s-1}.

    Power iteration on J^T J. Every (window, step) pair is a row of one batch: rows do not interact,
    so each row's vector converges to its own J_s's top right-singular vector. J^T u is a backward
    pass; J v is the backward pass of J^T u, which is linear in u, taken with respect to u.
    """
    x = unrolled.model.embedding(inputs[:, 1:]).detach().flatten(0, 1)
    previous = torch.stack(states[:-1], dim=1).flatten(0, 1).requires_grad_(True)
    following = unrolled.step(x, previous)
    probe = torch.zeros_like(following, requires_grad=True)
    (pulled_probe,) = torch.autograd.grad(following, previous, probe, create_graph=True)

    def push(v: Tensor) -> Tensor:
        return torch.autograd.grad(pulled_probe, probe, v, retain_graph=True)[0]

    def pull(u: Tensor) -> Tensor:
        return torch.autograd.grad(following, previous, u, retain_graph=True)[0]

    generator = torch.Generator().manual_seed(seed)
    v = F.normalize(torch.randn(previous.shape, generator=generator), dim=-1)
    for _ in range(POWER_ITERATIONS):
        v = F.normalize(pull(push(v)), dim=-1)
    return float(push(v).norm(dim=-1).double().mean())


def check_memory(unrolled: Unrolled, steps: int, count: int) -> None:
    """Every step's state of every window stays in autograd's graph, with its gates: refused before the
    measurement when that is more than the machine has free."""
    needed = 4 * count * (steps + 1) * unrolled.size * (GATES[unrolled.config.cell] + 2)
    what = f"--steps {steps} over --windows {count}"
    require_memory(needed, torch.device("cpu"), what, "Pass fewer --steps or --windows")


def profile(
    model: CharRNN,
    ids: Tensor,
    span: tuple[int, int],
    steps: int,
    count: int,
    label: str,
    init_scale: float | None = None,
    seed: int = 0,
) -> GradientProfile:
    """Measure a model on `count` windows of real text taken from ids[span[0]:span[1]]; freezes its weights."""
    if steps < 1 or count < 1:
        raise CharRNNError(f"--steps and --windows must be at least 1, got {steps} and {count}")
    model.eval().requires_grad_(False)
    unrolled = Unrolled(model)
    inputs, targets = windows(ids, *span, steps, count)
    check_memory(unrolled, steps, count)
    norms, states = gradient_norms(unrolled, inputs, targets)
    w_hh = [float(torch.linalg.matrix_norm(weights[1].double(), ord=2)) for weights in unrolled.weights]
    return GradientProfile(
        label=label,
        model_config=to_dict(model.config),
        init_scale=init_scale,
        grad_norms=norms,
        w_hh_sigma_max=w_hh,
        jacobian_sigma_max=jacobian_sigma_max(unrolled, inputs, states, seed),
    )


def measure_fresh(
    models: list[FreshModel], data: str, shape: dict, steps: int, count: int, seed: int
) -> list[GradientProfile]:
    """Fresh models with the vocabulary of `data`, on windows from its validation split."""
    encoded = corpus_ids.load(data)
    vocab, ids = Vocabulary(encoded.chars), encoded.ids
    val = splits(len(ids))["val"]
    return [
        profile(
            build_fresh(m, len(vocab), shape, seed),
            ids,
            (val.start, val.end),
            steps,
            count,
            m.label,
            m.init_scale,
            seed,
        )
        for m in models
    ]


def measure_checkpoint(path: Path, data: str | None, steps: int, count: int, seed: int) -> GradientProfile:
    """A trained language model, on windows from the validation split of its own text (or of `data`)."""
    from charrnn.api import load

    loaded = load(path)
    loaded.require("lm")
    require_finite_weights(loaded.model)
    source = data or loaded.content["train_config"]["data"]
    if data is None:
        encoded = checkpoint.training_text(loaded.content, "Restore it, or pass --data to measure on another text")
    else:
        encoded = corpus_ids.load(source)
    ids, _ = encoded.under(
        loaded.vocab, fix="Pass --data with a text made of the model's characters", what=f"the text of {source}"
    )
    val = splits(len(ids))["val"]
    return profile(loaded.model, ids, (val.start, val.end), steps, count, str(path), seed=seed)
