"""What a run reports: a `Progress` after every step (the CLI renders it, metrics.jsonl records it) and an
`Outcome` at the end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Progress:
    step: int
    elapsed_s: float
    lr: float
    train_loss: float
    grad_norm: float
    clipped: bool
    chars_per_s: float
    budget_fraction: float
    val_loss: float | None = None
    val_bpc: float | None = None
    val_chars: int | None = None  # how many validation characters were scored
    # Under --max-time, at a validation: the steps the run will have taken when its budget ends, at the pace of
    # its steps and validations so far. The recipe's estimate comes from a few timed steps; this from the run.
    projected_steps: int | None = None


@dataclass(frozen=True)
class Outcome:
    finished: bool
    step: int
    elapsed_s: float
    best_val_bpc: float | None
    out_dir: Path
    # Stopped before its first checkpoint over a previous run, which is left as it was in `out_dir`.
    kept_previous: bool = False
