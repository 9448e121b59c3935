"""What every command shares: the two consoles, `error: ...` endings, progress bars and common options."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from tqdm import tqdm

from charrnn.cli.options import opt
from charrnn.config import TrainConfig
from charrnn.errors import CharRNNError
from charrnn.options import OptionError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

CheckpointArgument = Annotated[
    Path, typer.Argument(metavar="CHECKPOINT", help="A run directory (its best.pt) or a .pt file.")
]


def threads_option(panel: str | None = None):
    return typer.Option(
        min=1,
        help="CPU threads for PyTorch. \\[default: all cores, or $OMP_NUM_THREADS when set]",
        rich_help_panel=panel,
    )


ThreadsOption = Annotated[Optional[int], threads_option()]
DeviceOption = opt(TrainConfig, "device")
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def fail(message: str, code: int = 1):
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def handles_errors(command):
    """A user's mistake ends as `error: ...` and exit 1, Ctrl-C as exit 130; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OptionError as e:
            fail(e.for_flags())
        except CharRNNError as e:
            fail(str(e))
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def default_note(owner, name: str) -> str:
    """A default for --help, read from the dataclass or module that holds it: the options themselves default
    to None so that a resume, a config file and a preset can tell which ones the user gave. The bracket is
    escaped from rich's markup."""
    return f" \\[default: {getattr(owner, name)}]"


def progress_bar(main: bool = True, **kwargs) -> tqdm:
    return tqdm(file=sys.stderr, disable=not (main and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


def use_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
