"""`charrnn info`: what a checkpoint holds."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from charrnn.cli.common import CheckpointArgument, handles_errors, out, print_json
from charrnn.settings.config import format_duration


@handles_errors
def info(
    checkpoint_path: CheckpointArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the summary.")] = False,
):
    """Describe a checkpoint: model, size, vocabulary, training options, progress, validation scores."""
    from charrnn.storage import checkpoint

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
