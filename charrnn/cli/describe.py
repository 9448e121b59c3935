"""`charrnn info` and `charrnn plot`: what a checkpoint holds, and how a run went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import CheckpointArgument, err, fail, handles_errors, out, print_json
from charrnn.config import format_duration


@handles_errors
def info(
    checkpoint_path: CheckpointArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the summary.")] = False,
):
    """Describe a checkpoint: model, size, vocabulary, training options, progress, validation scores."""
    from charrnn import checkpoint

    path = checkpoint.resolve(checkpoint_path)
    content = checkpoint.load(path)
    model, train_options = content["model_config"], content["train_config"]

    report = checkpoint.report(path, content)
    if as_json:
        print_json(report)
        return

    def score(value: float | None) -> str:
        return "none yet" if value is None else f"{value:.4f} bpc"

    rows = [
        ("checkpoint", f"{path} (written by charrnn {report['charrnn_version']})"),
        (
            "model",
            f"{model['num_layers']}-layer {model['hidden_size']}-unit {model['cell']}, embed {model['embed_size']}, "
            f"dropout {model['dropout']:g}; {report['parameters']:,} parameters",
        ),
        ("vocabulary", f"{report['vocab_size']} characters: {json.dumps(report['vocab'], ensure_ascii=False)}"),
        ("trained", f"{report['step']:,} steps in {format_duration(report['elapsed_s'])}"),
        ("validation", f"best {score(report['best_val_bpc'])}, last {score(report['last_val_bpc'])}"),
        ("resumable", "yes (last.pt)" if report["resumable"] else "no (weights only)"),
        ("options", ", ".join(f"{k}={v}" for k, v in train_options.items() if v is not None)),
    ]
    for name, value in rows:
        out.print(f"{name:<11} {value}", markup=False)


@handles_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory with a metrics.jsonl.")],
    out_path: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Image to write; its suffix picks the format (.png, .svg, .pdf...). \\[default: RUN_DIR/training.png]",
        ),
    ] = None,
):
    """Chart a run: training and validation bpc against steps and time, learning rate, gradient norm."""
    from charrnn.plots import image_path, require_matplotlib, training_run
    from charrnn.rundir import read_metrics

    require_matplotlib("charrnn plot")
    out_path = image_path(out_path or Path(run_dir) / "training.png", "--out")
    metrics = read_metrics(run_dir)
    if not metrics:
        fail(f"{run_dir} has no steps recorded yet. Plot it once training has run a step")
    training_run(metrics, out_path, f"{run_dir}: {metrics[-1]['step']:,} steps", "--out")
    err.print(f"plot: {out_path}", markup=False)
    out.print(str(out_path), markup=False)
