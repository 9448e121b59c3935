"""The `charrnn` command: the only module that parses options, prints, and turns errors into exit codes."""

from __future__ import annotations

import functools
import json
import math
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from charrnn import __version__, corpus
from charrnn.config import SampleConfig, parse_duration
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


def progress_bar(**kwargs) -> tqdm:
    return tqdm(file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True, **kwargs)


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
    typer.Option(help="A known corpus name (see `charrnn corpus`) or a UTF-8 text file. [default: alice]"),
]


@app.command()
@handles_errors
def train(
    data: DataOption = None,
    cell: Annotated[Optional[str], typer.Option(help="rnn, lstm or gru. [default: lstm]")] = None,
    layers: Annotated[Optional[int], typer.Option(help="Stacked recurrent layers. [default: 2]")] = None,
    hidden_size: Annotated[Optional[int], typer.Option(help="Units per layer. [default: 512]")] = None,
    embed_size: Annotated[Optional[int], typer.Option(help="Character embedding size. [default: 64]")] = None,
    dropout: Annotated[
        Optional[float], typer.Option(help="Between stacked layers and before the output. [default: 0.25]")
    ] = None,
    nonlinearity: Annotated[Optional[str], typer.Option(help="tanh or relu, vanilla rnn only. [default: tanh]")] = None,
    init: Annotated[
        Optional[str], typer.Option(help="default, or identity (W_hh = I, zero biases), vanilla rnn only.")
    ] = None,
    seq_len: Annotated[
        Optional[int], typer.Option(help="Steps of back-propagation through time. [default: 128]")
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Parallel streams through the text. [default: 32]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak AdamW learning rate. [default: 2e-3]")] = None,
    weight_decay: Annotated[
        Optional[float], typer.Option(help="AdamW weight decay on weight matrices. [default: 0.1]")
    ] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Linear learning-rate warm-up. [default: 100]")] = None,
    clip_norm: Annotated[
        Optional[float], typer.Option(help="Clip the gradient's total norm; 0 = off. [default: 1.0]")
    ] = None,
    clip_value: Annotated[
        Optional[float], typer.Option(help="Clip each gradient element; 0 = off. [default: 0]")
    ] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    max_time: Annotated[
        Optional[str],
        typer.Option(help="Stop after this long, e.g. 90s, 10m, 1h. [default: 9m when no budget is given]"),
    ] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Validate and save every N steps. [default: 100]")] = None,
    seed: Annotated[
        Optional[int], typer.Option(help="Seed for initialisation, data order and dropout. [default: 1337]")
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Run directory. [default: runs/<data>-<cell>]")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.pt.")] = False,
    force: Annotated[bool, typer.Option(help="Start over in a directory that already holds a run.")] = False,
):
    """Train a model; checkpoints and metrics.jsonl go to the run directory."""
    from charrnn.train import Trainer, default_out_dir

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
    )
    model_names = {
        "cell": "cell",
        "layers": "num_layers",
        "hidden_size": "hidden_size",
        "embed_size": "embed_size",
        "dropout": "dropout",
        "nonlinearity": "nonlinearity",
        "init": "init",
    }
    train_options = {k: given[k] for k in train_names if k in given}
    if max_time is not None:
        train_options["max_time"] = parse_duration(max_time)
    model_options = {field: given[k] for k, field in model_names.items() if k in given}
    if out_dir is None:
        if resume:
            fail("--resume needs the run directory. Pass --out DIR")
        out_dir = default_out_dir(data or "alice", cell or "lstm")

    stop, received = threading.Event(), []

    def on_signal(signum, frame):
        received.append(signum)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    previous = {s: signal.signal(s, on_signal) for s in SIGNAL_EXIT}
    trainer = Trainer(out_dir, train_options, model_options, resume=resume, force=force, stop=stop)
    try:
        config = trainer.config
        err.print(
            f"training a {trainer.model_config.num_layers}-layer {trainer.model_config.hidden_size}-unit "
            f"{trainer.model_config.cell} ({trainer.model.num_parameters():,} parameters) on {config.data} "
            f"({len(trainer.ids):,} characters, vocabulary {len(trainer.vocab)}) into {out_dir}"
            + (f", resuming at step {trainer.step}" if resume else ""),
            markup=False,
        )
        with progress_bar(total=1000, bar_format="{l_bar}{bar}| {postfix}") as bar:
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
    best = "none yet" if outcome.best_val_bpc is None else f"{outcome.best_val_bpc:.3f} bpc"
    err.print(
        f"step {outcome.step}, {format_seconds(outcome.elapsed_s)}; best validation {best}; "
        f"checkpoints in {outcome.out_dir}/ (best.pt, last.pt)",
        markup=False,
    )
    if received:
        err.print(f"stopped; resume with: charrnn train --out {outcome.out_dir} --resume", markup=False)
        raise typer.Exit(SIGNAL_EXIT[received[0]])
    err.print(f"sample with: charrnn sample {outcome.out_dir}", markup=False)


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


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
        Optional[int], typer.Option(help="Same seed, same text. [default: random, printed to stderr]")
    ] = None,
    num_samples: Annotated[int, typer.Option(help="Independent samples, separated by a line '---'.")] = 1,
):
    """Generate text; it streams to stdout as it is generated."""
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
    loaded = load(checkpoint_path)
    loaded.vocab.encode(prime, fix=PRIME_HINT, what="the prime")
    if config.seed is None:
        config = SampleConfig(**{**config.__dict__, "seed": secrets.randbelow(2**31)})
        err.print(f"seed: {config.seed}")
    ensure_replaceable_output()
    stream = generate(loaded.model, loaded.vocab, config, prime, config.seed)
    if num_samples == 1:
        sys.stdout.write(prime)
        for chars in stream:
            sys.stdout.write(chars[0])
            sys.stdout.flush()
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
):
    """Score text: loss in nats per character, bits per character, perplexity."""
    from charrnn.api import load
    from charrnn.evaluate import evaluate

    if split not in ("train", "val", "test"):
        fail(f"unknown split {split!r}. Use train, val or test", 2)
    loaded = load(checkpoint_path)
    if data is None:
        source = loaded.content["train_config"]["data"]
        text, digest = corpus.load_text(source)
        if digest != loaded.content["data_sha256"]:
            fail(
                f"the text of {source} changed since the model was trained. "
                "Restore it, or pass --data to score another text"
            )
        ids = loaded.vocab.encode(text)
        part = splits(len(ids))[split]
        result, skipped, what = evaluate(loaded.model, ids, part.start, part.end), 0, f"{split} split of {source}"
    else:
        text, _ = corpus.load_text(data)
        skipped = sum(loaded.vocab.unknown(text).values()) if skip_unknown else 0
        ids = loaded.vocab.encode(text, skip_unknown=skip_unknown)
        result, what = evaluate(loaded.model, ids, 1, len(ids)), data
    report = result.as_dict() | ({"skipped": skipped} if skip_unknown else {})
    if as_json:
        out.print(json.dumps(report), markup=False)
        return
    out.print(
        f"{what}: {result.loss:.4f} nats/char, {result.bpc:.4f} bits/char, perplexity {result.perplexity:.3f}, "
        f"{result.chars:,} characters scored" + (f", {skipped:,} unknown skipped" if skip_unknown else ""),
        markup=False,
    )
    if not math.isfinite(result.loss):
        fail("the score is not finite. The checkpoint may hold non-finite weights; use an earlier one")


def main() -> None:
    app(prog_name="charrnn")
