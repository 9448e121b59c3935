"""`charrnn plot`: how a run went, as a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import err, fail, handles_errors, out


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
    from charrnn.studies.plots import image_path, require_matplotlib, training_run
    from charrnn.training.run_dir import read_metrics

    require_matplotlib("charrnn plot")
    out_path = image_path(out_path or Path(run_dir) / "training.png", "--out")
    metrics = read_metrics(run_dir)
    if not metrics:
        fail(f"{run_dir} has no steps recorded yet. Plot it once training has run a step")
    training_run(metrics, out_path, f"{run_dir}: {metrics[-1]['step']:,} steps", "--out")
    err.print(f"plot: {out_path}", markup=False)
    out.print(str(out_path), markup=False)
