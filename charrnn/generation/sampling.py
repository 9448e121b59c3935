"""Generate text one character at a time: temperature, top-k, top-p, and a seeded torch.Generator.

A prime of two or more characters runs through the fused module in one call; after that each
character steps PyTorch's single-step cell ops (`torch.lstm_cell` and kin, what nn.LSTMCell runs) on
the fused module's own weights, because calling a fused module once per character costs far more
than the arithmetic.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F

from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.generation.drawing import MIN_TEMPERATURE, RowOptions, Uniforms, pick
from charrnn.model import bounded_context as context
from charrnn.model.device import require_memory
from charrnn.model.network import CharRNN, has_finite_weights, layer_weights
from charrnn.settings.config import ModelConfig, SampleConfig

PRIME_HINT = "Use only characters from the training text in --prime"


class Stepper:
    """One step of a CharRNN for `batch_size` single characters, in eval mode (no dropout)."""

    def __init__(self, model: CharRNN, batch_size: int):
        self.model = model
        self.batch_size = batch_size
        config = model.config
        self.cell = config.cell
        self.weights = [layer_weights(model.rnn, layer) for layer in range(config.num_layers)]
        self.head = (model.head.weight, model.head.bias)
        if batch_size == 1:
            # The same matrices, stored transposed: one stream of the default LSTM samples faster from them,
            # while a batch samples faster from the stored layout (docs/performance.md, "Measured choices").
            self.weights = [tuple(column_major(w) if w.dim() == 2 else w for w in ws) for ws in self.weights]
            self.head = (column_major(self.head[0]), self.head[1])
        self.step_fn = {
            "lstm": torch.lstm_cell,
            "gru": torch.gru_cell,
            "rnn": torch.rnn_tanh_cell if config.nonlinearity == "tanh" else torch.rnn_relu_cell,
        }[config.cell]

    def zero_state(self) -> list:
        """The state before the first character, one entry per layer, as the fused module starts."""
        weight = self.head[0]
        zeros = [weight.new_zeros(self.batch_size, self.model.config.hidden_size) for _ in self.weights]
        return [(h, torch.zeros_like(h)) for h in zeros] if self.cell == "lstm" else zeros

    def split_state(self, state):
        """The fused module's (layers, batch, hidden) state as one entry per layer."""
        if self.cell == "lstm":
            return [(h, c) for h, c in zip(state[0].unbind(0), state[1].unbind(0))]
        return list(state.unbind(0))

    def join_state(self, layers):
        if self.cell == "lstm":
            return torch.stack([h for h, _ in layers]), torch.stack([c for _, c in layers])
        return torch.stack(layers)

    def step(self, ids: torch.Tensor, layers: list) -> tuple[torch.Tensor, list]:
        # Functional calls: a module's __call__ has a fixed cost that is a visible share of a small step.
        x = F.embedding(ids, self.model.embedding.weight)
        new_layers = []
        for weights, layer_state in zip(self.weights, layers):
            layer_state = self.step_fn(x, layer_state, *weights)
            new_layers.append(layer_state)
            x = layer_state[0] if self.cell == "lstm" else layer_state
        return F.linear(x, *self.head), new_layers


def column_major(matrix: torch.Tensor) -> torch.Tensor:
    """The same matrix stored column by column (its transpose is contiguous)."""
    return matrix.t().contiguous().t()


def choose(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator) -> torch.Tensor:
    """Next ids (batch,) from logits (batch, vocab): every row with `config`'s options, uniforms from `generator`."""
    rows, vocab_size = logits.shape
    options = RowOptions.of(config, rows, vocab_size, logits.device)
    return pick(logits, options, torch.rand(rows, generator=generator, device=logits.device))


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """fp32 logits divided by a temperature above 0."""
    return logits.float() / max(temperature, MIN_TEMPERATURE)


# What one sample side by side holds besides the model: a few copies of its state and of its row of logits.
STATE_COPIES, LOGIT_COPIES = 3, 4
# A character held for output: a pointer in a list, then up to 4 bytes in the joined text.
HELD_CHAR_BYTES = 12


def check_memory(config: ModelConfig, device: torch.device, num_samples: int, held_chars: int = 0) -> None:
    """Samples drawn side by side by a model of `config`, and the text a caller holds of them, are refused
    before anything is allocated when they need more memory than `device` has free."""
    state = config.num_layers * config.hidden_size * (2 if config.cell == "lstm" else 1)
    needed = 4 * num_samples * (STATE_COPIES * state + LOGIT_COPIES * config.vocab_size) + HELD_CHAR_BYTES * held_chars
    what = f"{num_samples:,} samples side by side"
    require_memory(needed, device, what, "Pass a smaller --num-samples or --length")


def require_finite_weights(model) -> None:
    """`draw` does not check its probabilities, as torch.multinomial did at every step; weights are what
    make them NaN, so they are checked once, before sampling starts."""
    if not has_finite_weights(model):
        raise CharRNNError(
            "the checkpoint holds non-finite weights, so it has no distribution to sample from. "
            "Use an earlier checkpoint, e.g. the run's best.pt"
        )


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of `probs` (batch, vocab), index i with probability probs[:, i].

    The exponential race: with E_i independent Exp(1) draws, argmax(p_i / E_i) is i with probability
    p_i. It is what torch.multinomial computes for a single draw (the same generator state gives the
    same index) without its checks of the input, which cost more than the draw itself: for one row of
    75 this took 7 microseconds on a 2-core CPU against multinomial's 18, and streaming sampling ran
    1.12x (LSTM) to 1.16x (vanilla RNN) faster. `exponential_` can return an exact 0 (PyTorch issue
    22557); the floor keeps p / E finite, so a character of probability 0 is never picked.
    """
    race = torch.empty_like(probs).exponential_(generator=generator).clamp_min_(torch.finfo(probs.dtype).tiny)
    return (probs / race).argmax(-1)


class ReadPrime(NamedTuple):
    """A random first character to yield ("" when the prime was given or a newline stood in for it), the ids the
    state was read from (a bounded context rereads them), and the logits and per-layer state after them."""

    first: str
    ids: torch.Tensor
    logits: torch.Tensor
    layers: list


def read_prime(stepper: Stepper, vocab: Vocabulary, prime: str, generator: torch.Generator, fix: str) -> ReadPrime:
    """`stepper.batch_size` copies of `prime` read from the zero state, as `generate` and a server's batch read
    them. With no prime, the state starts after a newline, or after a random character drawn from `generator`
    when the vocabulary has no newline."""
    device, first = generator.device, ""
    if not prime:
        if "\n" in vocab.index:
            prime = "\n"
        else:
            prime = first = vocab.chars[int(torch.randint(len(vocab), (1,), generator=generator, device=device))]
    ids = vocab.encode(prime, fix=fix, what="the prime").long().to(device).unsqueeze(0)
    ids = ids.expand(stepper.batch_size, -1)
    bound = stepper.model.config.context
    if bound is not None:
        ids = ids[:, -context.reread_length(bound) :]
    if ids.shape[1] == 1:
        # One step beats one call of the fused module, whose fixed cost is the larger for one
        # character (docs/performance.md, "Measured choices").
        logits, layers = stepper.step(ids[:, 0], stepper.zero_state())
    else:
        logits, layers = _read(stepper.model, stepper, ids)
    return ReadPrime(first, ids, logits, layers)


def seeded(config: SampleConfig) -> SampleConfig:
    """`config` with a random seed where it gives none, as `charrnn sample` and the Python API both draw it."""
    if config.seed is not None:
        return config
    return dataclasses.replace(config, seed=secrets.randbelow(2**31))


def generate(
    model: CharRNN, vocab: Vocabulary, config: SampleConfig, prime: str = "", seed: int = 0
) -> Iterator[list[str]]:
    """Yield, step by step, the next character of each of `config.num_samples` samples.

    With no prime, the state starts after a newline, or after a random character (which is
    yielded first) when the vocabulary has no newline.
    """
    require_finite_weights(model)
    device = next(model.parameters()).device
    check_memory(model.config, device, config.num_samples)
    # A generator on the model's device: the same seed gives the same text on the same kind of device.
    generator = torch.Generator(device=device).manual_seed(seed)
    n = config.num_samples
    model.eval()
    with torch.inference_mode():
        stepper = Stepper(model, n)
        first, ids, logits, layers = read_prime(stepper, vocab, prime, generator, PRIME_HINT)
        if first:
            yield [first] * n
        options = RowOptions.of(config, n, len(vocab), device)
        uniforms = Uniforms(generator, n)
        bound = model.config.context
        recent, since_restart = ids, 0
        for _ in range(config.length):
            next_ids = pick(logits, options, uniforms.next())
            yield [vocab.chars[i] for i in next_ids.tolist()]
            if bound is None:
                logits, layers = stepper.step(next_ids, layers)
                continue
            # A bounded context restarts its state on the characters before, as it was trained (context.py).
            recent = torch.cat([recent, next_ids[:, None]], dim=1)[:, -context.reread_length(bound) :]
            since_restart += 1
            if since_restart == context.piece_length(bound):
                logits, layers = _read(model, stepper, recent)
                since_restart = 0
            else:
                logits, layers = stepper.step(next_ids, layers)


def _read(model: CharRNN, stepper: Stepper, ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The logits after `ids`, read from a zero state by the fused module, and the state as the stepper holds it."""
    logits, state = model(ids)
    return logits[:, -1], stepper.split_state(state)
