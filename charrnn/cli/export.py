"""`charrnn export`: a model as a file that runs without PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli.common import CheckpointArgument, err, handles_errors, out
from charrnn.serving.onnx_export import ExportFormat


@handles_errors
def export_command(
    checkpoint_path: CheckpointArgument,
    out_path: Annotated[Path, typer.Option("--out", help="The file to write, e.g. model.onnx.")],
    format: Annotated[ExportFormat, typer.Option(help="The file format.")] = ExportFormat.onnx,
):
    """Export a language model as a one-step graph (docs/export.md); the path written goes to stdout."""
    from charrnn.api import load
    from charrnn.serving.onnx_export import export

    exported = export(load(checkpoint_path, "cpu"), out_path, format)
    out.print(str(exported.path), markup=False)
    err.print(
        f"wrote {exported.size_bytes / 1024:.1f} KiB: {exported.cell} {exported.num_layers} x {exported.hidden_size}, "
        f"vocabulary of {exported.vocab_size} characters",
        markup=False,
    )
