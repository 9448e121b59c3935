"""Frozen, typed configuration. Field names follow PyTorch's (`hidden_size`, `num_layers`, `dropout`)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from charrnn.errors import CharRNNError

CELLS = ("rnn", "lstm", "gru")
NONLINEARITIES = ("tanh", "relu")
INITS = ("default", "identity")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CharRNNError(message)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 512
    embed_size: int = 64
    dropout: float = 0.25
    nonlinearity: str = "tanh"
    init: str = "default"

    def __post_init__(self) -> None:
        _require(self.cell in CELLS, f"unknown cell {self.cell!r}. Use one of: {', '.join(CELLS)}")
        _require(self.vocab_size >= 1, "the vocabulary is empty. Train on a text with at least one character")
        for name in ("num_layers", "hidden_size", "embed_size"):
            value = getattr(self, name)
            _require(value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}. Pass a positive size")
        _require(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}. Pass e.g. 0.2")
        _require(
            self.nonlinearity in NONLINEARITIES,
            f"unknown nonlinearity {self.nonlinearity!r}. Use one of: {', '.join(NONLINEARITIES)}",
        )
        _require(self.init in INITS, f"unknown init {self.init!r}. Use one of: {', '.join(INITS)}")
        _require(
            self.cell == "rnn" or (self.nonlinearity == "tanh" and self.init == "default"),
            f"--nonlinearity and --init identity apply to the vanilla rnn cell only, not {self.cell}. "
            "Drop them or use --cell rnn",
        )


@dataclass(frozen=True)
class TrainConfig:
    data: str = "alice"
    seq_len: int = 128
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    clip_norm: float = 1.0
    clip_value: float = 0.0
    max_steps: int | None = None
    max_time: float | None = None
    eval_every: int = 100
    seed: int = 1337

    def __post_init__(self) -> None:
        for name in ("seq_len", "batch_size", "eval_every"):
            value = getattr(self, name)
            _require(value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}. Pass a positive value")
        _require(self.lr > 0, f"--lr must be positive, got {self.lr}. Pass e.g. 2e-3")
        _require(self.warmup_steps >= 0, f"--warmup-steps must be 0 or more, got {self.warmup_steps}")
        for name in ("weight_decay", "clip_norm", "clip_value"):
            value = getattr(self, name)
            _require(value >= 0, f"--{name.replace('_', '-')} must be 0 or more, got {value}. Pass 0 to turn it off")
        _require(
            self.max_steps is not None or self.max_time is not None,
            "training needs a budget. Pass --max-steps N or --max-time DURATION",
        )
        _require(self.max_steps is None or self.max_steps >= 1, f"--max-steps must be at least 1, got {self.max_steps}")
        _require(self.max_time is None or self.max_time > 0, f"--max-time must be positive, got {self.max_time}")


@dataclass(frozen=True)
class SampleConfig:
    length: int = 500
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    num_samples: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        _require(self.length >= 0, f"--length must be 0 or more, got {self.length}")
        _require(
            self.temperature >= 0,
            f"--temperature must be 0 or more, got {self.temperature}. "
            "Use 0 for greedy decoding, 1 for the model's own distribution",
        )
        _require(self.top_k is None or self.top_k >= 1, f"--top-k must be at least 1, got {self.top_k}")
        _require(
            self.top_p is None or 0 < self.top_p <= 1,
            f"--top-p must be in (0, 1], got {self.top_p}. Pass e.g. 0.9",
        )
        _require(self.num_samples >= 1, f"--num-samples must be at least 1, got {self.num_samples}")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in `90`, `90s`, `10m`, `1h` or `1h30m`."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise CharRNNError(f"cannot read the duration {text!r}. Write it like 90s, 10m, 1h or 1h30m")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(n) * scale[u] for n, u in parts)
