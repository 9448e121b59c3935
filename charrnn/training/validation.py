"""Validation and saving: score the validation split with the weights a checkpoint would hold, and write a
checkpoint into the run directory. `save` is the one place training writes a checkpoint."""

from __future__ import annotations

import contextlib
from pathlib import Path

from charrnn.model import device as devices
from charrnn.storage import checkpoint


def score(trainer):
    """The validation score of `trainer`'s model (its weight average, when it keeps one). Every process scores
    its share of the windows and gets the whole score."""
    average = trainer.average
    with average.applied() if average is not None else contextlib.nullcontext():
        with devices.autocast(trainer.device, trainer.config.precision):
            return trainer.objective.validation_score(trainer.model, trainer.ids, trainer.splits["val"], trainer.group)


def save(out_dir: Path, name: str, content: dict) -> None:
    """Write checkpoint `name` (`checkpoint.BEST` or `checkpoint.LAST`) into the run directory `out_dir`."""
    checkpoint.save(out_dir / name, content)
