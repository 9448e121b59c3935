"""Text to integer ids, the train/validation/test split, and batches of contiguous streams."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from charrnn.errors import CharRNNError
from charrnn.options import wrap_seed

TRAIN_FRACTION = 0.90
VAL_FRACTION = 0.05
WARMUP_CHARS = 1000
SKIP_HINT = "Remove them, or pass --skip-unknown to leave them out"


class Vocabulary:
    """The sorted distinct characters of a corpus, and the maps between them and ids."""

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.dtype = smallest_dtype(len(self.chars))

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> Counter:
        return Counter(c for c in text if c not in self.index)

    def encode(
        self, text: str, skip_unknown: bool = False, fix: str = SKIP_HINT, what: str = "the text"
    ) -> torch.Tensor:
        """Ids of `text` in the smallest integer dtype that holds the vocabulary."""
        if not text:
            return torch.empty(0, dtype=self.dtype)
        # A lone surrogate (a byte that was not UTF-8) keeps its code point: a character the model never saw.
        codepoints = torch.frombuffer(bytearray(text.encode("utf-32-le", "surrogatepass")), dtype=torch.int32)
        known = torch.tensor([ord(c) for c in self.chars] or [0], dtype=torch.int64)
        table = torch.full((max(int(codepoints.max()), int(known.max())) + 1,), -1, dtype=torch.int32)
        table[known[: len(self.chars)]] = torch.arange(len(self.chars), dtype=torch.int32)
        ids = table[codepoints.long()]
        missing = ids < 0
        if bool(missing.any()):
            if not skip_unknown:
                raise self.unknown_error(self.unknown(text), fix, what)
            ids = ids[~missing]
        return ids.to(self.dtype)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    @staticmethod
    def unknown_error(counts: Counter, fix: str, what: str) -> CharRNNError:
        shown = ", ".join(f"{c!r} ({n}x)" for c, n in counts.most_common(10))
        more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
        return CharRNNError(f"{what} has {sum(counts.values())} characters the model never saw: {shown}{more}. {fix}")


def smallest_dtype(vocab_size: int) -> torch.dtype:
    if vocab_size <= 256:
        return torch.uint8
    if vocab_size <= 32768:
        return torch.int16
    return torch.int32


@dataclass(frozen=True)
class Split:
    """Positions [start, end) of a split, scored after warming the state on what comes before."""

    name: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def splits(n: int) -> dict[str, Split]:
    """Contiguous and deterministic: first 90% train, next 5% validation, last 5% test."""
    train_end = int(n * TRAIN_FRACTION)
    val_end = int(n * (TRAIN_FRACTION + VAL_FRACTION))
    return {
        "train": Split("train", 0, train_end),
        "val": Split("val", train_end, val_end),
        "test": Split("test", val_end, n),
    }


def min_train_chars(batch_size: int, seq_len: int) -> int:
    return batch_size * seq_len + 1


class StreamBatcher:
    """Batches of `batch_size` contiguous streams through the training ids, `seq_len` steps at a time.

    Window w of an epoch continues window w-1 in every stream, so the hidden state carries over
    (truncated back-propagation through time). Each epoch shifts the streams by an offset drawn
    from (seed, epoch), so window boundaries move between epochs; the position is two integers,
    which makes resuming exact. `first` and `count` select streams first..first+count-1 of the
    batch_size-stream layout: one process's share when several train together.
    """

    def __init__(
        self, ids: torch.Tensor, batch_size: int, seq_len: int, seed: int, first: int = 0, count: int | None = None
    ):
        need = min_train_chars(batch_size, seq_len)
        if len(ids) < need:
            raise CharRNNError(
                f"the training split has {len(ids):,} characters, but --batch-size {batch_size} and "
                f"--seq-len {seq_len} need at least {need:,} ({need - len(ids):,} more). "
                "Pass a smaller --batch-size or --seq-len, or a longer text"
            )
        self.ids, self.batch_size, self.seq_len, self.seed = ids, batch_size, seq_len, seed
        self.streams = slice(first, batch_size if count is None else first + count)
        self.epoch, self.window = 0, 0
        self._layout()

    def _layout(self) -> None:
        n, b, t = len(self.ids), self.batch_size, self.seq_len
        max_offset = min(t - 1, n - 1 - b * t)
        # Wrapped to the 64 bits torch takes: --seed may be any of them.
        generator = torch.Generator().manual_seed(wrap_seed(self.seed * 1_000_003 + self.epoch))
        offset = int(torch.randint(0, max_offset + 1, (1,), generator=generator))
        stream_len = (n - 1 - offset) // b
        self.windows_per_epoch = stream_len // t
        self._starts = (offset + torch.arange(b) * stream_len)[self.streams]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.window = state["epoch"], state["window"]
        self._layout()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Inputs and targets, both (streams, seq_len), and whether a new epoch starts here."""
        if self.window == self.windows_per_epoch:
            self.epoch, self.window = self.epoch + 1, 0
            self._layout()
        starts = self._starts + self.window * self.seq_len
        index = starts[:, None] + torch.arange(self.seq_len + 1)[None, :]
        chunk = self.ids[index].long()
        fresh = self.window == 0
        self.window += 1
        return chunk[:, :-1], chunk[:, 1:], fresh
