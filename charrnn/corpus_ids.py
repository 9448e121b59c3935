"""A corpus file as integer ids: encoded once, cached beside it, memory-mapped.

The cache `<file>.<sha>.ids` is keyed by the SHA-256 of the file's bytes and holds the text's own
vocabulary (sorted characters) and its ids in the smallest integer dtype that holds it. The file
is read in pieces, so no step holds the whole text, let alone one Python object per character.
When the file's directory is not writable the cache goes to $XDG_CACHE_HOME/charrnn.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn import corpus
from charrnn.data import SKIP_HINT, Vocabulary, smallest_dtype
from charrnn.errors import CharRNNError

# Small pieces keep each step's buffers in cache and reuse freed memory: with 16 MB pieces, encoding
# a 200 MB file ran 2.6x slower.
PIECE_BYTES = 1 << 20
MAX_CODE_POINT = 0x10FFFF
MAGIC = "charrnn-ids 1"
# The ids start at a multiple of the page size, which every dtype's item size divides.
HEADER_ALIGN = 4096
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


def load(data: str) -> CorpusIds:
    """The ids of `--data` (a known corpus name or a path), from the cache or encoded into it."""
    path = corpus.resolve(data)
    key = _file_sha256(path)[:16]
    for cache in _cache_paths(path, key):
        if cache.is_file():
            loaded = _read(cache)
            if loaded is not None:
                return loaded
    return _encode(path, _cache_paths(path, key))


def encode(data: str, cache_dir: Path) -> CorpusIds:
    """Encode `--data` afresh into `cache_dir`, whatever is cached already: what `charrnn bench --data` times."""
    path = corpus.resolve(data)
    return _encode(path, [cache_dir / f"{path.name}.{_file_sha256(path)[:16]}.ids"])


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(PIECE_BYTES):
                digest.update(block)
    except OSError as e:
        raise CharRNNError(f"cannot read {path} ({e.strerror}). Check the path and its permissions") from None
    return digest.hexdigest()


def _cache_paths(path: Path, key: str) -> list[Path]:
    name = f"{path.name}.{key}.ids"
    fallback = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charrnn" / name
    return [path.parent / name, fallback]


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


def _encode(path: Path, caches: list[Path]) -> CorpusIds:
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
    meta = {"sha256": digest.hexdigest(), "chars": chars, "dtype": str(dtype).removeprefix("torch."), "length": length}
    header = f"{MAGIC}\n{json.dumps(meta)}\n".encode()
    header += b" " * (-len(header) % HEADER_ALIGN)
    for cache in caches:
        try:
            _write(cache, header, table, path, length)
        except OSError:
            continue
        for stale in cache.parent.glob(f"{path.name}.*.ids"):
            if stale != cache:
                stale.unlink(missing_ok=True)
        loaded = _read(cache)
        if loaded is not None:
            return loaded
    raise CharRNNError(
        f"cannot write the encoded cache of {path} beside it or under $XDG_CACHE_HOME/charrnn. "
        "Free some disk space or make one of them writable"
    )


def _write(cache: Path, header: bytes, table: torch.Tensor, path: Path, length: int) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
    item = table.element_size()
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.truncate(len(header) + length * item)
        mapped = torch.from_file(str(tmp), shared=True, size=len(header) // item + length, dtype=table.dtype)
        position = len(header) // item
        for _, points in _pieces(path):
            ids = torch.index_select(table, 0, points)
            mapped[position : position + len(ids)] = ids
            position += len(ids)
        del mapped
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)


def _read(cache: Path) -> CorpusIds | None:
    """The cached ids, memory-mapped; None when the file is not a complete cache."""
    try:
        with open(cache, "rb") as f:
            if f.readline().decode(errors="replace").strip() != MAGIC:
                return None
            meta = json.loads(f.readline())
            header = f.tell() + (-f.tell() % HEADER_ALIGN)
        dtype = DTYPES[meta["dtype"]]
        item = torch.empty(0, dtype=dtype).element_size()
        if cache.stat().st_size != header + meta["length"] * item:
            return None
        mapped = torch.from_file(str(cache), shared=False, size=header // item + meta["length"], dtype=dtype)
    except (OSError, ValueError, KeyError):
        return None
    return CorpusIds(chars=meta["chars"], ids=mapped[header // item :], sha256=meta["sha256"])
