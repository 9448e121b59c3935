"""`charrnn compare`: the RNN notes' configurations trained side by side on one text."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import ThreadsOption, err, handles_errors, out, print_json, progress_bar, use_threads
from charrnn.cli.options import given, opt, plain
from charrnn.settings.config import ModelConfig, TrainConfig, parse_duration
from charrnn.studies.compare_configs import COMPARE_EVAL_EVERY, COMPARE_MAX_TIME_S, COMPARE_SHAPE, DEFAULT_SET, select

M, T, SHAPE = ModelConfig, TrainConfig, COMPARE_SHAPE

COMPARE_NAMES = ", ".join(entry.name for entry in DEFAULT_SET)


@handles_errors
def compare(
    data: Annotated[str, typer.Option(help="A known corpus name or a UTF-8 text file.")] = "alice",
    out_root: Annotated[Path, typer.Option("--out", help="One run directory per configuration goes under it.")] = Path(
        "runs/compare"
    ),
    only: Annotated[
        Optional[str], typer.Option(help=f"Comma-separated subset of: {COMPARE_NAMES}. \\[default: all]")
    ] = None,
    max_time: Annotated[
        Optional[str], typer.Option(help="Training time for each configuration, e.g. 90s, 5m. \\[default: 2m]")
    ] = None,
    max_steps: Annotated[
        Optional[int], typer.Option(help="Training steps for each configuration (alone, or with --max-time).")
    ] = None,
    num_layers: opt(M, "num_layers", help="Stacked layers, shared by all.", default=SHAPE["num_layers"]) = None,
    hidden_size: opt(M, "hidden_size", help="Units per layer, shared by all.", default=SHAPE["hidden_size"]) = None,
    embed_size: opt(M, "embed_size", help="Embedding size, shared by all.", default=SHAPE["embed_size"]) = None,
    seq_len: opt(T, "seq_len") = None,
    batch_size: opt(T, "batch_size") = None,
    eval_every: opt(
        T, "eval_every", help="Validate every N steps (the points of the curves).", default=COMPARE_EVAL_EVERY
    ) = None,
    seed: opt(T, "seed", help="Seed shared by all.") = None,
    force: Annotated[bool, typer.Option(help="Train again where --out already holds a configuration's run.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the Markdown table.")
    ] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw validation bpc against time to this PNG (needs matplotlib).")
    ] = None,
    threads: ThreadsOption = None,
):
    """Train several configurations on the same text for the same budget; print a Markdown table of the results."""
    use_threads(threads)
    from charrnn.studies import compare as comparing

    if plot is not None:
        from charrnn.studies.plots import image_path, require_matplotlib

        require_matplotlib()
        plot = image_path(plot, "--plot")
    entries = select(only)
    train_options = {"data": data, "eval_every": plain(eval_every, COMPARE_EVAL_EVERY)}
    if max_time is not None or max_steps is None:
        train_options["max_time"] = COMPARE_MAX_TIME_S if max_time is None else parse_duration(max_time)
    train_options |= given({"max_steps": max_steps, "seq_len": seq_len, "batch_size": batch_size, "seed": seed})
    shape = SHAPE | given({"num_layers": num_layers, "hidden_size": hidden_size, "embed_size": embed_size})
    layers, hidden_size = shape["num_layers"], shape["hidden_size"]
    comparison = comparing.Comparison(entries, out_root, train_options, shape, force=force)
    err.print(
        f"comparing {len(entries)} configurations on {data}, {layers} x {hidden_size} units each, into {out_root}/",
        markup=False,
    )
    bar, current = None, None
    try:
        for entry, progress in comparison.run():
            if entry is not current:
                if bar is not None:
                    bar.close()
                current, bar = entry, progress_bar(total=1000, desc=entry.name, bar_format="{l_bar}{bar}| {postfix}")
            bar.update(int(1000 * progress.budget_fraction) - bar.n)
            bar.set_postfix({"step": progress.step, "loss": f"{progress.train_loss:.3f}"})
            if progress.budget_fraction >= 1.0:
                bar.close()
                err.print(f"{entry.name}: {progress.step} steps, val {progress.val_bpc:.3f} bpc", markup=False)
    finally:
        if bar is not None:
            bar.close()
    for row in comparison.rows:
        if row.error:
            err.print(f"{row.name} stopped after {row.steps} steps: {row.error}", markup=False)
    if plot is not None:
        from charrnn.studies.plots import validation_curves

        curves = {row.name: comparing.validation_curve(Path(row.run_dir)) for row in comparison.rows}
        validation_curves(curves, plot, f"{data}: {layers} x {hidden_size} units, same time budget each")
        err.print(f"plot: {plot}", markup=False)
    if as_json:
        report = {"data": data, "shape": shape, "train": train_options, "rows": [vars(r) for r in comparison.rows]}
        print_json(report)
    else:
        out.print(comparing.markdown_table(comparison.rows), markup=False)
