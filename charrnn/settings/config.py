"""Frozen, typed configuration. Field names follow PyTorch's (`hidden_size`, `num_layers`, `dropout`)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from charrnn.errors import CharRNNError
from charrnn.settings.options import FLOAT32_MAX, SEED_LIMIT, OptionError, check_fields, option
from charrnn.settings.presets import CELL_LR, DEFAULT_MAX_STEPS

CELLS = ("rnn", "lstm", "gru")
NONLINEARITIES = ("tanh", "relu")
INITS = ("default", "identity")
OBJECTIVES = ("lm", "fill")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ServeConfig:
    """`charrnn serve`: where it listens and how much it takes on. Requests carry SampleConfig's fields."""

    host: str = option("127.0.0.1", "Address to listen on; 0.0.0.0 opens it to other machines.")
    port: int = option(8000, "Port to listen on; 0 picks a free one.", min=0, max=65535, example="8000")
    max_length: int = option(10_000, "The most new characters one request may ask for per sample.", min=1)
    max_concurrent: int = option(64, "The most samples generated at once; more get 429 until some end.", min=1)

    def __post_init__(self) -> None:
        check_fields(self)


# What one validation scores at most: few enough that a validation costs about the same whatever the size
# of the corpus (docs/performance.md, "Measured choices"). Alice's validation split is shorter, so it is
# scored whole.
VAL_CHARS = 2**15

# torch.optim.AdamW's default first beta, which the trainer keeps.
ADAMW_BETA1 = 0.9

MODEL, REGULARISATION = "Model", "Regularisation"
DATA, OPTIMISATION, BUDGET, HARDWARE, FILL = "Data", "Optimisation", "Budget", "Hardware", "Fill objective"


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    cell: str = option("lstm", "The recurrent cell.", panel=MODEL, choices=CELLS, recipe=True)
    num_layers: int = option(2, "Stacked recurrent layers.", flag="--layers", panel=MODEL, min=1, example="2")
    hidden_size: int = option(384, "Units per layer.", panel=MODEL, min=1, example="384", recipe=True)
    embed_size: int = option(64, "Character embedding size.", panel=MODEL, min=1, example="64", recipe=True)
    dropout: float = option(
        0.3,
        "Between stacked layers and before the output.",
        panel=REGULARISATION,
        min=0,
        below=1,
        example="0.2",
        recipe=True,
    )
    embed_dropout: float = option(
        0.1, "On the character embeddings, before the first layer.", panel=REGULARISATION, min=0, below=1, recipe=True
    )
    weight_drop: float = option(
        0.25,
        "DropConnect on the recurrent weights W_hh, one mask per batch.",
        panel=REGULARISATION,
        min=0,
        below=1,
        recipe=True,
    )
    nonlinearity: str = option("tanh", "Vanilla rnn only.", panel=MODEL, choices=NONLINEARITIES)
    init: str = option("default", "identity: W_hh = I and zero biases; vanilla rnn only.", panel=MODEL, choices=INITS)
    tie_embedding: bool = option(
        False,
        "Score the characters with their embedding: one matrix for the input and output layers, so that a large "
        "vocabulary's rare characters learn from being read as well as predicted. Needs --embed-size equal to "
        "--hidden-size.",
        panel=MODEL,
        recipe=True,
    )
    bidirectional: bool = option(
        False, "Read forwards and backwards; --objective fill only, and implied by it.", panel=FILL
    )
    # Characters after which the state restarts from zero, in training, scoring and sampling alike; None: it
    # carries on. Not an option: the ReLU cell's state has no bound, so charrnn sets it to --seq-len for it.
    context: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.context is not None and self.context < 2:
            raise CharRNNError(f"a model's context must be at least 2 characters, got {self.context}")
        if self.vocab_size < 1:
            raise CharRNNError("the vocabulary is empty. Train on a text with at least one character")
        if self.tie_embedding and self.bidirectional:
            raise OptionError(
                ModelConfig,
                "tie_embedding",
                "is for a one-directional model: a bidirectional one's embedding also holds the mask it fills. "
                "Leave out {tie_embedding}",
            )
        if self.tie_embedding and self.embed_size != self.hidden_size:
            raise OptionError(
                ModelConfig,
                "tie_embedding",
                f"scores the hidden state with the embedding, which needs {{embed_size}} {self.embed_size} to equal "
                f"{{hidden_size}} {self.hidden_size}. Give them the same size, or leave out {{tie_embedding}}",
            )
        if self.cell != "rnn":
            for name, default in (("nonlinearity", "tanh"), ("init", "default")):
                if getattr(self, name) != default:
                    raise OptionError(
                        ModelConfig, name, f"applies to the vanilla rnn cell only, not {self.cell}. Use {{cell}} rnn"
                    )


# ModelConfig's fields that the text or the other options decide, never a user: not options, and a config
# file's values for them are ignored.
DERIVED_MODEL_FIELDS = ("vocab_size", "context")

# Model options added since runs were first saved, each with the value that means "as before": a
# checkpoint or a run's config.toml without one trained without it, and reusing it must not switch it on.
ADDED_MODEL_OPTIONS = {"weight_drop": 0.0, "tie_embedding": False}
# The same for training options: a run saved before bounded validation scored its whole validation split.
ADDED_TRAIN_OPTIONS = {"val_chars": None}


@dataclass(frozen=True)
class TrainConfig:
    data: str = option("alice", "A known corpus name (see `charrnn corpus`) or a UTF-8 text file.", panel=DATA)
    seq_len: int = option(128, "Steps of back-propagation through time.", panel=OPTIMISATION, min=1, example="128")
    batch_size: int = option(
        32, "Parallel streams through the text.", panel=OPTIMISATION, min=1, example="32", recipe=True
    )
    lr: float = option(
        CELL_LR["lstm"],
        "Peak AdamW learning rate.",
        panel=OPTIMISATION,
        above=0,
        example="2e-3",
        default_note="0.01 for lstm, 0.005 for gru, 0.002 for rnn",
    )
    weight_decay: float = option(0.05, "AdamW weight decay on weight matrices.", panel=REGULARISATION, min=0)
    warmup_steps: int = option(100, "Linear learning-rate warm-up.", panel=OPTIMISATION, min=0, recipe=True)
    clip_norm: float = option(1.0, "Clip the gradient's total norm; 0 = off.", panel=OPTIMISATION, min=0)
    clip_value: float = option(0.0, "Clip each gradient element; 0 = off.", panel=OPTIMISATION, min=0)
    max_steps: int | None = option(
        None,
        "Stop after this many steps.",
        panel=BUDGET,
        min=1,
        default_note=f"{DEFAULT_MAX_STEPS} when no budget is given",
        recipe=True,
    )
    max_time: float | None = option(None, "Stop after this long, e.g. 90s, 10m, 1h.", panel=BUDGET, above=0)
    eval_every: int = option(100, "Validate and save every N steps.", panel=BUDGET, min=1, recipe=True)
    val_chars: int | None = option(
        VAL_CHARS,
        "Validate on at most this many characters: windows spread evenly over the validation split, the same "
        "ones every time; the whole split when it is shorter. The fill objective scores the hidden ones among "
        "them.",
        panel=BUDGET,
        min=1,
    )
    seed: int = option(1337, "Seed for initialisation, data order and dropout.", panel=DATA, min=0, max=SEED_LIMIT)
    ema_decay: float = option(
        0.995,
        "Validate and save a moving average of the weights with this decay; 0 = off.",
        panel=REGULARISATION,
        min=0,
        below=1,
        example="0.995",
        recipe=True,
    )
    init_from: str | None = option(None, "Fine-tune: start from this checkpoint's weights and vocabulary.", panel=MODEL)
    skip_unknown: bool = option(False, "With --init-from: leave out characters the model never saw.", panel=DATA)
    device: str = option("auto", "auto picks a CUDA GPU, else MPS, else the CPU.", panel=HARDWARE, choices=DEVICES)
    precision: str = option("fp32", "Autocast; fp16 with loss scaling.", panel=HARDWARE, choices=PRECISIONS)
    compile: bool = option(False, "torch.compile the model.", panel=HARDWARE)
    objective: str = option(
        "lm",
        "lm: predict the next character; fill: a bidirectional model predicts hidden characters (`charrnn fill`).",
        panel=FILL,
        choices=OBJECTIVES,
    )
    # The fill objective hides spans of 1 to mask_span characters, about mask_rate of all characters.
    mask_rate: float = option(0.15, "About this share of the characters is hidden.", panel=FILL, above=0, below=1)
    mask_span: int = option(10, "Hidden spans are 1 to this many characters long.", panel=FILL, min=1)

    def __post_init__(self) -> None:
        check_fields(self)
        # AdamW hands torch lr / (1 - beta1) at its first step, and lr * weight_decay, as 32-bit floats.
        if self.lr * max(1 / (1 - ADAMW_BETA1), self.weight_decay) > FLOAT32_MAX:
            raise OptionError(
                TrainConfig,
                "lr",
                f"{self.lr:g} with {{weight_decay}} {self.weight_decay:g} overflows the 32-bit floats AdamW "
                "steps in. Pass a smaller {lr}",
            )
        if self.objective == "fill" and self.mask_span > self.seq_len:
            raise OptionError(
                TrainConfig, "mask_span", f"must be at most {{seq_len}} ({self.seq_len}), got {self.mask_span}"
            )
        if self.max_steps is None and self.max_time is None:
            raise CharRNNError("training needs a budget. Pass --max-steps N or --max-time DURATION")


@dataclass(frozen=True)
class DynamicEvalConfig:
    """`charrnn eval --dynamic`: the size of each adapting step, and the share of the way back to the trained
    weights after it. The defaults were chosen on the validation split of Alice with the default model
    (docs/results.md, "Dynamic evaluation")."""

    lr: float = option(1e-3, "With --dynamic: the size of each step.", flag="--dynamic-lr", above=0, example="1e-3")
    decay: float = option(
        0.003,
        "With --dynamic: the share of the way back to the trained weights after each step.",
        flag="--dynamic-decay",
        min=0,
        below=1,
        example="0.003",
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class SampleConfig:
    length: int = option(500, "New characters per sample (the prime not counted).", min=0)
    temperature: float = option(
        0.8, "Below 1 is safer, above 1 wilder; 0 = greedy.", min=0, example="0.8 (0 is greedy)"
    )
    top_k: int | None = option(None, "Sample only from the k likeliest characters.", min=1)
    top_p: float | None = option(
        None, "Sample only from the likeliest characters that cover probability p.", above=0, max=1, example="0.9"
    )
    num_samples: int = option(1, "Independent samples, separated by a line '---'.", min=1)
    seed: int | None = option(
        None, "Same seed, same text.", min=0, max=SEED_LIMIT, default_note="random, printed to stderr"
    )

    def __post_init__(self) -> None:
        check_fields(self)


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


def format_duration(seconds: float) -> str:
    """`12.3s` under a minute, else `7m32s`: how a run's time is shown, in tables and messages alike."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
