"""Corpora: a name or a path in, verified UTF-8 text on disk out.

Known corpora live in `charrnn/data/corpora.toml`. A named corpus is copied from a mirror directory
when one holds it, else downloaded from its public source; either way its SHA-256 is checked
before it is written (atomically) under `corpora/` in the checkout charrnn runs from, or under
`$XDG_DATA_HOME/charrnn/corpora` (by default `~/.local/share/charrnn/corpora`) when it runs as an installed
package.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from charrnn import atomic
from charrnn.errors import CharRNNError

REGISTRY_FILE = Path(__file__).resolve().with_name("corpora.toml")
CHECKOUT = Path(__file__).resolve().parents[2]


def _in_checkout() -> bool:
    """Whether charrnn runs from its own source tree (a clone, installed editable) rather than an installed copy."""
    try:
        return 'name = "charrnn-lm"' in (CHECKOUT / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False


def xdg_base_dir(variable: str, default_under_home: str) -> Path:
    """An XDG base directory such as $XDG_DATA_HOME, which the XDG spec says to ignore unless it is an absolute
    path; else its default under the home directory (".local/share" for data, ".cache" for caches)."""
    configured = Path(os.environ.get(variable, ""))
    return configured if configured.is_absolute() else Path.home() / default_under_home


IN_CHECKOUT = _in_checkout()
# A checkout keeps its corpora beside the code; an installed package has no such place of its own.
CORPORA_DIR = (
    CHECKOUT / "corpora" if IN_CHECKOUT else xdg_base_dir("XDG_DATA_HOME", ".local/share") / "charrnn" / "corpora"
)
MIRROR_VARIABLE = "CHARRNN_CORPUS_MIRROR"
DEFAULT_MIRROR = CHECKOUT.parent / "shared" / "corpora" if IN_CHECKOUT else None
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    title: str
    url: str
    file: str
    sha256: str
    bytes: int
    characters: int
    licence: str


def registry(path: Path = REGISTRY_FILE) -> dict[str, CorpusEntry]:
    with open(path, "rb") as f:
        table = tomllib.load(f)
    return {name: CorpusEntry(name=name, **fields) for name, fields in table.items()}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes, source: str) -> str:
    """Strict UTF-8 with a byte-order mark dropped and CRLF turned into LF."""
    if b"\x00" in data:
        raise CharRNNError(f"{source} looks like a binary file (it holds NUL bytes), not text. Pass a UTF-8 text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CharRNNError(
            f"{source} is not valid UTF-8 (bad byte at offset {e.start}). Convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    return text.replace("\r\n", "\n")


def gutenberg_body(text: str) -> str:
    """The text between Project Gutenberg's `*** START OF` and `*** END OF` lines."""
    lines = text.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("*** START OF")), None)
    end = next((i for i, line in enumerate(lines) if line.startswith("*** END OF")), None)
    if start is None or end is None or end <= start:
        raise CharRNNError(
            "the downloaded file has no `*** START OF` / `*** END OF` marker lines. "
            "Check the source, or use a mirror directory with --mirror"
        )
    return "\n".join(lines[start + 1 : end]).strip()


def _mirror_dirs(mirror: Path | None) -> list[Path]:
    if mirror is not None:
        return [mirror]
    if os.environ.get(MIRROR_VARIABLE):
        return [Path(os.environ[MIRROR_VARIABLE])]
    return [DEFAULT_MIRROR] if DEFAULT_MIRROR is not None and DEFAULT_MIRROR.is_dir() else []


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CharRNNError(
            f"could not download {url} ({reason}). Check the network, or point --mirror "
            f"(or {MIRROR_VARIABLE}) at a directory that holds the file"
        ) from None


def fetch(
    name: str,
    *,
    mirror: Path | None = None,
    verify: bool = True,
    corpora_dir: Path = CORPORA_DIR,
    entries: dict[str, CorpusEntry] | None = None,
) -> tuple[Path, str]:
    """Make the named corpus present under `corpora_dir`; return its path and where it came from."""
    entries = registry() if entries is None else entries
    if name not in entries:
        raise CharRNNError(f"unknown corpus {name!r}. Known corpora: {', '.join(sorted(entries))}")
    entry = entries[name]
    target = corpora_dir / entry.file
    for directory in _mirror_dirs(mirror):
        candidate = directory / entry.file
        if candidate.is_file():
            data = decode_text(candidate.read_bytes(), str(candidate)).encode("utf-8")
            origin = str(candidate)
            break
    else:
        data = gutenberg_body(decode_text(_download(entry.url), entry.url)).encode("utf-8")
        origin = entry.url
    digest = sha256_hex(data)
    if verify and digest != entry.sha256:
        raise CharRNNError(
            f"the {name} text from {origin} has SHA-256 {digest}, expected {entry.sha256}. "
            "The source may have changed; pass --no-verify to accept it anyway"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(target, data)
    return target, origin


def is_present(entry: CorpusEntry, corpora_dir: Path = CORPORA_DIR) -> bool:
    return (corpora_dir / entry.file).is_file()


# What a path names when it is not a regular file, which charrnn reads whole (and a corpus twice).
NOT_FILES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (a named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_a_file(path: Path | str) -> str | None:
    """What `path` names when that is not a regular file ("a directory", "a FIFO (a named pipe)"...), else None.
    Raises FileNotFoundError when nothing is there, ValueError for a name with a NUL, OSError when unreadable."""
    mode = os.stat(path).st_mode
    return next((name for test, name in NOT_FILES if test(mode)), None)


def resolve(data: str, corpora_dir: Path = CORPORA_DIR) -> Path:
    """The file behind `--data`: a known corpus name (fetched on first use) or a path."""
    entries = registry()
    fix = f"Pass the path of a UTF-8 text file or a known corpus ({', '.join(sorted(entries))})"
    if not data.strip():
        raise CharRNNError(f"--data is empty. {fix}")
    if data in entries and not Path(data).is_file():
        path = corpora_dir / entries[data].file
        return path if path.is_file() else fetch(data, corpora_dir=corpora_dir, entries=entries)[0]
    try:
        kind = not_a_file(data)
    except (FileNotFoundError, ValueError):
        raise CharRNNError(f"no such file: {data}. {fix}") from None
    except OSError as e:
        raise CharRNNError(f"cannot read {data} ({e.strerror or e}). {fix}") from None
    if kind is not None:
        raise CharRNNError(f"{data} is {kind}, not a text file. {fix}")
    return Path(data)
