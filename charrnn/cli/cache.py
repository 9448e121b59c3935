"""`charrnn cache`: what the cache of encoded corpora holds, and emptying it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from charrnn.cli.common import err, handles_errors, out
from charrnn.data import cache


@handles_errors
def cache_command(
    clear: Annotated[bool, typer.Option("--clear", help="Remove every entry.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
):
    """List the encoded corpora cached for training and scoring, or remove them.

    The cache is $CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn. After each new
    entry the least recently used go beyond $CHARRNN_CACHE_MAX_MB megabytes (default 2048)."""
    directory = cache.directory()
    if clear:
        removed = cache.clear(directory)
        removed_bytes = sum(e.bytes for e in removed)
        if as_json:
            report = {"directory": str(directory), "removed": [_as_dict(e) for e in removed], "bytes": removed_bytes}
            out.print(json.dumps(report), markup=False)
        else:
            out.print(f"removed {_count(removed)} ({_size(removed_bytes)}) from {directory}", markup=False)
        return
    limit, entries = cache.max_bytes(), cache.entries(directory)
    total = sum(e.bytes for e in entries)
    if as_json:
        report = {"directory": str(directory), "max_bytes": limit, "bytes": total}
        out.print(json.dumps(report | {"entries": [_as_dict(e) for e in entries]}), markup=False)
        return
    err.print(f"{directory}: {_count(entries)}, {_size(total)} of at most {_size(limit)}", markup=False)
    if entries:
        table = Table("last used", "size")
        table.add_column("source", overflow="fold")
        table.add_column("entry", overflow="fold")
        for entry in entries:
            last_used = datetime.fromtimestamp(entry.last_used).strftime("%Y-%m-%d %H:%M")
            table.add_row(last_used, _size(entry.bytes), Text(entry.source or "unknown"), Text(entry.path.name))
        out.print(table)


def _as_dict(entry: cache.Entry) -> dict:
    return {
        "path": str(entry.path),
        "bytes": entry.bytes,
        "source": entry.source,
        "last_used": datetime.fromtimestamp(entry.last_used, UTC).isoformat(timespec="seconds"),
    }


def _count(entries: list) -> str:
    return "1 entry" if len(entries) == 1 else f"{len(entries)} entries"


def _size(size: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size} B"
