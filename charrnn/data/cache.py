"""The user's cache directory, where encoded corpora are kept (charrnn/data/ids.py), and its size bound.

The directory is the first of: one passed explicitly, $CHARRNN_CACHE_DIR, $XDG_CACHE_HOME/charrnn (an
absolute $XDG_CACHE_HOME only, as the XDG spec says), ~/.cache/charrnn. Nothing is ever cached beside the
user's files. An entry is `<key>.ids`: a format line, a line of JSON metadata (which may name the `source`
file), padding to a page boundary, then the payload. Reading an entry sets its access time, the "last
used" that clean-up goes by: after each write, the least recently used entries beyond
$CHARRNN_CACHE_MAX_MB go, never the one just written.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from charrnn import atomic
from charrnn.data.corpus import xdg_base_dir
from charrnn.errors import CharRNNError

DIR_VARIABLE = "CHARRNN_CACHE_DIR"
MAX_MB_VARIABLE = "CHARRNN_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048
MAGIC = "charrnn-ids 1"
# The payload starts at a multiple of the page size, which every dtype's item size divides.
HEADER_ALIGN = 4096
ENTRY_NAME = re.compile(r"[0-9a-f]{16}\.ids")
# A temporary file this old was left by a killed process: a live writer finishes within minutes.
STALE_TEMP_S = 24 * 3600


@dataclass(frozen=True)
class Entry:
    path: Path
    bytes: int
    last_used: float
    source: str | None


def directory(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(DIR_VARIABLE):
        return Path(os.environ[DIR_VARIABLE])
    return xdg_base_dir("XDG_CACHE_HOME", ".cache") / "charrnn"


def max_bytes() -> int:
    """The size bound, from $CHARRNN_CACHE_MAX_MB (megabytes of 10^6 bytes)."""
    value = os.environ.get(MAX_MB_VARIABLE, "").strip()
    if not value:
        return DEFAULT_MAX_MB * 10**6
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise CharRNNError(
            f"${MAX_MB_VARIABLE} is {value!r}, not a size in megabytes. "
            f"Set it to a number such as {DEFAULT_MAX_MB}, or unset it"
        )
    return int(megabytes * 10**6)


def entry_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.ids"


def header(meta: dict) -> bytes:
    line = f"{MAGIC}\n{json.dumps(meta)}\n".encode()
    return line + b" " * (-len(line) % HEADER_ALIGN)


def read_header(path: Path) -> tuple[dict, int] | None:
    """An entry's metadata and where its payload starts; None for a file that is not an entry."""
    try:
        with open(path, "rb") as f:
            if f.readline().decode(errors="replace").strip() != MAGIC:
                return None
            meta = json.loads(f.readline())
            position = f.tell()
    except (OSError, ValueError):
        return None
    return (meta, position + (-position % HEADER_ALIGN)) if isinstance(meta, dict) else None


def mark_used(path: Path) -> None:
    """Record a use in the access time (left unchanged by a read-only cache or a mount with noatime)."""
    try:
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    except OSError:
        pass


def entries(cache_dir: Path) -> list[Entry]:
    """The entries in `cache_dir`, most recently used first; other files there are not charrnn's."""
    found = []
    for path in _entry_files(cache_dir):
        read = read_header(path)
        try:
            stat = path.stat()
        except OSError:
            continue
        if read is not None:
            source = read[0].get("source")
            found.append(Entry(path, stat.st_size, stat.st_atime, source if isinstance(source, str) else None))
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def prune(cache_dir: Path, keep: Path, limit: int) -> list[Path]:
    """Remove the least recently used entries until the cache fits in `limit` bytes; `keep` stays whatever
    its size. A process that maps a removed entry keeps reading it (POSIX keeps an open file until it is
    closed; Windows refuses to remove it, and that entry is skipped). Returns what was removed."""
    removed = [tmp for tmp in _temp_files(cache_dir) if _is_stale(tmp) and _remove(tmp)]
    cached = entries(cache_dir)
    total = sum(e.bytes for e in cached)
    for entry in reversed(cached):
        if total <= limit:
            break
        if entry.path != Path(keep) and _remove(entry.path):
            total -= entry.bytes
            removed.append(entry.path)
    return removed


def clear(cache_dir: Path) -> list[Entry]:
    """Remove every entry, and temporary files left by killed processes; returns the entries removed."""
    for tmp in _temp_files(cache_dir):
        _remove(tmp)
    return [entry for entry in entries(cache_dir) if _remove(entry.path)]


def _entry_files(cache_dir: Path) -> list[Path]:
    try:
        return [p for p in Path(cache_dir).iterdir() if ENTRY_NAME.fullmatch(p.name)]
    except OSError:
        return []


def _temp_files(cache_dir: Path) -> list[Path]:
    try:
        return list(Path(cache_dir).glob(f".*.ids{atomic.TEMP_MARK}*"))
    except OSError:
        return []


def _is_stale(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > STALE_TEMP_S
    except OSError:
        return False


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True
