"""Training batches: contiguous streams through the training ids, for truncated back-propagation through time."""

from __future__ import annotations

import torch

from charrnn.data.splits import min_train_chars
from charrnn.errors import CharRNNError
from charrnn.settings.options import wrap_seed


class StreamBatcher:
    """Batches of `batch_size` contiguous streams through the training ids, `seq_len` steps at a time.

    Window w of an epoch continues window w-1 in every stream, so the hidden state carries over
    (truncated back-propagation through time). Each epoch shifts the streams by an offset drawn
    from (seed, epoch), so window boundaries move between epochs; the position is two integers,
    which makes resuming exact. `first` and `count` select streams first..first+count-1 of the
    batch_size-stream layout: one process's share when several train together.
    """

    def __init__(
        self, ids: torch.Tensor, batch_size: int, seq_len: int, seed: int, first: int = 0, count: int | None = None
    ):
        need = min_train_chars(batch_size, seq_len)
        if len(ids) < need:
            raise CharRNNError(
                f"the training split has {len(ids):,} characters, but --batch-size {batch_size} and "
                f"--seq-len {seq_len} need at least {need:,} ({need - len(ids):,} more). "
                "Pass a smaller --batch-size or --seq-len, or a longer text"
            )
        self.ids, self.batch_size, self.seq_len, self.seed = ids, batch_size, seq_len, seed
        self.streams = slice(first, batch_size if count is None else first + count)
        self.epoch, self.window = 0, 0
        self._layout()

    def _layout(self) -> None:
        n, b, t = len(self.ids), self.batch_size, self.seq_len
        max_offset = min(t - 1, n - 1 - b * t)
        # Wrapped to the 64 bits torch takes: --seed may be any of them.
        generator = torch.Generator().manual_seed(wrap_seed(self.seed * 1_000_003 + self.epoch))
        offset = int(torch.randint(0, max_offset + 1, (1,), generator=generator))
        stream_len = (n - 1 - offset) // b
        self.windows_per_epoch = stream_len // t
        self._starts = (offset + torch.arange(b) * stream_len)[self.streams]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.window = state["epoch"], state["window"]
        self._layout()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Inputs and targets, both (streams, seq_len), and whether a new epoch starts here."""
        if self.window == self.windows_per_epoch:
            self.epoch, self.window = self.epoch + 1, 0
            self._layout()
        starts = self._starts + self.window * self.seq_len
        index = starts[:, None] + torch.arange(self.seq_len + 1)[None, :]
        chunk = self.ids[index].long()
        fresh = self.window == 0
        self.window += 1
        return chunk[:, :-1], chunk[:, 1:], fresh
