"""The train/validation/test split of a corpus, and how much text training needs."""

from __future__ import annotations

from dataclasses import dataclass

TRAIN_FRACTION = 0.90
VAL_FRACTION = 0.05
WARMUP_CHARS = 1000


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
