"""A request's stream of samples, made by the stepping thread and read from the event loop that asked for it, and
the `Waker` that carries the stepping thread's output to one loop's streams in as few wake-ups as it can."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator

import torch

from charrnn.generation.drawing import RowOptions, Uniforms
from charrnn.settings.config import SampleConfig

# Deliveries to one event loop's streams are at least DELIVERY_INTERVAL_S apart, and further apart when the loop
# has more streams than MAX_EVENTS_PER_S allows at that pace. Each delivery costs the loop (and every client) one
# event per stream, whatever its length: one per character would take more CPU than the stepping. A hundredth
# of a second is finer than a screen redraws text.
DELIVERY_INTERVAL_S = 0.01
MAX_EVENTS_PER_S = 1600


class StreamFailed(Exception):
    """A stream ended before its last character; the message says why and what to do."""


class Waker:
    """Hands the stepping thread's output to the streams of one event loop. At most one call waits in the loop at
    a time, whatever the number of streams, and deliveries are paced (DELIVERY_INTERVAL_S, MAX_EVENTS_PER_S): a
    stream gets every character made since the last delivery at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, chars: list[str]):
        # Weakly, so that a batcher that outlives a loop (a test's, say) lets it go.
        self._loop = weakref.ref(loop)
        self._chars = chars
        self._lock = threading.Lock()
        # ("step", layout, ids), ("text", stream, texts) or ("end", stream, error), in the order they happened.
        self._records: list[tuple] = []
        self._scheduled = False
        self._delivered_at = float("-inf")  # read and written on the loop only
        # How many of the batch's streams read from this loop, set by the stepping thread when the batch changes.
        self.streams = 0

    def push(self, record: tuple) -> None:
        with self._lock:
            self._records.append(record)
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the event loop is gone")
            loop.call_soon_threadsafe(self._deliver_soon, loop)
        except RuntimeError:  # the event loop is closed: nobody is left to read
            for stream in self._streams_of(self._take()):
                stream.cancel()

    def _take(self) -> list[tuple]:
        with self._lock:
            records, self._records, self._scheduled = self._records, [], False
        return records

    def _streams_of(self, records: list[tuple]) -> set[Stream]:
        streams = set()
        for kind, subject, _ in records:
            streams.update((s for s, _ in subject) if kind == "step" else (subject,))
        return {s for s in streams if s.waker is self}

    def _deliver_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = max(DELIVERY_INTERVAL_S, self.streams / MAX_EVENTS_PER_S)
        wait = self._delivered_at + interval - loop.time()
        if wait > 0:
            loop.call_later(wait, self._deliver, loop)
        else:
            self._deliver(loop)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        self._delivered_at = loop.time()
        records, i = self._take(), 0
        while i < len(records):
            kind, subject, payload = records[i]
            i += 1
            if kind == "text":
                subject.receive(payload)
            elif kind == "end":
                subject.finish(payload)
            else:
                steps = [payload]
                while i < len(records) and records[i][0] == "step" and records[i][1] is subject:
                    steps.append(records[i][2])
                    i += 1
                self._deliver_steps(subject, steps)

    def _deliver_steps(self, layout: list[tuple[Stream, int]], steps: list[torch.Tensor]) -> None:
        rows = torch.stack(steps, 1).tolist()
        lookup = self._chars.__getitem__
        for stream, start in layout:
            if stream.waker is self:
                stream.receive(["".join(map(lookup, row)) for row in rows[start : start + stream.rows]])


class Stream:
    """One request's samples as the stepping thread makes them, read from the event loop that asked for them."""

    def __init__(self, waker: Waker, config: SampleConfig, on_cancel):
        self.config = config
        self.rows = config.num_samples
        self.waker = waker
        # Set by the stepping thread once the stream has left the batch and given back its rows.
        self.ended = False
        # A request made of several streams in turn (a bounded-context model's pieces) keeps its rows from one to
        # the next: a stream that hands them on and reaches its last character leaves them reserved (kept_rows).
        self.hands_on_rows = False
        self.kept_rows = False
        # Filled by Batcher.prepare, handed to the batch when the stream joins it.
        self.logits: torch.Tensor | None = None
        self.layers: list | None = None
        self.options: RowOptions | None = None
        self.uniforms: Uniforms | None = None
        self.ready = asyncio.Event()
        self._on_cancel = on_cancel
        self._new: list[list[str]] = [[] for _ in range(self.rows)]
        self._finished = False
        self._error: str | None = None

    def cancel(self) -> None:
        """Leave the batch at its next step (nothing happens once the stream has ended)."""
        if not self.ended:
            self._on_cancel(self)

    def receive(self, texts: list[str]) -> None:
        """Called on the stream's event loop: new text for each sample."""
        for sample, text in zip(self._new, texts):
            sample.append(text)
        self.ready.set()

    def finish(self, error: str | None) -> None:
        """Called on the stream's event loop: the stream has ended, with an error or after its last character."""
        self._finished = True
        self._error = self._error or error
        self.ready.set()

    async def updates(self) -> AsyncIterator[list[str]]:
        """Each sample's new text since the last update, until the last character."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            new = ["".join(sample) for sample in self._new]
            self._new = [[] for _ in range(self.rows)]
            if any(new):
                yield new
            if self._error is not None:
                raise StreamFailed(self._error)
            if self._finished:
                return

    async def texts(self) -> list[str]:
        """Every sample's new characters, once the stream has ended."""
        texts = [""] * self.rows
        async for new in self.updates():
            texts = [t + n for t, n in zip(texts, new)]
        return texts
