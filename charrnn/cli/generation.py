"""`charrnn sample` (one prime, or an interactive session) and `charrnn fill`: text out of a model."""

import itertools
import secrets
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import (
    CheckpointArgument,
    DeviceOption,
    ThreadsOption,
    command_line_text,
    err,
    fail,
    handles_errors,
    read_text_file,
    use_threads,
)
from charrnn.cli.options import given, opt, plain
from charrnn.config import SampleConfig, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.options import OptionError, wrap_seed

SAMPLE_SEPARATOR = "\n\n---\n\n"
# Sampling steps one character at a time, which a CPU does at least as fast as a GPU for these models.
SAMPLE_DEVICE = "cpu"
S = SampleConfig


def write_streaming(prime: str, stream) -> None:
    """The prime, then one sample's characters to stdout as each is generated."""
    sys.stdout.write(prime)
    for chars in stream:
        sys.stdout.write(chars[0])
        sys.stdout.flush()


@handles_errors
def sample(
    checkpoint_path: CheckpointArgument,
    prime: Annotated[Optional[str], typer.Option(help="Text to start from; printed first.")] = None,
    prime_file: Annotated[Optional[Path], typer.Option(help="Read the prime from a UTF-8 file.")] = None,
    length: opt(S, "length") = None,
    temperature: opt(S, "temperature") = None,
    top_k: opt(S, "top_k") = None,
    top_p: opt(S, "top_p") = None,
    seed: opt(S, "seed") = None,
    num_samples: opt(S, "num_samples") = None,
    threads: ThreadsOption = None,
    device: opt(TrainConfig, "device", default=SAMPLE_DEVICE) = None,
    interactive: Annotated[
        bool, typer.Option(help="Read primes from stdin, print each continuation; ':t 0.5' sets the temperature.")
    ] = False,
):
    """Generate text; it streams to stdout as it is generated."""
    use_threads(threads)
    from charrnn.api import load
    from charrnn.sample import PRIME_HINT, check_memory, generate

    config = SampleConfig(
        **given(dict(length=length, temperature=temperature, top_k=top_k, top_p=top_p, num_samples=num_samples))
        | {"seed": seed}
    )
    device = plain(device, SAMPLE_DEVICE)
    if prime is not None and prime_file is not None:
        fail("pass --prime or --prime-file, not both. Drop one of them", 2)
    if prime_file is not None:
        prime = read_text_file(prime_file, "--prime-file")
    prime = command_line_text(prime or "", "--prime", "Pass UTF-8 text, or a UTF-8 file with --prime-file")
    loaded = load(checkpoint_path, device)
    loaded.require("lm")
    loaded.vocab.encode(prime, fix=PRIME_HINT, what="the prime")
    if config.seed is None:
        config = SampleConfig(**{**config.__dict__, "seed": secrets.randbelow(2**31)})
        err.print(f"seed: {config.seed}")
    if interactive:
        return interactive_session(loaded, config)
    if config.num_samples == 1:
        write_streaming(prime, generate(loaded.model, loaded.vocab, config, prime, config.seed))
    else:
        # The samples are written one after another, so all of them are held until the last character.
        import torch

        held = config.num_samples * (len(prime) + config.length)
        check_memory(loaded.model.config, torch.device("cpu"), config.num_samples, held)
        texts = [[prime] for _ in range(config.num_samples)]
        for chars in generate(loaded.model, loaded.vocab, config, prime, config.seed):
            for text, char in zip(texts, chars):
                text.append(char)
        sys.stdout.write(SAMPLE_SEPARATOR.join("".join(text) for text in texts))
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()


INTERACTIVE_HELP = "type a prime and Enter; ':t 0.5' sets the temperature, ':n 300' the length; Ctrl-D ends"


def read_line() -> str | None:
    """A line of stdin without its newline, None at the end; bytes that are not UTF-8 come as lone surrogates,
    as they do on the command line, whatever the locale."""
    raw = sys.stdin.buffer.readline()
    return raw.decode("utf-8", "surrogateescape").removesuffix("\n").removesuffix("\r") if raw else None


def interactive_session(loaded, config: SampleConfig) -> None:
    """Prime after prime from stdin until end of input; each continuation streams to stdout."""
    from charrnn.sample import PRIME_HINT, generate

    err.print(INTERACTIVE_HELP, markup=False)
    for count in itertools.count():
        err.print(f"[t={config.temperature:g} n={config.length}]> ", end="", markup=False)
        prime = read_line()
        if prime is None:
            err.print("")
            return
        command = prime.split()
        if command and command[0] in (":t", ":n"):
            try:
                field = "temperature" if command[0] == ":t" else "length"
                value = float(command[1]) if field == "temperature" else int(command[1])
                config = SampleConfig(**{**config.__dict__, field: value})
            except (IndexError, ValueError):
                err.print("error: a command needs a number. Write e.g. ':t 0.5' or ':n 300'", markup=False)
            except OptionError as e:
                err.print(f"error: {e.for_flags()}", markup=False)
            continue
        try:
            command_line_text(prime, "the prime", "Type UTF-8 text")
            loaded.vocab.encode(prime, fix=PRIME_HINT, what="the prime")
            # Seeds run on from --seed, so a session with the same inputs gives the same text.
            seed = wrap_seed(config.seed + count)
            stream = generate(loaded.model, loaded.vocab, config, prime, seed)
            write_streaming(prime, stream)
        except CharRNNError as e:
            err.print(f"error: {e}", markup=False)
            continue
        except KeyboardInterrupt:
            pass  # Ctrl-C ends this continuation, not the session
        sys.stdout.write("\n")
        sys.stdout.flush()


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
    temperature: opt(
        S, "temperature", help="0 = the likeliest characters; above 0, sample (1 = the model's own odds).", default=0.0
    ) = None,
    seed: opt(S, "seed") = None,
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
        text = read_text_file(file, "--file")
    text = command_line_text(text, "TEXT", "Pass UTF-8 text, or a UTF-8 file with --file")
    mask_char = command_line_text(mask_char, "--mask-char", "Pass one UTF-8 character, e.g. --mask-char _")
    loaded = load(checkpoint_path, plain(device, "auto"))
    loaded.require("fill")
    config = SampleConfig(temperature=0.0 if temperature is None else temperature, seed=seed)
    if config.temperature > 0 and config.seed is None:
        config = SampleConfig(temperature=config.temperature, seed=secrets.randbelow(2**31))
        err.print(f"seed: {config.seed}")
    filled = loaded.fill(text, mask_char, config.temperature, config.seed or 0)
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
