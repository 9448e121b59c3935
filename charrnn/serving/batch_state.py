"""What a server's batch holds between steps, row by row: each active stream's logits, recurrent state, sampling
options and table of uniform numbers, kept as whole-batch tensors so that a step is one model step and one draw.

Streams join and leave only between steps; each change selects and concatenates rows once, so the steps between
changes touch no stream one by one."""

from __future__ import annotations

from typing import Protocol

import torch

from charrnn.generation.drawing import UNIFORM_CHUNK, RowOptions, Uniforms, pick
from charrnn.generation.sampling import Stepper


class Member(Protocol):
    """What the batch needs of a stream that joins it: its rows after its prime, and its uniforms."""

    rows: int
    logits: torch.Tensor
    layers: list
    options: RowOptions
    uniforms: Uniforms


class BatchState:
    """The rows of the streams being stepped, in the order of `streams`."""

    def __init__(self, single: Stepper, multi: Stepper):
        # generate() steps one sample with the batch-of-one layout and more with the stored one; so does the batch.
        self.single, self.multi = single, multi
        self.streams: list[Member] = []
        self.starts: dict[int, int] = {}
        self.logits: torch.Tensor | None = None
        self.layers: list | None = None
        self.options: RowOptions | None = None
        self.uniforms: torch.Tensor | None = None
        self._refills: dict[int, list[Member]] = {}
        # The batch step at which each stream's current chunk of uniforms began.
        self._origins: dict[int, int] = {}

    def change(self, leaving: set[int], joining: list[Member], step: int) -> torch.Tensor | None:
        """Streams (by id) leave and others join before batch step `step`; the rows kept, or None when all are."""
        staying = [s for s in self.streams if id(s) not in leaving]
        kept = None
        parts = []
        if len(staying) < len(self.streams):
            kept = rows_of(staying, self.starts, self.logits.device)
        if staying:
            parts.append(self._rows(kept))
        for stream in self.streams:
            if id(stream) in leaving:
                # Its uniforms say how far they were read, so that a stream continuing them (a bounded-context
                # model's next piece) reads on where this one stopped, as generate() does.
                stream.uniforms.used = step - self._origins.pop(id(stream))
        for stream in joining:
            uniforms = stream.uniforms
            if uniforms.used == UNIFORM_CHUNK:
                uniforms.chunk, uniforms.used = uniforms.next_chunk(), 0
            # Batch step origin + i reads column i of the chunk; the stream starts at the first unread one.
            origin = step - uniforms.used
            table = torch.roll(uniforms.chunk, origin % UNIFORM_CHUNK, dims=1)
            parts.append((stream.logits, stream.layers, stream.options, table))
            stream.logits = stream.layers = None
            self._origins[id(stream)] = origin
            self._refills.setdefault(origin + UNIFORM_CHUNK, []).append(stream)
        self.streams = staying + joining
        self.starts, start = {}, 0
        for stream in self.streams:
            self.starts[id(stream)], start = start, start + stream.rows
        if not parts:
            self.logits = self.layers = self.options = self.uniforms = None
            self._refills.clear()
            self._origins.clear()
        elif len(parts) == 1:
            self.logits, self.layers, self.options, self.uniforms = parts[0]
        else:
            self.logits = torch.cat([p[0] for p in parts])
            self.layers = concat_rows([p[1] for p in parts])
            self.options = RowOptions.cat([p[2] for p in parts])
            self.uniforms = torch.cat([p[3] for p in parts])
        return kept

    def _rows(self, kept: torch.Tensor | None):
        if kept is None:
            return self.logits, self.layers, self.options, self.uniforms
        return self.logits[kept], select_rows(self.layers, kept), self.options.select(kept), self.uniforms[kept]

    def draw(self, step: int) -> torch.Tensor:
        """Every row's next id at batch step `step`, each from its own stream's uniforms."""
        for stream in self._refills.pop(step, ()):
            start = self.starts.get(id(stream))
            if start is not None:
                # Every column of the stream's table was read since it was filled; the next chunk goes where
                # the same steps modulo UNIFORM_CHUNK read it.
                uniforms = stream.uniforms
                uniforms.chunk, uniforms.used = uniforms.next_chunk(), 0
                self.uniforms[start : start + stream.rows] = torch.roll(uniforms.chunk, step % UNIFORM_CHUNK, dims=1)
                self._origins[id(stream)] = step
                self._refills.setdefault(step + UNIFORM_CHUNK, []).append(stream)
        return pick(self.logits, self.options, self.uniforms[:, step % UNIFORM_CHUNK])

    def advance(self, ids: torch.Tensor) -> None:
        """Step the model on each row's drawn id."""
        stepper = self.single if len(ids) == 1 else self.multi
        self.logits, self.layers = stepper.step(ids, self.layers)


def rows_of(keep: list[Member], starts: dict[int, int], device: torch.device) -> torch.Tensor:
    """The batch rows of the streams in `keep`, in batch order."""
    rows = []
    for stream in keep:
        start = starts[id(stream)]
        rows.extend(range(start, start + stream.rows))
    return torch.tensor(rows, dtype=torch.long, device=device)


def select_rows(layers: list, rows: torch.Tensor) -> list:
    """Stepper's per-layer state (a tensor, or an LSTM's (h, c)) at `rows` of the batch."""
    return [
        tuple(t.index_select(0, rows) for t in state) if isinstance(state, tuple) else state.index_select(0, rows)
        for state in layers
    ]


def concat_rows(states: list[list]) -> list:
    """Several batches' per-layer states as one batch, in order."""
    joined = []
    for layer in zip(*states):
        if isinstance(layer[0], tuple):
            joined.append(tuple(torch.cat(parts) for parts in zip(*layer)))
        else:
            joined.append(torch.cat(layer))
    return joined
