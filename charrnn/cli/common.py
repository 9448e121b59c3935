"""What every command shares: the two consoles, `error: ...` endings, progress bars and common options."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from tqdm import tqdm

from charrnn.cli.options import opt
from charrnn.errors import CharRNNError, notes_to
from charrnn.settings.config import TrainConfig
from charrnn.settings.options import OptionError, not_utf8

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

CheckpointArgument = Annotated[
    Path, typer.Argument(metavar="CHECKPOINT", help="A run directory (its best.pt) or a .pt file.")
]


# torch.set_num_threads takes a C int; far beyond any machine's cores, a limit that fits it.
MAX_THREADS = 4096


def threads_option(panel: str | None = None):
    return typer.Option(
        min=1,
        max=MAX_THREADS,
        help="CPU threads for PyTorch. \\[default: all cores, or $OMP_NUM_THREADS when set]",
        rich_help_panel=panel,
    )


ThreadsOption = Annotated[Optional[int], threads_option()]
DeviceOption = opt(TrainConfig, "device")


def fail(message: str, code: int = 1):
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def handles_errors(command):
    """A user's mistake ends as `error: ...` and exit 1, Ctrl-C as exit 130; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        replaceable_output()
        try:
            with notes_to(print_note):
                return command(*args, **kwargs)
        except OptionError as e:
            fail(e.for_flags())
        except CharRNNError as e:
            fail(str(e))
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def replaceable_output() -> None:
    """A terminal that cannot show a character (`PYTHONIOENCODING=ascii`) gets a '?' instead of a crash."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")


def print_json(report: dict) -> None:
    """One line of strict JSON on stdout: a number that is not finite (an overflowed perplexity) is null."""
    out.print(json.dumps(_finite_or_none(report), allow_nan=False), markup=False)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def command_line_text(text: str, what: str, fix: str) -> str:
    """`text` as typed, refused when it holds bytes that are not UTF-8, which no encoder writes."""
    bad = not_utf8(text)
    if bad is not None:
        raise CharRNNError(f"{what} holds bytes that are not UTF-8 ({bad}). {fix}")
    return text


def read_text_file(path: Path, flag: str) -> str:
    """A UTF-8 text file named on the command line; a directory, FIFO or device is named for what it is."""
    from charrnn.data.corpus import decode_text, not_a_file

    fix = f"Pass the path of a UTF-8 text file to {flag}"
    try:
        kind = not_a_file(path)
        if kind is not None:
            raise CharRNNError(f"{path} is {kind}, not a text file. {fix}")
        data = Path(path).read_bytes()
    except (FileNotFoundError, ValueError):  # ValueError: a NUL in the name, which no file can have
        raise CharRNNError(f"no such file: {path}. {fix}") from None
    except OSError as e:
        raise CharRNNError(f"cannot read {path} ({e.strerror or e}). {fix}") from None
    return decode_text(data, str(path))


def print_note(message: str) -> None:
    """A note from the core: one `note: ...` line on stderr."""
    err.print(f"note: {message}", markup=False)


def end_process(code: int, distributed: bool):
    """End a command with `code`. Under torchrun the process ends here, its output flushed: once the process
    group is gone, gloo's threads can abort the interpreter's shutdown (SIGABRT, "terminate called without an
    active exception") after a run that succeeded, and os._exit skips the C++ destructors where that happens."""
    if distributed:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise typer.Exit(code)


def progress_bar(main: bool = True, **kwargs) -> tqdm:
    return tqdm(file=sys.stderr, disable=not (main and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


def use_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
