"""A corpus file as integer ids: encoded once, cached in the user's cache directory, memory-mapped.

A cache entry (see charrnn/data/cache.py for where, and for its size bound) is keyed by the SHA-256 of the
file's bytes and holds the text's own vocabulary (sorted characters) and its ids in the smallest integer
dtype that holds it. The file is read in pieces, so no step holds the whole text, let alone one Python
object per character. When the cache cannot be written (read-only, full, or not a directory) the ids are
encoded in memory instead, with a note that says so.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn import atomic
from charrnn.data import cache, corpus
from charrnn.data.vocabulary import SKIP_HINT, Vocabulary, smallest_dtype
from charrnn.errors import CharRNNError, note

# Small pieces keep each step's buffers in cache and reuse freed memory; larger pieces encoded a large file
# slower (docs/performance.md, "Measured choices").
PIECE_BYTES = 1 << 20
MAX_CODE_POINT = 0x10FFFF
DTYPES = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}


@dataclass(frozen=True)
class CorpusIds:
    chars: list[str]
    ids: torch.Tensor
    sha256: str

    def under(
        self, vocab: Vocabulary, skip_unknown: bool = False, fix: str = SKIP_HINT, what: str = "the text"
    ) -> tuple[torch.Tensor, int]:
        """The ids under another vocabulary (a saved model's), and how many unknown characters were left out."""
        if vocab.chars == self.chars:
            return self.ids, 0
        table = torch.tensor([vocab.index.get(c, -1) for c in self.chars], dtype=torch.int32)
        unknown = table < 0
        if bool(unknown.any()):
            counts = torch.bincount(self.ids.int(), minlength=len(self.chars))
            missing = Counter({self.chars[i]: int(counts[i]) for i in unknown.nonzero().flatten().tolist()})
            if not skip_unknown:
                raise Vocabulary.unknown_error(missing, fix, what)
        pieces = []
        for start in range(0, len(self.ids), PIECE_BYTES):
            mapped = torch.index_select(table, 0, self.ids[start : start + PIECE_BYTES].int())
            pieces.append(mapped[mapped >= 0].to(vocab.dtype))
        ids = torch.cat(pieces) if pieces else torch.empty(0, dtype=vocab.dtype)
        return ids, len(self.ids) - len(ids)


def load(data: str, cache_dir: Path | None = None) -> CorpusIds:
    """The ids of `--data` (a known corpus name or a path), from the cache or encoded into it.

    `cache_dir` is the cache directory when given (else `cache.directory()` finds it)."""
    path = corpus.resolve(data)
    entry = cache.entry_path(cache.directory(cache_dir), _file_sha256(path)[:16])
    limit = cache.max_bytes()
    loaded = _read(entry)
    if loaded is None:
        return _encode(path, entry, limit)
    cache.mark_used(entry)
    return loaded


def encode(data: str, cache_dir: Path) -> CorpusIds:
    """Encode `--data` afresh into `cache_dir`, whatever is cached already: what `charrnn bench --data` times."""
    path = corpus.resolve(data)
    return _encode(path, cache.entry_path(cache_dir, _file_sha256(path)[:16]), cache.max_bytes())


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(PIECE_BYTES):
                digest.update(block)
    except OSError as e:
        raise CharRNNError(f"cannot read {path} ({e.strerror}). Check the path and its permissions") from None
    return digest.hexdigest()


def _pieces(path: Path) -> Iterator[tuple[bytes, torch.Tensor]]:
    """The text's normalised UTF-8 bytes (as corpus.decode_text makes them) and their code points, a piece at a time."""
    offset, carry = 0, b""
    with open(path, "rb") as f:
        while True:
            block = f.read(PIECE_BYTES)
            data = carry + block
            cut = len(data) if not block else _last_char_start(data)
            piece, carry = data[:cut], data[cut:]
            if piece:
                yield _normalise(piece, offset, str(path))
            offset += len(piece)
            if not block:
                return


def _last_char_start(data: bytes) -> int:
    """A cut before the last character, and before a carriage return that may start a CRLF."""
    cut = len(data) - 1
    while cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    if cut > 0 and data[cut - 1] == 0x0D:
        cut -= 1
    return cut


def _normalise(piece: bytes, offset: int, source: str) -> tuple[bytes, torch.Tensor]:
    if b"\x00" in piece:
        raise CharRNNError(f"{source} looks like a binary file (it holds NUL bytes), not text. Pass a UTF-8 text file")
    if offset == 0 and piece.startswith(b"\xef\xbb\xbf"):
        piece, offset = piece[3:], 3
    if b"\r" in piece:
        piece = piece.replace(b"\r\n", b"\n")
    if not piece:
        return piece, torch.empty(0, dtype=torch.int32)
    if piece.isascii():
        return piece, torch.frombuffer(bytearray(piece), dtype=torch.uint8).int()
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CharRNNError(
            f"{source} is not valid UTF-8 (bad byte at offset {offset + e.start}). "
            "Convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    return piece, torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32)


def _encode(path: Path, entry: Path, limit: int) -> CorpusIds:
    digest, seen, length = hashlib.sha256(), torch.zeros(MAX_CODE_POINT + 1, dtype=torch.bool), 0
    for piece, points in _pieces(path):
        digest.update(piece)
        counts = torch.bincount(points)
        seen[: len(counts)] |= counts > 0
        length += len(points)
    if length == 0:
        raise CharRNNError(f"{path} is empty. Pass a file with some text in it")
    code_points = seen.nonzero().flatten()
    chars = [chr(c) for c in code_points.tolist()]
    dtype = smallest_dtype(len(chars))
    table = torch.zeros(MAX_CODE_POINT + 1, dtype=dtype)
    table[code_points] = torch.arange(len(chars)).to(dtype)
    sha256 = digest.hexdigest()
    meta = {
        "sha256": sha256,
        "chars": chars,
        "dtype": str(dtype).removeprefix("torch."),
        "length": length,
        "source": str(path.resolve()),
    }
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(entry) as tmp:
            _write(tmp, cache.header(meta), table, path, length)
    except OSError as e:
        reason = e.strerror or str(e)
    else:
        loaded = _read(entry)
        if loaded is not None:
            cache.mark_used(entry)
            cache.prune(entry.parent, keep=entry, limit=limit)
            return loaded
        reason = "another process removed it at once"
    message = (
        f"could not cache the encoded {path.name} in {entry.parent} ({reason}), so it was encoded in memory and "
        f"will be encoded again next time. Set ${cache.DIR_VARIABLE} to a writable directory with free space, "
        "or make room with `charrnn cache --clear`"
    )
    note(message)
    ids = torch.empty(length, dtype=dtype)
    _fill(ids, table, path)
    return CorpusIds(chars=chars, ids=ids, sha256=sha256)


def _write(tmp: Path, header: bytes, table: torch.Tensor, path: Path, length: int) -> None:
    item = table.element_size()
    with open(tmp, "wb") as f:
        f.write(header)
        f.truncate(len(header) + length * item)
        _allocate(f.fileno(), len(header) + length * item)
    mapped = torch.from_file(str(tmp), shared=True, size=len(header) // item + length, dtype=table.dtype)
    _fill(mapped[len(header) // item :], table, path)


def _allocate(fd: int, size: int) -> None:
    """Reserve the file's blocks now, so that a full disk is an OSError here rather than a SIGBUS when a
    page of the mapping is first written."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise


def _fill(ids: torch.Tensor, table: torch.Tensor, path: Path) -> None:
    position = 0
    for _, points in _pieces(path):
        ids[position : position + len(points)] = torch.index_select(table, 0, points)
        position += len(points)


def _read(entry: Path) -> CorpusIds | None:
    """The cached ids, memory-mapped; None when there is no complete entry."""
    read = cache.read_header(entry)
    if read is None:
        return None
    meta, offset = read
    try:
        dtype = DTYPES[meta["dtype"]]
        item = torch.empty(0, dtype=dtype).element_size()
        if entry.stat().st_size != offset + meta["length"] * item:
            return None
        mapped = torch.from_file(str(entry), shared=False, size=offset // item + meta["length"], dtype=dtype)
        return CorpusIds(chars=meta["chars"], ids=mapped[offset // item :], sha256=meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
