"""`charrnn corpus` and `charrnn train`: get a text, train on it."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from charrnn import corpus
from charrnn.cli.common import (
    DataOption,
    DeviceOption,
    ThreadsOption,
    default_note,
    err,
    fail,
    format_seconds,
    handles_errors,
    out,
    progress_bar,
    use_threads,
)
from charrnn.config import DEFAULT_MAX_STEPS, PRESETS, ModelConfig, TrainConfig, apply_preset, parse_duration

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@handles_errors
def corpus_command(
    name: Annotated[Optional[str], typer.Argument(help="A known corpus to fetch; leave out to list them.")] = None,
    mirror: Annotated[
        Optional[Path],
        typer.Option(help=f"Directory to copy from before downloading (else ${corpus.MIRROR_VARIABLE})."),
    ] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the SHA-256 of the text.")] = True,
):
    """List the known corpora, or fetch one (from a mirror, else its public source).

    Corpora go to corpora/ in the checkout charrnn runs from; an installed charrnn keeps them in
    $XDG_DATA_HOME/charrnn/corpora (by default ~/.local/share/charrnn/corpora)."""
    entries = corpus.registry()
    if name is None:
        table = Table("name", "present", "characters", "title", "licence")
        for entry in entries.values():
            table.add_row(
                entry.name,
                "yes" if corpus.is_present(entry) else "no",
                f"{entry.characters:,}",
                entry.title,
                entry.licence,
            )
        out.print(table)
        return
    path, origin = corpus.fetch(name, mirror=mirror, verify=verify, entries=entries)
    err.print(f"{name}: {path} from {origin}" + ("" if verify else " (not verified)"), markup=False)
    out.print(str(path), markup=False)


@handles_errors
def train(
    data: DataOption = None,
    cell: Annotated[Optional[str], typer.Option(help="rnn, lstm or gru." + default_note(ModelConfig, "cell"))] = None,
    layers: Annotated[
        Optional[int], typer.Option(help="Stacked recurrent layers." + default_note(ModelConfig, "num_layers"))
    ] = None,
    hidden_size: Annotated[
        Optional[int], typer.Option(help="Units per layer." + default_note(ModelConfig, "hidden_size"))
    ] = None,
    embed_size: Annotated[
        Optional[int], typer.Option(help="Character embedding size." + default_note(ModelConfig, "embed_size"))
    ] = None,
    dropout: Annotated[
        Optional[float],
        typer.Option(help="Between stacked layers and before the output." + default_note(ModelConfig, "dropout")),
    ] = None,
    embed_dropout: Annotated[
        Optional[float],
        typer.Option(
            help="On the character embeddings, before the first layer." + default_note(ModelConfig, "embed_dropout")
        ),
    ] = None,
    weight_drop: Annotated[
        Optional[float],
        typer.Option(
            help="DropConnect on the recurrent weights W_hh, one mask per batch."
            + default_note(ModelConfig, "weight_drop")
        ),
    ] = None,
    nonlinearity: Annotated[
        Optional[str], typer.Option(help="tanh or relu, vanilla rnn only." + default_note(ModelConfig, "nonlinearity"))
    ] = None,
    init: Annotated[
        Optional[str], typer.Option(help="default, or identity (W_hh = I, zero biases), vanilla rnn only.")
    ] = None,
    seq_len: Annotated[
        Optional[int],
        typer.Option(help="Steps of back-propagation through time." + default_note(TrainConfig, "seq_len")),
    ] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(help="Parallel streams through the text." + default_note(TrainConfig, "batch_size"))
    ] = None,
    lr: Annotated[
        Optional[float], typer.Option(help="Peak AdamW learning rate." + default_note(TrainConfig, "lr"))
    ] = None,
    weight_decay: Annotated[
        Optional[float],
        typer.Option(help="AdamW weight decay on weight matrices." + default_note(TrainConfig, "weight_decay")),
    ] = None,
    warmup_steps: Annotated[
        Optional[int], typer.Option(help="Linear learning-rate warm-up." + default_note(TrainConfig, "warmup_steps"))
    ] = None,
    clip_norm: Annotated[
        Optional[float],
        typer.Option(help="Clip the gradient's total norm; 0 = off." + default_note(TrainConfig, "clip_norm")),
    ] = None,
    clip_value: Annotated[
        Optional[float],
        typer.Option(help="Clip each gradient element; 0 = off." + default_note(TrainConfig, "clip_value")),
    ] = None,
    max_steps: Annotated[
        Optional[int],
        typer.Option(help=f"Stop after this many steps. \\[default: {DEFAULT_MAX_STEPS} when no budget is given]"),
    ] = None,
    max_time: Annotated[Optional[str], typer.Option(help="Stop after this long, e.g. 90s, 10m, 1h.")] = None,
    eval_every: Annotated[
        Optional[int], typer.Option(help="Validate and save every N steps." + default_note(TrainConfig, "eval_every"))
    ] = None,
    seed: Annotated[
        Optional[int],
        typer.Option(help="Seed for initialisation, data order and dropout." + default_note(TrainConfig, "seed")),
    ] = None,
    ema_decay: Annotated[
        Optional[float],
        typer.Option(
            help="Validate and save a moving average of the weights with this decay; 0 = off."
            + default_note(TrainConfig, "ema_decay")
        ),
    ] = None,
    objective: Annotated[
        Optional[str],
        typer.Option(
            help="lm: predict the next character; fill: a bidirectional model predicts hidden characters "
            "(see `charrnn fill`)." + default_note(TrainConfig, "objective")
        ),
    ] = None,
    bidirectional: Annotated[
        Optional[bool],
        typer.Option("--bidirectional", help="Read forwards and backwards; --objective fill only, and implied by it."),
    ] = None,
    mask_rate: Annotated[
        Optional[float],
        typer.Option(
            help="fill: about this share of the characters is hidden." + default_note(TrainConfig, "mask_rate")
        ),
    ] = None,
    mask_span: Annotated[
        Optional[int],
        typer.Option(
            help="fill: hidden spans are 1 to this many characters long." + default_note(TrainConfig, "mask_span")
        ),
    ] = None,
    preset: Annotated[
        Optional[str],
        typer.Option(help=f"Values for the options not given: {', '.join(PRESETS)}. \\[default: default]"),
    ] = None,
    init_from: Annotated[
        Optional[str], typer.Option(help="Fine-tune: start from this checkpoint's weights and vocabulary.")
    ] = None,
    skip_unknown: Annotated[
        Optional[bool],
        typer.Option("--skip-unknown", help="With --init-from: leave out characters the model never saw."),
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Run directory. \\[default: runs/<data>-<cell>]")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.pt.")] = False,
    force: Annotated[bool, typer.Option(help="Start over in a directory that already holds a run.")] = False,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    precision: Annotated[
        Optional[str],
        typer.Option(
            help="fp32, bf16 or fp16 (autocast; fp16 with loss scaling)." + default_note(TrainConfig, "precision")
        ),
    ] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the model.")] = None,
    config_file: Annotated[
        Optional[Path],
        typer.Option("--config", help="TOML file of options, e.g. a run's config.toml; the command line wins."),
    ] = None,
):
    """Train a model; checkpoints and metrics.jsonl go to the run directory."""
    from charrnn.train import Trainer, default_out_dir

    use_threads(threads)

    given = {k: v for k, v in locals().items() if v is not None}
    train_names = (
        "data",
        "seq_len",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup_steps",
        "clip_norm",
        "clip_value",
        "max_steps",
        "eval_every",
        "seed",
        "ema_decay",
        "objective",
        "mask_rate",
        "mask_span",
        "init_from",
        "skip_unknown",
        "device",
        "precision",
        "compile",
    )
    model_names = {
        "cell": "cell",
        "layers": "num_layers",
        "hidden_size": "hidden_size",
        "embed_size": "embed_size",
        "dropout": "dropout",
        "embed_dropout": "embed_dropout",
        "weight_drop": "weight_drop",
        "nonlinearity": "nonlinearity",
        "init": "init",
        "bidirectional": "bidirectional",
    }
    train_options = {k: given[k] for k in train_names if k in given}
    if max_time is not None:
        train_options["max_time"] = parse_duration(max_time)
    model_options = {field: given[k] for k, field in model_names.items() if k in given}
    if config_file is not None:
        from charrnn import configfile

        file_train, file_model = configfile.read(config_file)
        train_options, model_options = {**file_train, **train_options}, {**file_model, **model_options}
    if preset is not None:
        train_options, model_options = apply_preset(preset, train_options, model_options)
    if train_options.get("objective") == "fill":
        model_options.setdefault("bidirectional", True)
    elif not resume and (mask_rate is not None or mask_span is not None):
        fail("--mask-rate and --mask-span apply to --objective fill only. Drop them, or pass --objective fill")
    if out_dir is None:
        if resume:
            fail("--resume needs the run directory. Pass --out DIR")
        out_dir = default_out_dir(train_options.get("data", "alice"), model_options.get("cell", "lstm"))

    stop, received = threading.Event(), []

    def on_signal(signum, frame):
        received.append(signum)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    previous = {s: signal.signal(s, on_signal) for s in SIGNAL_EXIT}
    trainer = Trainer(out_dir, train_options, model_options, resume=resume, force=force, stop=stop)
    # Under torchrun every process runs this command; only rank 0 speaks.
    main = trainer.group.is_main
    try:
        config = trainer.config
        if main:
            err.print(
                f"training a {trainer.model_config.num_layers}-layer {trainer.model_config.hidden_size}-unit "
                f"{'bidirectional ' if trainer.model_config.bidirectional else ''}{trainer.model_config.cell} "
                f"({trainer.model.num_parameters():,} parameters) on {config.data} "
                f"({len(trainer.ids):,} characters, vocabulary {len(trainer.vocab)}) into {out_dir}"
                + (f", resuming at step {trainer.step}" if resume else ""),
                markup=False,
            )
            err.print(placement(trainer), markup=False)
        if trainer.skipped_chars and main:
            err.print(f"left out {trainer.skipped_chars:,} characters the model never saw", markup=False)
        with progress_bar(total=1000, bar_format="{l_bar}{bar}| {postfix}", main=main) as bar:
            bar.n = int(1000 * trainer.budget_fraction())
            for progress in trainer.run():
                bar.update(int(1000 * progress.budget_fraction) - bar.n)
                postfix = {
                    "step": progress.step,
                    "loss": f"{progress.train_loss:.3f}",
                    "chars/s": f"{progress.chars_per_s:,.0f}",
                }
                if progress.val_bpc is not None:
                    bar.write(f"step {progress.step}: val {progress.val_bpc:.3f} bpc", file=sys.stderr)
                bar.set_postfix(postfix)
        outcome = trainer.outcome()
    finally:
        trainer.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not main:
        raise typer.Exit(SIGNAL_EXIT[received[0]] if received else 0)
    best = "none yet" if outcome.best_val_bpc is None else f"{outcome.best_val_bpc:.3f} bpc"
    err.print(
        f"step {outcome.step}, {format_seconds(outcome.elapsed_s)}; best validation {best}; "
        f"checkpoints in {outcome.out_dir}/ (best.pt, last.pt)",
        markup=False,
    )
    if received:
        how = "the same torchrun command with --resume, or " if trainer.group.active else ""
        err.print(f"stopped; resume with: {how}charrnn train --out {outcome.out_dir} --resume", markup=False)
        raise typer.Exit(SIGNAL_EXIT[received[0]])
    if trainer.config.objective == "fill":
        err.print(f"fill gaps with: charrnn fill {outcome.out_dir} 'a text with ____ to fill'", markup=False)
    else:
        err.print(f"sample with: charrnn sample {outcome.out_dir}", markup=False)


def placement(trainer) -> str:
    """Where and how the run trains, e.g. `on cuda:0 (NVIDIA H100), bf16, 2 processes of 16 streams`."""
    from charrnn.device import describe

    config, group = trainer.config, trainer.group
    parts = [f"on {describe(trainer.device)}", config.precision]
    if group.active:
        parts.append(f"{group.world_size} processes of {config.batch_size // group.world_size} streams")
    if config.compile:
        parts.append("compiled")
    return ", ".join(parts)
