"""The `charrnn` command: the only module that parses options, prints, and turns errors into exit codes."""

from __future__ import annotations

import functools
import itertools
import json
import math
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from tqdm import tqdm

from charrnn import __version__, corpus
from charrnn import dynamic as dynamic_eval
from charrnn.config import (
    DEFAULT_MAX_STEPS,
    PRESETS,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    apply_preset,
    parse_duration,
)
from charrnn.data import splits
from charrnn.errors import CharRNNError

app = typer.Typer(
    help="Train character-level RNN, LSTM and GRU language models on any text, measure them, and generate text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
SAMPLE_SEPARATOR = "\n\n---\n\n"
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def fail(message: str, code: int = 1):
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def handles_errors(command):
    """A user's mistake ends as `error: ...` and exit 1, Ctrl-C as exit 130; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CharRNNError as e:
            fail(str(e))
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def version_callback(value: bool):
    if value:
        out.print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = None,
):
    """charrnn: character-level recurrent language models."""


def default_note(owner, name: str) -> str:
    """A default for --help, read from the dataclass or module that holds it: the options themselves default
    to None so that a resume, a config file and a preset can tell which ones the user gave. The bracket is
    escaped from rich's markup."""
    return f" \\[default: {getattr(owner, name)}]"


def progress_bar(main: bool = True, **kwargs) -> tqdm:
    return tqdm(file=sys.stderr, disable=not (main and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


ThreadsOption = Annotated[
    Optional[int],
    typer.Option(min=1, help="CPU threads for PyTorch. \\[default: all cores, or $OMP_NUM_THREADS when set]"),
]


DeviceOption = Annotated[
    Optional[str],
    typer.Option(help="auto, cpu, cuda or mps; auto picks a CUDA GPU, else MPS, else the CPU. \\[default: auto]"),
]


def use_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@app.command("corpus")
@handles_errors
def corpus_command(
    name: Annotated[Optional[str], typer.Argument(help="A known corpus to fetch; leave out to list them.")] = None,
    mirror: Annotated[
        Optional[Path],
        typer.Option(help=f"Directory to copy from before downloading (else ${corpus.MIRROR_VARIABLE})."),
    ] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the SHA-256 of the text.")] = True,
):
    """List the known corpora, or fetch one into corpora/ (from a mirror, else its public source)."""
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


DataOption = Annotated[
    Optional[str],
    typer.Option(help="A known corpus name (see `charrnn corpus`) or a UTF-8 text file. \\[default: alice]"),
]


@app.command()
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


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def write_streaming(prime: str, stream) -> None:
    """The prime, then one sample's characters to stdout as each is generated."""
    sys.stdout.write(prime)
    for chars in stream:
        sys.stdout.write(chars[0])
        sys.stdout.flush()


def ensure_replaceable_output() -> None:
    """A terminal that cannot show a character gets a '?' instead of a crash."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")


@app.command()
@handles_errors
def sample(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="A run directory (its best.pt) or a .pt file.")
    ],
    prime: Annotated[Optional[str], typer.Option(help="Text to start from; printed first.")] = None,
    prime_file: Annotated[Optional[Path], typer.Option(help="Read the prime from a UTF-8 file.")] = None,
    length: Annotated[int, typer.Option(help="New characters per sample (the prime not counted).")] = 500,
    temperature: Annotated[float, typer.Option(help="Below 1 is safer, above 1 wilder; 0 = greedy.")] = 0.8,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only from the k likeliest characters.")] = None,
    top_p: Annotated[
        Optional[float], typer.Option(help="Sample only from the likeliest characters that cover probability p.")
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option(help="Same seed, same text. \\[default: random, printed to stderr]")
    ] = None,
    num_samples: Annotated[int, typer.Option(help="Independent samples, separated by a line '---'.")] = 1,
    threads: ThreadsOption = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, mps or auto (the best available).")] = "cpu",
    interactive: Annotated[
        bool, typer.Option(help="Read primes from stdin, print each continuation; ':t 0.5' sets the temperature.")
    ] = False,
):
    """Generate text; it streams to stdout as it is generated."""
    use_threads(threads)
    from charrnn.api import load
    from charrnn.sample import PRIME_HINT, generate

    config = SampleConfig(
        length=length, temperature=temperature, top_k=top_k, top_p=top_p, num_samples=num_samples, seed=seed
    )
    if prime is not None and prime_file is not None:
        fail("pass --prime or --prime-file, not both. Drop one of them", 2)
    if prime_file is not None:
        if not prime_file.is_file():
            fail(f"no such file: {prime_file}. Pass the path of a UTF-8 text file to --prime-file")
        prime = corpus.decode_text(prime_file.read_bytes(), str(prime_file))
    prime = prime or ""
    loaded = load(checkpoint_path, device)
    loaded.require("lm")
    loaded.vocab.encode(prime, fix=PRIME_HINT, what="the prime")
    if config.seed is None:
        config = SampleConfig(**{**config.__dict__, "seed": secrets.randbelow(2**31)})
        err.print(f"seed: {config.seed}")
    ensure_replaceable_output()
    if interactive:
        return interactive_session(loaded, config)
    stream = generate(loaded.model, loaded.vocab, config, prime, config.seed)
    if num_samples == 1:
        write_streaming(prime, stream)
    else:
        texts = [prime] * num_samples
        for chars in stream:
            texts = [t + c for t, c in zip(texts, chars)]
        sys.stdout.write(SAMPLE_SEPARATOR.join(texts))
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()


@app.command("eval")
@handles_errors
def eval_command(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="A run directory (its best.pt) or a .pt file.")
    ],
    split: Annotated[str, typer.Option(help="train, val or test split of the training data.")] = "test",
    data: Annotated[Optional[str], typer.Option(help="Score this whole text instead of a split.")] = None,
    skip_unknown: Annotated[
        bool, typer.Option(help="Leave out characters the model never saw (and count them).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: loss, bpc, perplexity, chars.")
    ] = False,
    compare: Annotated[
        Optional[Path],
        typer.Option(
            metavar="CHECKPOINT",
            help="Fill model only: score the same hidden characters with this language model, from the left.",
        ),
    ] = None,
    dynamic: Annotated[
        bool,
        typer.Option(
            help="Dynamic evaluation: a copy of the model learns from each segment of the text right after "
            "scoring it, so it adapts to the passage it reads."
        ),
    ] = False,
    dynamic_lr: Annotated[
        Optional[float], typer.Option(help="With --dynamic: the size of each step." + default_note(dynamic_eval, "LR"))
    ] = None,
    dynamic_decay: Annotated[
        Optional[float],
        typer.Option(
            help="With --dynamic: the share of the way back to the trained weights after each step."
            + default_note(dynamic_eval, "DECAY")
        ),
    ] = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
):
    """Score text: loss in nats per character, bits per character, perplexity.

    A fill model is scored on characters hidden as in training (the same ones every time): accuracy
    and bits per character."""
    use_threads(threads)
    from charrnn import corpus_ids
    from charrnn.api import load
    from charrnn.evaluate import evaluate, scored_start

    if split not in ("train", "val", "test"):
        fail(f"unknown split {split!r}. Use train, val or test", 2)
    if not dynamic and (dynamic_lr is not None or dynamic_decay is not None):
        fail("--dynamic-lr and --dynamic-decay set dynamic evaluation. Add --dynamic", 2)
    if dynamic and compare is not None:
        fail("--compare scores a fill model, which --dynamic does not apply to. Drop one of them", 2)
    settings = {"lr": dynamic_eval.LR if dynamic_lr is None else dynamic_lr}
    settings["decay"] = dynamic_eval.DECAY if dynamic_decay is None else dynamic_decay
    dynamic_eval.check_settings(**settings)
    loaded = load(checkpoint_path, device or "auto")
    if dynamic:
        loaded.require("lm")
    if data is None:
        source = loaded.content["train_config"]["data"]
        encoded = corpus_ids.load(source)
        if encoded.sha256 != loaded.content["data_sha256"]:
            fail(
                f"the text of {source} changed since the model was trained. "
                "Restore it, or pass --data to score another text"
            )
        ids, skipped = encoded.under(loaded.vocab)
        part = splits(len(ids))[split]
        start, end, what = part.start, part.end, f"{split} split of {source}"
    else:
        ids, skipped = corpus_ids.load(data).under(loaded.vocab, skip_unknown=skip_unknown)
        start, end, what = 1, len(ids), data
    if loaded.objective == "fill" or compare is not None:
        counts = {"skipped": skipped} if skip_unknown else {}
        eval_fill(loaded, ids, start, end, split if data is None else "test", what, compare, counts, as_json, device)
        return
    report = {}
    if dynamic:
        with progress_bar(total=end - scored_start(start, end), unit="char", desc="dynamic evaluation") as bar:
            result = dynamic_eval.dynamic_evaluate(loaded.model, ids, start, end, **settings, on_progress=bar.update)
        report["dynamic"] = settings
        what += " (dynamic evaluation)"
    else:
        result = evaluate(loaded.model, ids, start, end)
    report = result.as_dict() | report | ({"skipped": skipped} if skip_unknown else {})
    if as_json:
        out.print(json.dumps(report), markup=False)
        return
    out.print(
        f"{what}: {result.loss:.4f} nats/char, {result.bpc:.4f} bits/char, perplexity {result.perplexity:.3f}, "
        f"{result.chars:,} characters scored" + (f", {skipped:,} unknown skipped" if skip_unknown else ""),
        markup=False,
    )
    if not math.isfinite(result.loss):
        if dynamic:
            fail("the score is not finite: the adapted weights diverged. Pass a smaller --dynamic-lr")
        fail("the score is not finite. The checkpoint may hold non-finite weights; use an earlier one")


COMPARE_NAMES = "rnn-tanh, rnn-identity, rnn-relu-identity, gru, lstm, lstm-no-dropout, rnn-no-clip"


@app.command()
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
    layers: Annotated[int, typer.Option(help="Stacked layers, shared by all.")] = 1,
    hidden_size: Annotated[int, typer.Option(help="Units per layer, shared by all.")] = 256,
    embed_size: Annotated[int, typer.Option(help="Character embedding size, shared by all.")] = 64,
    seq_len: Annotated[
        Optional[int], typer.Option(help="Steps of back-propagation through time. \\[default: 128]")
    ] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(help="Parallel streams through the text. \\[default: 32]")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="Validate every N steps (the points of the curves).")] = 50,
    seed: Annotated[Optional[int], typer.Option(help="Seed shared by all. \\[default: 1337]")] = None,
    force: Annotated[bool, typer.Option(help="Train again where --out already holds a configuration's run.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the Markdown table.")
    ] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw validation bpc against time to this PNG (needs matplotlib).")
    ] = None,
):
    """Train several configurations on the same text for the same budget; print a Markdown table of the results."""
    from charrnn import compare as comparing

    if plot is not None:
        from charrnn.plots import require_matplotlib

        require_matplotlib()
    entries = comparing.select(only)
    train_options = {"data": data, "eval_every": eval_every}
    if max_time is not None or max_steps is None:
        train_options["max_time"] = comparing.DEFAULT_MAX_TIME_S if max_time is None else parse_duration(max_time)
    given = {"max_steps": max_steps, "seq_len": seq_len, "batch_size": batch_size, "seed": seed}
    train_options.update({k: v for k, v in given.items() if v is not None})
    shape = {**comparing.SHARED_SHAPE, "num_layers": layers, "hidden_size": hidden_size, "embed_size": embed_size}
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
        from charrnn.plots import validation_curves

        curves = {row.name: comparing.validation_curve(Path(row.run_dir)) for row in comparison.rows}
        validation_curves(curves, plot, f"{data}: {layers} x {hidden_size} units, same time budget each")
        err.print(f"plot: {plot}", markup=False)
    if as_json:
        report = {"data": data, "shape": shape, "train": train_options, "rows": [vars(r) for r in comparison.rows]}
        out.print(json.dumps(report), markup=False)
    else:
        out.print(comparing.markdown_table(comparison.rows), markup=False)


@app.command()
@handles_errors
def bench(
    cell: Annotated[str, typer.Option(help="rnn, lstm or gru.")] = ModelConfig.cell,
    layers: Annotated[int, typer.Option(min=1, help="Stacked recurrent layers.")] = ModelConfig.num_layers,
    hidden_size: Annotated[int, typer.Option(min=1, help="Units per layer.")] = ModelConfig.hidden_size,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Parallel streams in a training step.")
    ] = TrainConfig.batch_size,
    seq_len: Annotated[int, typer.Option(min=1, help="Steps of back-propagation through time.")] = TrainConfig.seq_len,
    num_samples: Annotated[int, typer.Option(min=1, help="Samples drawn side by side in the batched measure.")] = 32,
    min_time: Annotated[float, typer.Option(min=0, help="Seconds to repeat each measurement for.")] = 5.0,
    data: Annotated[
        Optional[str],
        typer.Option(help="A corpus name or text file: time encoding it, and train on it instead of synthetic text."),
    ] = None,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
):
    """Measure training, evaluation and sampling speed against what this machine can do."""
    from charrnn.bench import BenchShape, run
    from charrnn.config import ModelConfig

    use_threads(threads)
    ModelConfig(vocab_size=1, cell=cell, num_layers=layers, hidden_size=hidden_size)
    shape = BenchShape(
        cell=cell,
        num_layers=layers,
        hidden_size=hidden_size,
        batch_size=batch_size,
        seq_len=seq_len,
        num_samples=num_samples,
    )
    report = run(shape, min_time, data=data, on_stage=lambda name: err.print(f"measuring {name}", markup=False))
    if as_json:
        out.print(json.dumps(report.as_dict()), markup=False)
        return
    ratios, loop = report.ratios(), f"nn.{cell.upper()}Cell loop"
    table = Table("measure", "chars/s", "GFLOP/s", "compared with", "ratio")
    if report.corpus is not None:
        table.add_row(
            f"encoding {Path(report.corpus.path).name} ({report.corpus.megabytes:,.1f} MB)",
            f"{report.corpus.chars * report.corpus.encode_mb_per_s / report.corpus.megabytes:,.0f}",
            "",
            f"{report.corpus.encode_mb_per_s:.1f} MB/s of the file",
            "",
        )
    table.add_row("fp32 matrix-multiply peak", "", f"{report.matmul_gflops:.1f}", "", "")
    table.add_row(
        f"bare fused {cell} forward+backward",
        f"{report.cell_chars_per_s:,.0f}",
        f"{report.cell_gflops:.1f}",
        "matmul peak (MFU)",
        f"{ratios['cell_mfu']:.2f}",
    )
    table.add_row(
        "training step",
        f"{report.train_chars_per_s:,.0f}",
        f"{report.train_gflops:.1f}",
        "bare fused cell",
        f"{ratios['train_vs_cell']:.2f}",
    )
    table.add_row("", "", "", "matmul peak (MFU)", f"{ratios['train_mfu']:.2f}")
    table.add_row(
        "evaluation", f"{report.eval_chars_per_s:,.0f}", "", "training step", f"{ratios['eval_vs_train']:.1f}"
    )
    table.add_row(
        "sampling, batch 1", f"{report.sample_chars_per_s:,.0f}", "", loop, f"{ratios['sample_vs_cell_loop']:.2f}"
    )
    table.add_row(
        "",
        "",
        "",
        f"weight-streaming limit {report.stream_limit_chars_per_s:,.0f} ({report.matvec_gb_per_s:.1f} GB/s)",
        f"{ratios['sample_vs_stream_limit']:.2f}",
    )
    table.add_row(
        f"sampling, batch {num_samples}",
        f"{report.batch_sample_chars_per_s:,.0f}",
        "",
        f"{loop} at batch {num_samples}",
        f"{ratios['batch_sample_vs_cell_loop']:.2f}",
    )
    table.add_row("", "", "", "sampling, batch 1", f"{ratios['batch_sample_vs_single']:.1f}")
    out.print(
        f"{layers}-layer {hidden_size}-unit {cell}, batch {batch_size}, sequence {seq_len}, "
        f"vocabulary {report.shape.vocab_size}, {report.threads} threads",
        markup=False,
    )
    out.print(table)
    out.print(f"peak resident memory {report.peak_rss_mb:,.0f} MB", markup=False)


INTERACTIVE_HELP = "type a prime and Enter; ':t 0.5' sets the temperature, ':n 300' the length; Ctrl-D ends"


def interactive_session(loaded, config: SampleConfig) -> None:
    """Prime after prime from stdin until end of input; each continuation streams to stdout."""
    from charrnn.sample import PRIME_HINT, generate

    err.print(INTERACTIVE_HELP, markup=False)
    for count in itertools.count():
        err.print(f"[t={config.temperature:g} n={config.length}]> ", end="", markup=False)
        line = sys.stdin.readline()
        if not line:
            err.print("")
            return
        prime = line.rstrip("\n")
        command = prime.split()
        if command and command[0] in (":t", ":n"):
            try:
                field = "temperature" if command[0] == ":t" else "length"
                value = float(command[1]) if field == "temperature" else int(command[1])
                config = SampleConfig(**{**config.__dict__, field: value})
            except (IndexError, ValueError):
                err.print("error: a command needs a number. Write e.g. ':t 0.5' or ':n 300'", markup=False)
            except CharRNNError as e:
                err.print(f"error: {e}", markup=False)
            continue
        try:
            loaded.vocab.encode(prime, fix=PRIME_HINT, what="the prime")
            # Seeds run on from --seed, so a session with the same inputs gives the same text.
            stream = generate(loaded.model, loaded.vocab, config, prime, config.seed + count)
            write_streaming(prime, stream)
        except CharRNNError as e:
            err.print(f"error: {e}", markup=False)
            continue
        except KeyboardInterrupt:
            pass  # Ctrl-C ends this continuation, not the session
        sys.stdout.write("\n")
        sys.stdout.flush()


@app.command()
@handles_errors
def info(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="A run directory (its best.pt) or a .pt file.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the summary.")] = False,
):
    """Describe a checkpoint: model, size, vocabulary, training options, progress, validation scores."""
    from charrnn import checkpoint

    path = checkpoint.resolve(checkpoint_path)
    content = checkpoint.load(path)
    model, train_options = content["model_config"], content["train_config"]

    def bpc(key: str) -> float | None:
        loss = content.get(key)
        return None if loss is None else loss / math.log(2)

    report = {
        "checkpoint": str(path),
        "charrnn_version": content.get("charrnn_version"),
        "model": model,
        "parameters": sum(t.numel() for t in content["model"].values()),
        "vocab_size": len(content["vocab"]),
        "vocab": "".join(content["vocab"]),
        "train": train_options,
        "step": content["step"],
        "elapsed_s": content["elapsed_s"],
        "best_val_bpc": bpc("best_val_loss"),
        "last_val_bpc": bpc("last_val_loss"),
        "resumable": "optimizer" in content,
    }
    if as_json:
        out.print(json.dumps(report), markup=False)
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
        ("trained", f"{report['step']:,} steps in {format_seconds(report['elapsed_s'])}"),
        ("validation", f"best {score(report['best_val_bpc'])}, last {score(report['last_val_bpc'])}"),
        ("resumable", "yes (last.pt)" if report["resumable"] else "no (weights only)"),
        ("options", ", ".join(f"{k}={v}" for k, v in train_options.items() if v is not None)),
    ]
    for name, value in rows:
        out.print(f"{name:<11} {value}", markup=False)


@app.command()
@handles_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory with a metrics.jsonl.")],
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="PNG file to write. \\[default: RUN_DIR/training.png]")
    ] = None,
):
    """Chart a run: training and validation bpc against steps and time, learning rate, gradient norm."""
    from charrnn.plots import require_matplotlib, training_run
    from charrnn.rundir import read_metrics

    require_matplotlib("charrnn plot")
    metrics = read_metrics(run_dir)
    if not metrics:
        fail(f"{run_dir} has no steps recorded yet. Plot it once training has run a step")
    out_path = out_path or Path(run_dir) / "training.png"
    training_run(metrics, out_path, f"{run_dir}: {metrics[-1]['step']:,} steps")
    err.print(f"plot: {out_path}", markup=False)
    out.print(str(out_path), markup=False)


def eval_fill(loaded, ids, start, end, split_name, what, compare, counts, as_json, device) -> None:
    """`charrnn eval` of a fill model: its score on hidden characters, and a language model's on the same ones."""
    from charrnn.api import load
    from charrnn.fill import eval_mask, score_left_to_right, score_masked

    if loaded.objective != "fill":
        fail(
            "--compare scores a fill model's hidden characters with a language model, but CHECKPOINT is a "
            "language model. Pass the fill model first: charrnn eval FILL_MODEL --compare LANGUAGE_MODEL"
        )
    train = loaded.content["train_config"]
    start = max(start, 1)  # a language model has nothing to predict the very first character from
    hidden = eval_mask(end - start, train["mask_rate"], train["mask_span"], split_name)
    result = score_masked(loaded.model, ids[start:end], hidden, train["seq_len"])
    scores = {"fill model": result}
    if compare is not None:
        language_model = load(compare, device or "auto")
        if language_model.objective != "lm":
            fail(f"{compare} is not a language model. Pass to --compare a checkpoint trained with --objective lm")
        lm_ids = language_model.vocab.encode(
            loaded.vocab.decode(ids.tolist()), fix="Pass to --compare a model trained on the same text"
        )
        scores[f"left-to-right language model {compare}"] = score_left_to_right(
            language_model.model, lm_ids, start, hidden
        )
    if as_json:
        report = {"accuracy": result.accuracy, "loss": result.loss, "bpc": result.bpc, "chars": result.chars}
        if compare is not None:
            compared = scores.popitem()[1]
            report["compare"] = {"accuracy": compared.accuracy, "loss": compared.loss, "bpc": compared.bpc}
        out.print(json.dumps(report | counts), markup=False)
        return
    out.print(
        f"{what}: {result.chars:,} hidden characters (spans of 1 to {train['mask_span']}, "
        f"about {train['mask_rate']:.0%} of the text)" + (f", {counts['skipped']:,} unknown skipped" if counts else ""),
        markup=False,
    )
    for name, score in scores.items():
        out.print(f"  {name}: accuracy {score.accuracy:.3f}, {score.bpc:.4f} bits/char", markup=False)


@app.command("fill")
@handles_errors
def fill_command(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="A fill model's run directory (its best.pt) or .pt file.")
    ],
    text: Annotated[
        Optional[str],
        typer.Argument(metavar="TEXT", help="The text, each missing character written as the mask character."),
    ] = None,
    file: Annotated[Optional[Path], typer.Option(help="Read the text from a UTF-8 file.")] = None,
    mask_char: Annotated[str, typer.Option(help="The character that marks a missing one.")] = "_",
    temperature: Annotated[
        float, typer.Option(help="0 = the likeliest characters; above 0, sample (1 = the model's own odds).")
    ] = 0.0,
    seed: Annotated[
        Optional[int], typer.Option(help="Seed for sampling. \\[default: random, printed to stderr]")
    ] = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
):
    """Fill the gaps in a text with a model trained with --objective fill; the filled text goes to stdout.

    Each run of the mask character is one gap. Gaps the model is unsure of are named on stderr."""
    use_threads(threads)
    from charrnn.api import load

    if (text is None) == (file is None):
        fail("pass the text to fill, or --file PATH, but not both", 2)
    if file is not None:
        if not file.is_file():
            fail(f"no such file: {file}. Pass the path of a UTF-8 text file to --file")
        text = corpus.decode_text(file.read_bytes(), str(file))
    loaded = load(checkpoint_path, device or "auto")
    loaded.require("fill")
    if temperature > 0 and seed is None:
        seed = secrets.randbelow(2**31)
        err.print(f"seed: {seed}")
    filled = loaded.fill(text, mask_char, temperature, seed or 0)
    ensure_replaceable_output()
    sys.stdout.write(filled.text)
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()
    trained = loaded.content["train_config"]["mask_span"]
    for gap in filled.gaps:
        if gap.low_confidence:
            longer = f", longer than the gaps of up to {trained} it trained on" if len(gap.text) > trained else ""
            err.print(
                f"low confidence in the gap at character {gap.start + 1} ({len(gap.text)} long{longer}): "
                f"{gap.text!r}, mean probability {gap.mean_probability:.2f} of the chosen characters",
                markup=False,
            )


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


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@app.command()
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
    cell: Annotated[
        Optional[str], typer.Option(help="One fresh model's cell: rnn, lstm or gru. \\[default: lstm]")
    ] = None,
    init: Annotated[
        Optional[str], typer.Option(help="default, or identity (vanilla rnn). \\[default: default]")
    ] = None,
    init_scale: Annotated[
        Optional[float], typer.Option(help="Multiply W_hh by this after initialisation. \\[default: 1.0]")
    ] = None,
    nonlinearity: Annotated[Optional[str], typer.Option(help="tanh or relu (vanilla rnn). \\[default: tanh]")] = None,
    hidden_size: Annotated[Optional[int], typer.Option(help="Fresh models' units per layer. \\[default: 512]")] = None,
    layers: Annotated[Optional[int], typer.Option(help="Fresh models' stacked layers. \\[default: 2]")] = None,
    embed_size: Annotated[Optional[int], typer.Option(help="Fresh models' embedding size. \\[default: 64]")] = None,
    data: Annotated[
        Optional[str],
        typer.Option(
            help="Text to take windows from (its validation split). \\[default: alice, or a checkpoint's own]"
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="K: measure dL/dh_(t-k) for k = 0..K.")] = 100,
    windows: Annotated[int, typer.Option(help="Windows of text to average over.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of fresh models' initialisation.")] = 1337,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the tables.")] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw the gradient norms against k to this PNG (needs matplotlib).")
    ] = None,
):
    """How far back the loss reaches: |dL/dh_(t-k)| against k, and the singular values behind it."""
    from charrnn.gradients import FreshModel, measure_checkpoint, measure_fresh, parse_spec

    one_model = {"cell": cell, "init": init, "nonlinearity": nonlinearity}
    if (checkpoints or model) and (any(one_model.values()) or init_scale is not None):
        fail(
            "--cell, --init, --init-scale and --nonlinearity describe a single fresh model. Use --model SPEC instead", 2
        )
    shape = {"hidden_size": hidden_size, "num_layers": layers, "embed_size": embed_size}
    shape = {k: v for k, v in shape.items() if v is not None}
    if checkpoints and not model and shape:
        fail("--hidden-size, --layers and --embed-size shape fresh models; a checkpoint keeps its own", 2)
    if plot is not None:
        from charrnn.plots import require_matplotlib

        require_matplotlib()

    fresh = [parse_spec(spec) for spec in model or []]
    if not checkpoints and not model:
        scale = 1.0 if init_scale is None else init_scale
        label = f"{cell or 'lstm'}{'-relu' if nonlinearity == 'relu' else ''}:{init or 'default'}:{scale:g}"
        fresh = [FreshModel(label, {k: v for k, v in one_model.items() if v is not None}, scale)]
    profiles = [measure_checkpoint(path, data, steps, windows, seed) for path in checkpoints or []]
    if fresh:
        profiles += measure_fresh(fresh, data or "alice", shape, steps, windows, seed)

    if plot is not None:
        from charrnn.plots import gradient_norms

        title = f"{windows} windows of {data or 'the models’ own text'}, validation split"
        gradient_norms({p.label: p.grad_norms for p in profiles}, plot, title)
        err.print(f"plot: {plot}", markup=False)
    if as_json:
        report = {
            "steps": steps,
            "windows": windows,
            "models": [
                {
                    **vars(p),
                    "grad_norms": [finite_or_none(n) for n in p.grad_norms],
                    "jacobian_sigma_max": finite_or_none(p.jacobian_sigma_max),
                }
                for p in profiles
            ],
        }
        out.print(json.dumps(report), markup=False)
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


def main() -> None:
    app(prog_name="charrnn")
