"""Score every character of a span of text with its left context: total nats and characters."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn import distributed
from charrnn.data.splits import WARMUP_CHARS
from charrnn.distributed import Group
from charrnn.errors import CharRNNError
from charrnn.model import bounded_context as context

CHUNK_LEN = 8192
# Windows of a bounded score are shorter than chunks: more of them run side by side in fewer steps, and
# under torchrun more processes get a share (32,768 characters make 16 windows).
BOUNDED_WINDOW = 2048
MAX_STREAMS = 64
TIME_WINDOW = 1024
# The most logits (streams x steps x vocabulary) one window may hold: 32 MB of fp32, which 64 streams
# of a 128-character vocabulary fill at 1,024 steps. A larger vocabulary (Chinese text has thousands of
# characters) gets shorter windows instead of gigabytes of logits.
MAX_WINDOW_LOGITS = 1 << 23


# Guessing every character uniformly scores ln(vocabulary size) nats per character, what a model starts near;
# one this many times worse has not learned badly but diverged (an --lr of 1e9 scores some 1e37 bpc).
DIVERGED_FACTOR = 10


def diverged(loss: float, vocab_size: int) -> bool:
    """Whether a loss is one no model that learned anything has: not finite, or far above uniform guessing."""
    return not math.isfinite(loss) or loss > DIVERGED_FACTOR * math.log(max(vocab_size, 2))


@dataclass(frozen=True)
class EvalResult:
    nats: float
    chars: int
    correct: int

    @property
    def accuracy(self) -> float:
        """The share of characters that were the model's likeliest guess."""
        return self.correct / self.chars

    @property
    def loss(self) -> float:
        return self.nats / self.chars

    @property
    def bpc(self) -> float:
        return self.loss / math.log(2)

    @property
    def perplexity(self) -> float:
        """e to the loss; infinite for a loss beyond what a float can raise e to (a diverged model's)."""
        try:
            return math.exp(self.loss)
        except OverflowError:
            return math.inf

    def as_dict(self) -> dict:
        return {"loss": self.loss, "bpc": self.bpc, "perplexity": self.perplexity, "chars": self.chars}


def scored_start(start: int, end: int) -> int:
    """Where scoring of [start, end) begins: the corpus's very first character has no context to be
    predicted from. An empty span is an error."""
    start = max(start, 1)
    if end <= start:
        raise CharRNNError("there is nothing to score in this text. Pass a longer text or another split")
    return start


def evaluate(
    model,
    ids: torch.Tensor,
    start: int,
    end: int,
    warmup: int = WARMUP_CHARS,
    counted: torch.Tensor | None = None,
    *,
    max_chars: int | None = None,
    group: Group | None = None,
) -> EvalResult:
    """Cross-entropy of ids[start:end], each character predicted from everything before it.

    `counted`, a boolean per id, limits the score to the positions it marks (all, when None).

    The span is cut into chunks scored side by side as a batch; each chunk's state is first
    warmed on the `warmup` characters before it, so every character is scored with at least that
    much left context (or all there is), the first chunk of a validation or test split included. A model
    with a bounded context is read in its pieces instead (`context.py`).
    On a CPU, a vanilla RNN's or a GRU's chunks are shared among threads (`_worker_count`).
    The corpus's very first character has no context and is not scored.

    `max_chars` bounds the work on a long span (`spans`). Under torchrun (`group`), each process
    scores every world_size-th chunk and the totals are summed over the processes, so each of them
    returns the score of the whole.
    """
    device = next(model.parameters()).device
    group = group or Group()
    chunks = spans(start, end, max_chars)
    if model.config.context is not None:
        chunks = [piece for s, e in chunks for piece in context.pieces(s, e, model.config.context)]
        warmup = min(warmup, context.reread_length(model.config.context))
    chunks = chunks[group.rank :: group.world_size]
    workers = _worker_count(model, device, len(chunks))
    was_training = model.training
    model.eval()
    try:
        totals = _side_by_side(
            lambda share, stop: _score_chunks(model, ids, counted, share, warmup, device, stop),
            [chunks[k::workers] for k in range(workers)],
        )
    finally:
        model.train(was_training)
    nats, correct = torch.stack(totals).sum(0).tolist()
    chars = sum(e - s if counted is None else int(counted[s:e].sum()) for s, e in chunks)
    nats, correct, chars = distributed.total(group, [nats, correct, chars], device)
    return EvalResult(nats=nats, chars=int(chars), correct=int(correct))


def spans(start: int, end: int, max_chars: int | None = None) -> list[tuple[int, int]]:
    """The chunks of [start, end) that are scored, each at most CHUNK_LEN long: all of the span, or, when
    it holds more than `max_chars` characters, windows of at most BOUNDED_WINDOW characters and about
    `max_chars` in all, spread evenly over it and the same every time (so validations at different steps
    score the same text, whatever the number of processes)."""
    start = scored_start(start, end)
    if max_chars is None or end - start <= max_chars:
        return [(s, min(s + CHUNK_LEN, end)) for s in range(start, end, CHUNK_LEN)]
    count = math.ceil(max_chars / BOUNDED_WINDOW)
    length = max_chars // count
    # Window k is centred in the k-th of `count` equal parts of the span; a part is longer than a window,
    # since the span holds more than count * length characters, so windows never overlap.
    part = (end - start) / count
    firsts = [start + int((k + 0.5) * part - length / 2) for k in range(count)]
    return [(first, first + length) for first in firsts]


def _worker_count(model, device: torch.device, num_chunks: int) -> int:
    """How many threads score chunks side by side, each with its own share of PyTorch's threads.

    PyTorch runs the vanilla RNN and the GRU as one small matrix product per step, which two threads
    barely share, so threads scoring a share of the streams each run faster. Its LSTM runs in oneDNN,
    which spreads one sequence over the threads itself, so it stays whole (docs/performance.md,
    "Measured choices").
    """
    if device.type != "cpu" or model.config.cell == "lstm":
        return 1
    return max(1, min(torch.get_num_threads(), num_chunks))


def _side_by_side(score, shares: list) -> list:
    """`score(share, stop)` for every share, each in its own thread when there are several.

    A worker thread starts with PyTorch's defaults, so it is given the caller's autocast (bf16 or fp16
    on a CPU) and a share of its threads. When one worker fails, or the caller is interrupted (Ctrl-C),
    every worker stops after its current window of steps, and the thread count that new threads take
    (which the workers set) is put back."""
    stop = threading.Event()
    if len(shares) == 1:
        return [score(shares[0], stop)]
    threads = torch.get_num_threads()
    caller_autocast = {"dtype": torch.get_autocast_dtype("cpu"), "enabled": torch.is_autocast_enabled("cpu")}

    def work(share):
        try:
            with torch.autocast("cpu", **caller_autocast):
                return score(share, stop)
        except BaseException:
            stop.set()
            raise

    try:
        with ThreadPoolExecutor(
            len(shares), initializer=torch.set_num_threads, initargs=(max(1, threads // len(shares)),)
        ) as pool:
            try:
                futures = [pool.submit(work, share) for share in shares]
                return [future.result() for future in futures]
            except BaseException:
                stop.set()
                raise
    finally:
        torch.set_num_threads(threads)


def _score_chunks(model, ids, counted, chunks, warmup, device, stop: threading.Event) -> torch.Tensor:
    total = torch.zeros((2,), dtype=torch.float64, device=device)
    # Inference mode is per thread, so each worker enters it itself.
    with torch.inference_mode():
        for first in range(0, len(chunks), MAX_STREAMS):
            total += _score_group(model, ids, counted, chunks[first : first + MAX_STREAMS], warmup, device, stop)
    return total


def _score_group(model, ids, counted, chunks, warmup, device, stop: threading.Event) -> torch.Tensor:
    """Total nats and correct guesses, side by side: stream k reads ids[a_k : e_k - 1] and predicts
    ids[a_k + 1 : e_k]; of those, positions >= s_k count (only those `counted` marks, when given)."""
    begins = [max(0, s - 1 - warmup) for s, _ in chunks]
    length = max(e - 1 - a for a, (_, e) in zip(begins, chunks))
    inputs = torch.zeros(len(chunks), length, dtype=torch.long)
    targets = torch.zeros_like(inputs)
    mask = torch.zeros(len(chunks), length, dtype=torch.bool)
    for k, (a, (s, e)) in enumerate(zip(begins, chunks)):
        n = e - 1 - a
        inputs[k, :n] = ids[a : e - 1].long()
        targets[k, :n] = ids[a + 1 : e].long()
        mask[k, s - 1 - a : n] = True if counted is None else counted[s:e]
    inputs, targets, mask = inputs.to(device), targets.to(device), mask.to(device)
    total = torch.zeros((2,), dtype=torch.float64, device=device)
    state = None
    window = max(1, min(TIME_WINDOW, MAX_WINDOW_LOGITS // (len(chunks) * model.config.vocab_size)))
    for t in range(0, length, window):
        if stop.is_set():
            break
        logits, state = model(inputs[:, t : t + window], state)
        nats = F.cross_entropy(logits.flatten(0, 1).float(), targets[:, t : t + window].flatten(), reduction="none")
        counts = mask[:, t : t + window].flatten()
        guessed = logits.flatten(0, 1).argmax(-1) == targets[:, t : t + window].flatten()
        total[0] += (nats * counts).sum(dtype=torch.float64)
        total[1] += (guessed & counts).sum(dtype=torch.float64)
    return total
