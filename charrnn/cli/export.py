"""`charrnn export`: a model as a file that runs without PyTorch, or as a web page that runs in a browser."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli.common import CheckpointArgument, err, handles_errors, out


class ExportFormat(StrEnum):
    onnx = "onnx"
    web = "web"


@handles_errors
def export_command(
    checkpoint_path: CheckpointArgument,
    out_path: Annotated[
        Path, typer.Option("--out", help="The file to write for onnx (model.onnx), the folder for web (alice-web).")
    ],
    format: Annotated[
        ExportFormat, typer.Option(help="onnx: a one-step ONNX graph; web: a page that generates in a browser.")
    ] = ExportFormat.onnx,
):
    """Export a language model as a one-step graph or a web page (docs/export.md); the path written goes to stdout."""
    from charrnn.api import load
    from charrnn.serving import onnx_export, web_export

    writer = {ExportFormat.onnx: onnx_export.export, ExportFormat.web: web_export.export}[format]
    exported = writer(load(checkpoint_path, "cpu"), out_path)
    out.print(str(exported.path), markup=False)
    err.print(
        f"wrote {exported.size_bytes / 1024:.1f} KiB: {exported.cell} {exported.num_layers} x {exported.hidden_size}, "
        f"vocabulary of {exported.vocab_size} characters",
        markup=False,
    )
