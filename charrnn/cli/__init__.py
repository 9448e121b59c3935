"""The `charrnn` command. This package is the only code that parses options, prints, and turns errors into
exit codes; each of its modules holds one command, and this one lists them all."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from charrnn import __version__
from charrnn.cli.bench import bench
from charrnn.cli.cache import cache_command
from charrnn.cli.common import out
from charrnn.cli.compare import compare
from charrnn.cli.corpus import corpus_command
from charrnn.cli.eval import eval_command
from charrnn.cli.export import export_command
from charrnn.cli.fill import fill_command
from charrnn.cli.gradients import gradients
from charrnn.cli.info import info
from charrnn.cli.plot import plot
from charrnn.cli.sample import sample
from charrnn.cli.serve import serve_command
from charrnn.cli.train import train

app = typer.Typer(
    help="Train character-level RNN, LSTM and GRU language models on any text, measure them, and generate text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)

COMMANDS = {
    "corpus": corpus_command,
    "train": train,
    "sample": sample,
    "eval": eval_command,
    "info": info,
    "plot": plot,
    "fill": fill_command,
    "compare": compare,
    "gradients": gradients,
    "bench": bench,
    "cache": cache_command,
    "export": export_command,
    "serve": serve_command,
}
for name, command in COMMANDS.items():
    app.command(name)(command)


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


def main() -> None:
    app(prog_name="charrnn")
