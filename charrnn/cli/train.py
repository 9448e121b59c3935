"""`charrnn train`: train a model on a text into a run directory."""

import dataclasses
import functools
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import (
    end_process,
    err,
    fail,
    handles_errors,
    progress_bar,
    threads_option,
    use_threads,
)
from charrnn.cli.options import given, opt
from charrnn.settings.config import HARDWARE, ModelConfig, TrainConfig, format_duration, parse_duration
from charrnn.settings.presets import PRESETS

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}

M, T = ModelConfig, TrainConfig
# The recipe chooses some of train's defaults: --help says which.
train_opt = functools.partial(opt, recipe=True)
RUN_PANEL = "Run directory"
# train's parameters that say where and how to run, not what to train: not configuration fields.
RUN_OPTIONS = ("preset", "config_file", "out_dir", "resume", "force", "dry_run", "threads")


@handles_errors
def train(
    data: train_opt(T, "data") = None,
    cell: train_opt(M, "cell") = None,
    num_layers: train_opt(M, "num_layers") = None,
    hidden_size: train_opt(M, "hidden_size") = None,
    embed_size: train_opt(M, "embed_size") = None,
    nonlinearity: train_opt(M, "nonlinearity") = None,
    init: train_opt(M, "init") = None,
    init_from: train_opt(T, "init_from") = None,
    skip_unknown: train_opt(T, "skip_unknown") = None,
    dropout: train_opt(M, "dropout") = None,
    embed_dropout: train_opt(M, "embed_dropout") = None,
    weight_drop: train_opt(M, "weight_drop") = None,
    weight_decay: train_opt(T, "weight_decay") = None,
    ema_decay: train_opt(T, "ema_decay") = None,
    seq_len: train_opt(T, "seq_len") = None,
    batch_size: train_opt(T, "batch_size") = None,
    lr: train_opt(T, "lr") = None,
    warmup_steps: train_opt(T, "warmup_steps") = None,
    clip_norm: train_opt(T, "clip_norm") = None,
    clip_value: train_opt(T, "clip_value") = None,
    seed: train_opt(T, "seed") = None,
    max_steps: train_opt(T, "max_steps") = None,
    max_time: train_opt(T, "max_time") = None,
    eval_every: train_opt(T, "eval_every") = None,
    val_chars: train_opt(T, "val_chars") = None,
    objective: train_opt(T, "objective") = None,
    tie_embedding: train_opt(M, "tie_embedding") = None,
    bidirectional: train_opt(M, "bidirectional") = None,
    mask_rate: train_opt(T, "mask_rate") = None,
    mask_span: train_opt(T, "mask_span") = None,
    preset: Annotated[
        Optional[str],
        typer.Option(
            help=f"Values for the options not given: {', '.join(PRESETS)}. \\[default: default]",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    config_file: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="TOML file of options, e.g. a run's config.toml; the command line wins.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    out_dir: Annotated[
        # A string, not a Path: Path("") is the current directory, and an empty --out must be refused.
        Optional[str],
        typer.Option(
            "--out",
            metavar="DIR",
            help="Run directory. \\[default: runs/<data>-<cell>, of the resolved model]",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its last.pt.", rich_help_panel=RUN_PANEL)
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="Start over in a directory that already holds a run. The run there is kept until the new one "
            "writes its first checkpoint, then replaced.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Print every resolved option and where its value came from (command line, config file, preset, "
            "recipe, run being resumed, default), then stop without training. Under --max-time the recipe "
            "still times a few steps to choose the model.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = False,
    device: train_opt(T, "device") = None,
    precision: train_opt(T, "precision") = None,
    compile: train_opt(T, "compile") = None,
    threads: Annotated[Optional[int], threads_option(HARDWARE)] = None,
):
    """Train a model; checkpoints and metrics.jsonl go to the run directory."""
    options = given({k: v for k, v in locals().items() if k not in RUN_OPTIONS})
    from charrnn.training.launch import open_training, plan_training

    use_threads(threads)
    if max_time is not None:
        options["max_time"] = parse_duration(max_time)
    if out_dir is None and resume:
        fail("--resume needs the run directory. Pass --out DIR")
    where = {"config_file": config_file, "preset": preset, "resume": resume, "force": force}
    if dry_run:
        print_plan(plan_training(out_dir, options, **where))
        return
    stop, received = threading.Event(), []
    trainer = open_training(out_dir, options, **where, stop=stop)

    def on_signal(signum, frame):
        received.append(signum)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    previous = {s: signal.signal(s, on_signal) for s in SIGNAL_EXIT}
    try:
        if trainer.group.is_main:
            announce(trainer, resume)
        outcome = run_with_progress(trainer)
    finally:
        trainer.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    finish(trainer, outcome, received)


def print_plan(plan) -> None:
    """`--dry-run`: every resolved option and where its value came from, on stdout, one per line."""
    from charrnn.settings.resolve import MODEL_FIELDS, named

    resolved = plan.resolved
    model = dataclasses.asdict(ModelConfig(vocab_size=1, **resolved.model))
    if plan.recipe is not None:
        err.print(f"recipe: {plan.recipe.reason}", markup=False)
    print(f"run directory: {plan.run_dir.path}")
    values = {**{k: v for k, v in model.items() if k in MODEL_FIELDS}, **dataclasses.asdict(resolved.train)}
    for name, value in values.items():
        origin = resolved.origin.get(name, "default")
        print(f"{named(name, value, 'command line')}  ({origin})")


def announce(trainer, resume: bool) -> None:
    """What is about to train, where and on what, on stderr."""
    config, model = trainer.config, trainer.model_config
    if trainer.recipe is not None:
        err.print(f"recipe: {trainer.recipe.reason}. Options you give win over it", markup=False)
    err.print(
        f"training a {model.num_layers}-layer {model.hidden_size}-unit "
        f"{'bidirectional ' if model.bidirectional else ''}{model.cell} "
        f"({trainer.model.num_parameters():,} parameters) on {config.data} "
        f"({len(trainer.ids):,} characters, vocabulary {len(trainer.vocab)}) into {trainer.run_dir.target}"
        + (f", resuming at step {trainer.step}" if resume else "")
        + (", replacing the run there at its first checkpoint" if trainer.run_dir.replacing else ""),
        markup=False,
    )
    err.print(placement(trainer), markup=False)
    if trainer.skipped_chars:
        err.print(f"left out {trainer.skipped_chars:,} characters the model never saw", markup=False)


def run_with_progress(trainer):
    """Train to the end, drawing a progress bar on rank 0; the run's outcome."""
    with progress_bar(total=1000, bar_format="{l_bar}{bar}| {postfix}", main=trainer.group.is_main) as bar:
        bar.n = int(1000 * trainer.budget_fraction())
        for progress in trainer.run():
            bar.update(int(1000 * progress.budget_fraction) - bar.n)
            postfix = {
                "step": progress.step,
                "loss": f"{progress.train_loss:.3f}",
                "chars/s": f"{progress.chars_per_s:,.0f}",
            }
            if progress.val_bpc is not None:
                pace = "" if progress.projected_steps is None else f"; about {progress.projected_steps:,} steps in all"
                bar.write(f"step {progress.step}: val {progress.val_bpc:.3f} bpc{pace}", file=sys.stderr)
            bar.set_postfix(postfix)
    return trainer.outcome()


def finish(trainer, outcome, received: list) -> None:
    """Say what was saved and what to run next, then end the process (under torchrun, every process)."""
    distributed = trainer.group.active
    if not trainer.group.is_main:
        end_process(SIGNAL_EXIT[received[0]] if received else 0, distributed)
    if outcome.kept_previous:
        err.print(
            f"stopped at step {outcome.step}, before the new run's first checkpoint; "
            f"the run in {outcome.out_dir} is kept as it was",
            markup=False,
        )
        end_process(SIGNAL_EXIT[received[0]] if received else 0, distributed)
    best = "none yet" if outcome.best_val_bpc is None else f"{outcome.best_val_bpc:.3f} bpc"
    from charrnn.storage.checkpoint import BEST, LAST

    # A run stopped before its first validation has a last.pt and no best.pt yet.
    saved = [name for name in (BEST, LAST) if (outcome.out_dir / name).is_file()]
    err.print(
        f"step {outcome.step}, {format_duration(outcome.elapsed_s)}; best validation {best}; "
        f"checkpoints in {outcome.out_dir}/ ({', '.join(saved) or 'none yet'})",
        markup=False,
    )
    if received:
        how = "the same torchrun command with --resume, or " if distributed else ""
        err.print(f"stopped; resume with: {how}charrnn train --out {outcome.out_dir} --resume", markup=False)
        end_process(SIGNAL_EXIT[received[0]], distributed)
    model = outcome.out_dir if BEST in saved else outcome.out_dir / LAST
    if trainer.config.objective == "fill":
        err.print(f"fill gaps with: charrnn fill {model} 'a text with ____ to fill'", markup=False)
    else:
        err.print(f"sample with: charrnn sample {model}", markup=False)
    end_process(0, distributed)


def placement(trainer) -> str:
    """Where and how the run trains, e.g. `on cuda:0 (NVIDIA H100), bf16, 2 processes of 16 streams`."""
    from charrnn.model.device import describe

    config, group = trainer.config, trainer.group
    parts = [f"on {describe(trainer.device)}", config.precision]
    if group.active:
        parts.append(f"{group.world_size} processes of {config.batch_size // group.world_size} streams")
    if config.compile:
        parts.append("compiled")
    return ", ".join(parts)
