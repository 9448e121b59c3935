"""Frozen, typed configuration. Field names follow PyTorch's (`hidden_size`, `num_layers`, `dropout`)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from charrnn.errors import CharRNNError

CELLS = ("rnn", "lstm", "gru")
NONLINEARITIES = ("tanh", "relu")
INITS = ("default", "identity")
OBJECTIVES = ("lm", "fill")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CharRNNError(message)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 384
    embed_size: int = 64
    dropout: float = 0.3
    embed_dropout: float = 0.1
    weight_drop: float = 0.25
    nonlinearity: str = "tanh"
    init: str = "default"
    bidirectional: bool = False

    def __post_init__(self) -> None:
        _require(self.cell in CELLS, f"unknown cell {self.cell!r}. Use one of: {', '.join(CELLS)}")
        _require(self.vocab_size >= 1, "the vocabulary is empty. Train on a text with at least one character")
        for name in ("num_layers", "hidden_size", "embed_size"):
            value = getattr(self, name)
            _require(value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}. Pass a positive size")
        for name in ("dropout", "embed_dropout", "weight_drop"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, f"--{name.replace('_', '-')} must be in [0, 1), got {value}. Pass e.g. 0.2")
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


# Model options added since runs were first saved, each with the value that means "as before": a
# checkpoint or a run's config.toml without one trained without it, and reusing it must not switch it on.
ADDED_MODEL_OPTIONS = {"weight_drop": 0.0}


@dataclass(frozen=True)
class TrainConfig:
    data: str = "alice"
    seq_len: int = 128
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.05
    warmup_steps: int = 100
    clip_norm: float = 1.0
    clip_value: float = 0.0
    max_steps: int | None = None
    max_time: float | None = None
    eval_every: int = 100
    seed: int = 1337
    ema_decay: float = 0.995
    init_from: str | None = None
    skip_unknown: bool = False
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    objective: str = "lm"
    # The fill objective hides spans of 1 to mask_span characters, about mask_rate of all characters.
    mask_rate: float = 0.15
    mask_span: int = 10

    def __post_init__(self) -> None:
        _require(
            self.objective in OBJECTIVES, f"unknown objective {self.objective!r}. Use one of: {', '.join(OBJECTIVES)}"
        )
        _require(0 < self.mask_rate < 1, f"--mask-rate must be in (0, 1), got {self.mask_rate}. Pass e.g. 0.15")
        _require(
            self.objective != "fill" or 1 <= self.mask_span <= self.seq_len,
            f"--mask-span must be from 1 to --seq-len ({self.seq_len}), got {self.mask_span}. Pass e.g. 10",
        )
        for name in ("seq_len", "batch_size", "eval_every"):
            value = getattr(self, name)
            _require(value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}. Pass a positive value")
        _require(self.lr > 0, f"--lr must be positive, got {self.lr}. Pass e.g. 2e-3")
        _require(
            0.0 <= self.ema_decay < 1.0,
            f"--ema-decay must be in [0, 1), got {self.ema_decay}. Pass e.g. 0.995, or 0 to turn averaging off",
        )
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
        _require(self.device in DEVICES, f"unknown device {self.device!r}. Use one of: {', '.join(DEVICES)}")
        _require(
            self.precision in PRECISIONS, f"unknown precision {self.precision!r}. Use one of: {', '.join(PRECISIONS)}"
        )


@dataclass(frozen=True)
class DynamicEvalConfig:
    """`charrnn eval --dynamic`: the size of each adapting step, and the share of the way back to the trained
    weights after it. The defaults were chosen on the validation split of Alice with the default model
    (README, "Dynamic evaluation")."""

    lr: float = 1e-3
    decay: float = 0.003

    def __post_init__(self) -> None:
        _require(
            math.isfinite(self.lr) and self.lr > 0,
            f"--dynamic-lr must be a positive number, got {self.lr}. Pass e.g. {DynamicEvalConfig.lr}",
        )
        _require(
            0 <= self.decay < 1,
            f"--dynamic-decay must be in [0, 1), got {self.decay}. Pass e.g. {DynamicEvalConfig.decay}",
        )


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


# The budget when none is given: about 8 minutes for the default model on two CPU cores. Steps, not
# time, so that `charrnn train` gives the same model on a busy machine as on an idle one.
DEFAULT_MAX_STEPS = 1350

# `charrnn train --preset NAME`: values, by field name, for the options the user leaves out.
# Budgets are steps, so a preset gives the same model on any machine; the times are for the
# Alice corpus on two CPU cores.
PRESETS: dict[str, dict] = {
    # seconds: a smoke test that the whole pipeline runs
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
    # about 2 minutes; too short to overfit, so a high learning rate, light dropout, no weight drop, no averaging
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
    # about 8 minutes: the defaults of ModelConfig and TrainConfig
    "default": {"max_steps": DEFAULT_MAX_STEPS},
    # about 40 minutes (an estimate from the per-step cost; not trained to the end)
    "large": {"num_layers": 3, "hidden_size": 512, "dropout": 0.5, "max_steps": 2500},
}
BUDGET = ("max_steps", "max_time")


def apply_preset(name: str, train_options: dict, model_options: dict) -> tuple[dict, dict]:
    """The options with the preset's values added where the user gave none; a given budget replaces the preset's."""
    if name not in PRESETS:
        raise CharRNNError(f"unknown preset {name!r}. Use one of: {', '.join(PRESETS)}")
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    given_budget = any(k in train_options for k in BUDGET)
    train_values, model_values = {}, {}
    for key, value in PRESETS[name].items():
        if key in model_fields:
            model_values[key] = value
        elif not (key in BUDGET and given_budget):
            train_values[key] = value
    return {**train_values, **train_options}, {**model_values, **model_options}


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
