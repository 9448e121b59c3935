"""`charrnn gradients`: how far back a loss reaches, in the notes' terms."""

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from charrnn.cli.common import ThreadsOption, err, fail, handles_errors, out, print_json, use_threads
from charrnn.cli.options import given, opt, plain
from charrnn.settings.config import ModelConfig, SampleConfig, TrainConfig
from charrnn.settings.options import default_of

M, T = ModelConfig, TrainConfig

BAR_WIDTH = 10
BLOCKS = " ▏▎▍▌▋▊▉█"


def log_bar(value: float | None, low: float, high: float) -> str:
    """A bar whose length is log(value) placed between log(low) and log(high), in eighths of a character."""
    if value is None or not math.isfinite(value) or value <= 0:
        return ""
    span = math.log(high) - math.log(low) or 1.0
    eighths = round(8 * BAR_WIDTH * (math.log(value) - math.log(low)) / span)
    full, part = divmod(max(1, eighths), 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(BAR_WIDTH)


def print_wide(table: Table) -> None:
    """A table fits a terminal, but goes to a pipe or file at its natural width, not folded to 80 columns."""
    if out.is_terminal:
        out.print(table)
        return
    natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
    Console(width=max(natural, out.width), highlight=False).print(table)


@handles_errors
def gradients(
    checkpoints: Annotated[
        Optional[list[Path]],
        typer.Argument(metavar="CHECKPOINT", help="Trained models: run directories (their best.pt) or .pt files."),
    ] = None,
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            help="A fresh model, CELL[:INIT[:SCALE]] with CELL rnn, rnn-relu, lstm or gru, e.g. rnn:identity:1.0. "
            "Repeat to compare."
        ),
    ] = None,
    cell: opt(M, "cell", help="One fresh model's cell.") = None,
    init: opt(M, "init", help="One fresh model's initialisation; identity for the vanilla rnn.") = None,
    init_scale: Annotated[
        Optional[float], typer.Option(help="Multiply W_hh by this after initialisation. \\[default: 1.0]")
    ] = None,
    nonlinearity: opt(M, "nonlinearity", help="One fresh model's nonlinearity (vanilla rnn).") = None,
    hidden_size: opt(M, "hidden_size", help="Fresh models' units per layer.") = None,
    num_layers: opt(M, "num_layers", help="Fresh models' stacked layers.") = None,
    embed_size: opt(M, "embed_size", help="Fresh models' embedding size.") = None,
    data: Annotated[
        Optional[str],
        typer.Option(
            help="Text to take windows from (its validation split). \\[default: alice, or a checkpoint's own]"
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="K: measure dL/dh_(t-k) for k = 0..K.")] = 100,
    windows: Annotated[int, typer.Option(help="Windows of text to average over.")] = 16,
    seed: opt(T, "seed", help="Seed of fresh models' initialisation.") = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the tables.")] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw the gradient norms against k to this PNG (needs matplotlib).")
    ] = None,
    threads: ThreadsOption = None,
):
    """How far back the loss reaches: |dL/dh_(t-k)| against k, and the singular values behind it."""
    use_threads(threads)
    from charrnn.studies.gradients import FreshModel, measure_checkpoint, measure_fresh, parse_spec

    one_model = given({"cell": cell, "init": init, "nonlinearity": nonlinearity})
    # The seed's one rule (0 to 2**64 - 1), from the config that holds it without fields that must be set.
    seed = SampleConfig(seed=plain(seed, default_of(T, "seed"))).seed
    if (checkpoints or model) and (any(one_model.values()) or init_scale is not None):
        fail(
            "--cell, --init, --init-scale and --nonlinearity describe a single fresh model. Use --model SPEC instead", 2
        )
    shape = given({"hidden_size": hidden_size, "num_layers": num_layers, "embed_size": embed_size})
    if checkpoints and not model and shape:
        fail("--hidden-size, --layers and --embed-size shape fresh models; a checkpoint keeps its own", 2)
    if plot is not None:
        from charrnn.studies.plots import image_path, require_matplotlib

        require_matplotlib()
        plot = image_path(plot, "--plot")

    fresh = [parse_spec(spec) for spec in model or []]
    if not checkpoints and not model:
        scale = 1.0 if init_scale is None else init_scale
        relu = "-relu" if one_model.get("nonlinearity") == "relu" else ""
        label = f"{one_model.get('cell', M.cell)}{relu}:{one_model.get('init', M.init)}:{scale:g}"
        fresh = [FreshModel(label, one_model, scale)]
    profiles = [measure_checkpoint(path, data, steps, windows, seed) for path in checkpoints or []]
    if fresh:
        profiles += measure_fresh(fresh, data or "alice", shape, steps, windows, seed)

    if plot is not None:
        from charrnn.studies.plots import gradient_norms

        title = f"{windows} windows of {data or 'the models’ own text'}, validation split"
        gradient_norms({p.label: p.grad_norms for p in profiles}, plot, title)
        err.print(f"plot: {plot}", markup=False)
    if as_json:
        print_json({"steps": steps, "windows": windows, "models": [vars(p) for p in profiles]})
        return

    positive = [n for p in profiles for n in p.grad_norms if math.isfinite(n) and n > 0]
    low, high = (min(positive), max(positive)) if positive else (1.0, 1.0)
    every = max(1, steps // 20)
    table = Table("k", *(p.label for p in profiles), box=box.SIMPLE_HEAD, title="|dL/dh(t-k)|, log-scale bars")
    for k in sorted({*range(0, steps + 1, every), steps}):
        table.add_row(str(k), *(f"{p.grad_norms[k]:8.2e} {log_bar(p.grad_norms[k], low, high)}" for p in profiles))
    print_wide(table)
    sigmas = Table(
        "model",
        "σmax(W_hh) per layer",
        "mean σmax(dh_t/dh_t-1)",
        f"|dL/dh(t-{steps})| / |dL/dh(t)|",
        box=box.SIMPLE_HEAD,
    )
    for p in profiles:
        ratio = p.grad_norms[steps] / p.grad_norms[0] if p.grad_norms[0] > 0 else math.nan
        sigmas.add_row(
            p.label, ", ".join(f"{s:.3f}" for s in p.w_hh_sigma_max), f"{p.jacobian_sigma_max:.3f}", f"{ratio:.2e}"
        )
    print_wide(sigmas)
