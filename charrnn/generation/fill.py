"""Fill gaps in text with a bidirectional model: span masking, training batches, masked scoring, decoding.

A bidirectional model reads each window forwards and backwards, so its output at a position
depends on the text on both sides. That rules out generating text left to right, but it is what
restoring a missing word needs. Hidden characters enter the model as the mask, an input id one
past the vocabulary (see `CharRNN`), and the loss counts the hidden positions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.data.splits import Split
from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import EvalResult, evaluate, spans
from charrnn.generation.sampling import draw, require_finite_weights, tempered
from charrnn.settings.config import ModelConfig, TrainConfig
from charrnn.settings.options import wrap_seed

IGNORE = -100  # F.cross_entropy's default ignore_index: targets that do not count
# Evaluation hides the same positions every time: one fixed seed per split (--data texts use the test seed).
EVAL_MASK_SEEDS = {"train": 1, "val": 2, "test": 3}
# A gap whose chosen characters have a mean probability below this is reported as a guess.
LOW_CONFIDENCE = 0.5
WINDOWS_PER_CALL = 64


def hide_spans(shape: tuple[int, int], rate: float, max_span: int, generator: torch.Generator) -> torch.Tensor:
    """A boolean (rows, length) mask of spans 1 to `max_span` long, hiding about `rate` of each row.

    A span starts at each position with probability rate / (mean span length); where spans
    overlap a little less is hidden. Every row hides at least one span, so no batch is empty.
    """
    rows, length = shape
    starts = torch.rand(shape, generator=generator) < rate * 2 / (1 + max_span)
    starts[torch.arange(rows), torch.randint(length, (rows,), generator=generator)] = True
    lengths = torch.randint(1, max_span + 1, shape, generator=generator)
    positions = torch.arange(length)
    ends = torch.where(starts, positions + lengths, 0)
    return ends.cummax(dim=1).values > positions


class MaskedWindows:
    """Batches of independent windows of the training ids, with spans hidden behind the mask.

    The backward direction starts at each window's end, so no hidden state can carry from one
    window to the next: every batch is `fresh`, and windows start anywhere. Batch b comes from a
    generator seeded with (seed, b), so the position is one integer and resuming is exact; a
    process of several takes its `streams` of the same batch.
    """

    def __init__(self, ids: torch.Tensor, config: TrainConfig, mask_id: int, first: int = 0, count: int | None = None):
        if len(ids) < config.seq_len:
            raise CharRNNError(
                f"the training split has {len(ids):,} characters, fewer than --seq-len {config.seq_len}. "
                "Pass a smaller --seq-len, or a longer text"
            )
        self.ids, self.config, self.mask_id = ids, config, mask_id
        self.streams = slice(first, config.batch_size if count is None else first + count)
        self.batch = 0

    def state_dict(self) -> dict:
        return {"batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.batch = state["batch"]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Inputs with the mask in the hidden positions, and targets that count only there."""
        c = self.config
        # Wrapped to the 64 bits torch takes: --seed may be any of them.
        generator = torch.Generator().manual_seed(wrap_seed(c.seed * 1_000_003 + self.batch))
        self.batch += 1
        starts = torch.randint(len(self.ids) - c.seq_len + 1, (c.batch_size,), generator=generator)
        hidden = hide_spans((c.batch_size, c.seq_len), c.mask_rate, c.mask_span, generator)
        windows = self.ids[starts[:, None] + torch.arange(c.seq_len)].long()
        inputs, targets = windows.masked_fill(hidden, self.mask_id), windows.masked_fill(~hidden, IGNORE)
        return inputs[self.streams], targets[self.streams], True


class Fill:
    """The objective: predict the hidden characters from both sides."""

    def __init__(self, config: TrainConfig, model_config: ModelConfig):
        self.config, self.mask_id = config, model_config.vocab_size

    def batcher(self, ids, first: int = 0, count: int | None = None) -> MaskedWindows:
        return MaskedWindows(ids, self.config, self.mask_id, first, count)

    def validation_score(self, model, ids, split: Split, group):
        """The hidden characters of at most --val-chars characters of the split, in the windows a language
        model's validation reads (`evaluation.score.spans`), in every process (`group` is not used)."""
        hidden = eval_mask(len(split), self.config.mask_rate, self.config.mask_span, split.name)
        nats, chars, correct = 0.0, 0, 0
        for start, end in spans(split.start, split.end, self.config.val_chars):
            window = hidden[start - split.start : end - split.start]
            if window.any():
                part = score_masked(model, ids[start:end], window, self.config.seq_len)
                nats, chars, correct = nats + part.nats, chars + part.chars, correct + part.correct
        if chars == 0:
            raise CharRNNError("no position of the validation split was hidden to score. Train on a longer text")
        return EvalResult(nats=nats, chars=chars, correct=correct)


def eval_mask(length: int, mask_rate: float, mask_span: int, split_name: str) -> torch.Tensor:
    """The positions evaluation hides in a split: spans as in training, drawn from the split's fixed seed."""
    generator = torch.Generator().manual_seed(EVAL_MASK_SEEDS[split_name])
    return hide_spans((1, length), mask_rate, mask_span, generator)[0]


def predict(model, inputs: torch.Tensor, window: int, positions: torch.Tensor) -> torch.Tensor:
    """Logits (len(positions), vocab) at `positions` of a masked text `inputs`.

    The model trained on windows `window` long, so a longer text is read in windows that overlap
    by half, and each position takes its logits from the window in which it sits nearest the
    middle: at least a quarter window of context on each side, except near the text's ends.
    Only the windows that hold a requested position run.
    """
    n = len(inputs)
    window = min(window, n)
    stride = max(1, window // 2)
    starts = torch.tensor([*range(0, n - window, stride), n - window])
    middles = starts.double() + window / 2
    owner = torch.bucketize(positions.double(), (middles[:-1] + middles[1:]) / 2)
    needed = owner.unique()
    device = next(model.parameters()).device
    out = torch.empty(len(positions), model.config.vocab_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for first in range(0, len(needed), WINDOWS_PER_CALL):
                group = needed[first : first + WINDOWS_PER_CALL]
                batch = inputs[starts[group][:, None] + torch.arange(window)].long()
                logits = model(batch.to(device))[0].float().cpu()
                row = torch.full((len(starts),), -1)
                row[group] = torch.arange(len(group))
                chosen = row[owner] >= 0
                at = owner[chosen]
                out[chosen] = logits[row[at], positions[chosen] - starts[at]]
    finally:
        model.train(was_training)
    return out


def score_masked(model, ids: torch.Tensor, hidden: torch.Tensor, window: int) -> EvalResult:
    """Nats and correct guesses at the `hidden` positions of `ids`, all predicted at once from what is left."""
    ids = ids.long()
    positions = hidden.nonzero()[:, 0]
    if len(positions) == 0:
        raise CharRNNError("no position of this text was hidden to score. Pass a longer text or another split")
    logits = predict(model, ids.masked_fill(hidden, model.config.vocab_size), window, positions)
    targets = ids[positions]
    nats = F.cross_entropy(logits.double(), targets, reduction="sum")
    return EvalResult(nats=float(nats), chars=len(positions), correct=int((logits.argmax(-1) == targets).sum()))


def score_left_to_right(model, ids: torch.Tensor, start: int, hidden: torch.Tensor) -> EvalResult:
    """A language model's score at the same positions: the true character given the true text to its left
    (the earlier characters of its own gap included), as `charrnn eval` scores a language model."""
    counted = torch.zeros(len(ids), dtype=torch.bool)
    counted[start : start + len(hidden)] = hidden
    return evaluate(model, ids, start, start + len(hidden), counted=counted)


@dataclass(frozen=True)
class Gap:
    start: int
    text: str
    mean_probability: float

    @property
    def low_confidence(self) -> bool:
        return self.mean_probability < LOW_CONFIDENCE


@dataclass(frozen=True)
class Filled:
    text: str
    gaps: list[Gap]


def fill(
    model, vocab: Vocabulary, text: str, window: int, mask_char: str = "_", temperature: float = 0.0, seed: int = 0
) -> Filled:
    """`text` with every run of `mask_char` replaced by the model's characters.

    Non-autoregressive, by iterative refinement: the model sees every gap masked; in each gap the
    position whose chosen character is likeliest is written in, and the model reads the text again,
    until no mask is left. So a gap of any length takes as many passes as it has characters, each
    pass using what the earlier ones wrote. Greedy at temperature 0, else sampled with `seed`.
    """
    if len(mask_char) != 1:
        raise CharRNNError(f"the mask must be one character, got {mask_char!r}. Pass e.g. --mask-char _")
    if temperature < 0:
        raise CharRNNError(f"--temperature must be 0 or more, got {temperature}. Use 0 for the likeliest characters")
    if not text:
        raise CharRNNError(
            f"the text to fill is empty. Pass a text with each missing character written as {mask_char!r}"
        )
    require_finite_weights(model)
    # A lone surrogate (a byte that was not UTF-8) keeps its code point: a character the model never saw.
    codepoints = torch.frombuffer(bytearray(text.encode("utf-32-le", "surrogatepass")), dtype=torch.int32)
    hidden = codepoints == ord(mask_char)
    if not bool(hidden.any()):
        raise CharRNNError(
            f"the text has no {mask_char!r} to fill. Mark each missing character with {mask_char!r}, "
            "or name the mask character with --mask-char"
        )
    ids = torch.full((len(text),), model.config.vocab_size, dtype=torch.long)
    ids[~hidden] = vocab.encode(
        text.replace(mask_char, ""), fix="Use only characters from the training text, and the mask", what="the text"
    ).long()
    gap_of = (hidden & ~torch.cat([torch.tensor([False]), hidden[:-1]])).cumsum(0) - 1
    generator = torch.Generator().manual_seed(seed)
    probability = torch.zeros(len(text), dtype=torch.double)
    remaining = hidden.clone()
    while bool(remaining.any()):
        positions = remaining.nonzero()[:, 0]
        logits = predict(model, ids, window, positions)
        if temperature == 0:
            picks = logits.argmax(-1)
        else:
            picks = draw(F.softmax(tempered(logits, temperature), -1), generator)
        picked = F.softmax(logits.double(), -1).gather(1, picks[:, None])[:, 0]
        gaps = gap_of[positions]
        best = torch.full((int(gap_of[-1]) + 1,), -1.0, dtype=torch.double).scatter_reduce(0, gaps, picked, "amax")
        commit = picked == best[gaps]
        ids[positions[commit]] = picks[commit]
        probability[positions[commit]] = picked[commit]
        remaining[positions[commit]] = False
    chars, filled_ids = list(text), ids.tolist()
    for p in hidden.nonzero()[:, 0].tolist():
        chars[p] = vocab.chars[filled_ids[p]]
    return Filled("".join(chars), _gaps(hidden, gap_of, chars, probability))


def _gaps(hidden, gap_of, chars, probability) -> list[Gap]:
    positions = hidden.nonzero()[:, 0]
    gaps = gap_of[positions]
    count = int(gaps.max()) + 1
    totals = torch.zeros(count, dtype=torch.double).index_add_(0, gaps, probability[positions])
    lengths = torch.bincount(gaps, minlength=count)
    firsts = torch.full((count,), len(chars)).scatter_reduce(0, gaps, positions, "amin")
    return [
        Gap(start=s, text="".join(chars[s : s + n]), mean_probability=float(t) / n)
        for s, n, t in zip(firsts.tolist(), lengths.tolist(), totals.tolist())
    ]
