"""What every tool of the benchmark shares: the split it reads, how a recurrent model is scored, how a tool
reports.

A cell's split folder holds charrnn's 90/5/5 split of the text as charrnn encodes it (`split.pt`: the ids and
the characters they stand for) and the three splits as text (`train.txt`, `val.txt`, `test.txt`), so that
every tool trains, validates and is tested on the same characters.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

SPLIT = "split.pt"
VAL_CHARS = 32_768  # validation reads this much of the validation split, as charrnn's does by default
VAL_EVERY_S = 30.0
WARMUP_CHARS = 1000  # every scored stream first reads the characters before it, as charrnn's scoring does
STREAMS = 16
CHUNK = 512

Forward = Callable[[torch.Tensor, object], tuple[torch.Tensor, object]]  # (batch, time) ids, state -> logits, state


def read_split(folder: Path) -> dict:
    """{"ids": int64 tensor, "chars": list, "train"/"val"/"test": (start, end)}."""
    return torch.load(folder / SPLIT)


@torch.no_grad()
def bits_per_char(forward: Forward, ids: torch.Tensor, start: int, end: int) -> float:
    """Bits per character of ids[start:end], each character predicted from all before it in its stream: the
    range cut into STREAMS contiguous streams read side by side, each first reading the WARMUP_CHARS before it
    (the text's very first character, with nothing before it, is not scored)."""
    length = math.ceil((end - start) / STREAMS)
    rows = []
    for first in range(start, end, length):
        last = min(first + length, end)
        begin = max(0, first - WARMUP_CHARS)
        rows.append((ids[begin : last - 1], ids[begin + 1 : last], first - begin - 1))
    width = max(len(inputs) for inputs, _, _ in rows)
    inputs = torch.zeros(len(rows), width, dtype=torch.long)
    targets = torch.zeros(len(rows), width, dtype=torch.long)
    counted = torch.zeros(len(rows), width, dtype=torch.bool)
    for row, (x, y, skip) in enumerate(rows):
        inputs[row, : len(x)], targets[row, : len(y)] = x, y
        counted[row, max(skip, 0) : len(y)] = True
    total, state = 0.0, None
    for at in range(0, width, CHUNK):
        logits, state = forward(inputs[:, at : at + CHUNK], state)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets[:, at : at + CHUNK].flatten(), reduction="none")
        total += float(loss[counted[:, at : at + CHUNK].flatten()].sum())
    return total / math.log(2) / int(counted.sum())


def cosine_lr(peak: float, floor: float, fraction: float) -> float:
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))


class Clock:
    """Seconds since the tool started training, and whether a validation is due."""

    def __init__(self, budget_s: float):
        self.budget_s, self.began, self.last_val = budget_s, time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def validation_due(self) -> bool:
        if self.elapsed() - self.last_val >= VAL_EVERY_S:
            self.last_val = self.elapsed()
            return True
        return False


def report(**fields) -> None:
    """The one line a tool prints last: what run.py reads."""
    print(json.dumps(fields), flush=True)
