"""Train several configurations on the same text under the same budget, and tabulate what each reached.

Each configuration trains with `charrnn.training.trainer.Trainer` into its own run directory; the rows are
read from the progress it yields, its best checkpoint scored on the test split, and (for curves)
its metrics.jsonl.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from charrnn.api import load
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import evaluate
from charrnn.settings.config import format_duration
from charrnn.studies.compare_configs import COMPARE_TRAINING, Entry
from charrnn.training.launch import open_training
from charrnn.training.progress import Progress
from charrnn.training.run_dir import RunDir, read_metrics
from charrnn.training.trainer import Trainer


@dataclass(frozen=True)
class Row:
    name: str
    description: str
    run_dir: str
    parameters: int
    steps: int
    elapsed_s: float
    train_chars_per_s: float
    best_val_bpc: float | None
    test_bpc: float | None
    time_to_best_s: float | None
    clipped_fraction: float | None
    median_grad_norm: float | None
    error: str | None = None


class Comparison:
    """Trains `entries` one after another; `run()` yields (entry, progress) and fills `rows`."""

    def __init__(self, entries: list[Entry], out_root: Path, train_options: dict, shape: dict, force: bool = False):
        self.entries, self.out_root, self.force = entries, Path(out_root), force
        self.train_options, self.shape = train_options, shape
        self.rows: list[Row] = []
        taken = [e.name for e in entries if RunDir(self.run_dir(e)).holds_run()]
        if taken and not force:
            raise CharRNNError(
                f"{self.out_root} already holds runs for {', '.join(taken)}. "
                "Pass --force to train them again (their checkpoints are replaced), or another --out"
            )

    def run_dir(self, entry: Entry) -> Path:
        return self.out_root / entry.name

    def run(self) -> Iterator[tuple[Entry, Progress]]:
        for entry in self.entries:
            trainer = open_training(
                self.run_dir(entry),
                {**COMPARE_TRAINING, **self.train_options, **entry.train, **self.shape, **entry.model},
                force=self.force,
                use_recipe=False,
            )
            seen: list[Progress] = []
            error = None
            try:
                for progress in trainer.run():
                    seen.append(progress)
                    yield entry, progress
            except CharRNNError as e:  # a diverging configuration is a result, not the end of the comparison
                error = str(e)
            finally:
                trainer.close()
            self.rows.append(self._row(entry, trainer, seen, error))

    def _row(self, entry: Entry, trainer: Trainer, seen: list[Progress], error: str | None) -> Row:
        evaluated = [p for p in seen if p.val_bpc is not None]
        best = min(evaluated, key=lambda p: p.val_bpc, default=None)
        test_bpc = None
        if best is not None:
            test = trainer.splits["test"]
            test_bpc = evaluate(load(trainer.run_dir.path).model, trainer.ids, test.start, test.end).bpc
        clipping = bool(trainer.config.clip_norm)
        return Row(
            name=entry.name,
            description=entry.description,
            run_dir=str(trainer.run_dir.path),
            parameters=trainer.model.num_parameters(),
            steps=len(seen),
            elapsed_s=trainer.elapsed_s,
            # Characters over the time spent in training steps (validation excluded): a harmonic mean.
            train_chars_per_s=len(seen) / sum(1 / p.chars_per_s for p in seen) if seen else 0.0,
            best_val_bpc=None if best is None else best.val_bpc,
            test_bpc=test_bpc,
            time_to_best_s=None if best is None else best.elapsed_s,
            clipped_fraction=sum(p.clipped for p in seen) / len(seen) if clipping and seen else None,
            median_grad_norm=statistics.median(p.grad_norm for p in seen) if seen else None,
            error=error,
        )


def validation_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(elapsed seconds, validation bpc) at each evaluation recorded in a run's metrics.jsonl."""
    return [(m["elapsed_s"], m["val_bpc"]) for m in read_metrics(run_dir) if m.get("val_bpc") is not None]


def _number(value, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds)


COLUMNS = (
    "name",
    "params",
    "train chars/s",
    "steps",
    "best val bpc",
    "test bpc",
    "time to best",
    "clipped steps",
    "median grad norm",
)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    for row in rows:
        cells = (
            row.name,
            f"{row.parameters:,}",
            f"{row.train_chars_per_s:,.0f}",
            f"{row.steps:,}",
            _number(row.best_val_bpc, ".3f", "diverged" if row.error else "—"),
            _number(row.test_bpc, ".3f"),
            _duration(row.time_to_best_s),
            "off" if row.clipped_fraction is None else f"{row.clipped_fraction:.1%}",
            _number(row.median_grad_norm, ".3g"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
