"""Characters to integer ids and back: a corpus's vocabulary."""

from __future__ import annotations

from collections import Counter

import torch

from charrnn.errors import CharRNNError

SKIP_HINT = "Remove them, or pass --skip-unknown to leave them out"


class Vocabulary:
    """The sorted distinct characters of a corpus, and the maps between them and ids."""

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.dtype = smallest_dtype(len(self.chars))

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> Counter:
        return Counter(c for c in text if c not in self.index)

    def encode(
        self, text: str, skip_unknown: bool = False, fix: str = SKIP_HINT, what: str = "the text"
    ) -> torch.Tensor:
        """Ids of `text` in the smallest integer dtype that holds the vocabulary."""
        if not text:
            return torch.empty(0, dtype=self.dtype)
        # A lone surrogate (a byte that was not UTF-8) keeps its code point: a character the model never saw.
        codepoints = torch.frombuffer(bytearray(text.encode("utf-32-le", "surrogatepass")), dtype=torch.int32)
        known = torch.tensor([ord(c) for c in self.chars] or [0], dtype=torch.int64)
        table = torch.full((max(int(codepoints.max()), int(known.max())) + 1,), -1, dtype=torch.int32)
        table[known[: len(self.chars)]] = torch.arange(len(self.chars), dtype=torch.int32)
        ids = table[codepoints.long()]
        missing = ids < 0
        if bool(missing.any()):
            if not skip_unknown:
                raise self.unknown_error(self.unknown(text), fix, what)
            ids = ids[~missing]
        return ids.to(self.dtype)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    @staticmethod
    def unknown_error(counts: Counter, fix: str, what: str) -> CharRNNError:
        shown = ", ".join(f"{c!r} ({n}x)" for c, n in counts.most_common(10))
        more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
        return CharRNNError(f"{what} has {sum(counts.values())} characters the model never saw: {shown}{more}. {fix}")


def smallest_dtype(vocab_size: int) -> torch.dtype:
    if vocab_size <= 256:
        return torch.uint8
    if vocab_size <= 32768:
        return torch.int16
    return torch.int32
