"""The `charrnn` command. This package is the only code that parses options, prints, and turns errors into
exit codes; each of its modules holds the commands of one kind, and this one lists them all."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from charrnn import __version__
from charrnn.cli import cache, describe, exporting, generation, lessons, performance, scoring, serving, training
from charrnn.cli.common import out

app = typer.Typer(
    help="Train character-level RNN, LSTM and GRU language models on any text, measure them, and generate text.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)

COMMANDS = {
    "corpus": training.corpus_command,
    "train": training.train,
    "sample": generation.sample,
    "eval": scoring.eval_command,
    "info": describe.info,
    "plot": describe.plot,
    "fill": generation.fill_command,
    "compare": lessons.compare,
    "gradients": lessons.gradients,
    "bench": performance.bench,
    "cache": cache.cache_command,
    "export": exporting.export_command,
    "serve": serving.serve_command,
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
