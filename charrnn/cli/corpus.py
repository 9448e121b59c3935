"""`charrnn corpus`: list the known corpora, or fetch one."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from charrnn.cli.common import (
    err,
    handles_errors,
    out,
)
from charrnn.data import corpus


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
