"""`charrnn sample`: text from a model, from one prime or in an interactive session."""

import itertools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import (
    CheckpointArgument,
    ThreadsOption,
    command_line_text,
    err,
    fail,
    handles_errors,
    read_text_file,
    use_threads,
)
from charrnn.cli.options import given, opt, plain
from charrnn.errors import CharRNNError
from charrnn.settings.config import SampleConfig, TrainConfig
from charrnn.settings.options import OptionError, wrap_seed

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
    from charrnn.generation.sampling import PRIME_HINT, check_memory, generate, seeded

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
        config = seeded(config)
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
    from charrnn.generation.sampling import PRIME_HINT, generate

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
