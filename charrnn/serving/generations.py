"""One request's samples from a served model's Batcher, read as they come, and stopped when the client leaves.

A model whose state restarts (`ModelConfig.context`, `charrnn.model.bounded_context`) is sampled as
`charrnn.generation.sampling.generate` samples it: its prime is cut to the characters it re-reads, and after
every piece of `context // 2` new characters its state restarts on the characters before. The Batcher carries
each state on, so the restart is a step here: each piece is a stream of its own, prepared from the recent
text and drawing from the generator where the piece before stopped. So a seed still gives the text of
`charrnn sample`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from charrnn.model import bounded_context as context
from charrnn.serving.error_handlers import Refused, busy
from charrnn.serving.registry import Served
from charrnn.serving.request_batching import Batcher, Stream, StreamFailed
from charrnn.settings.config import SampleConfig


async def open_stream(
    batcher: Batcher, prime: str, config: SampleConfig, reserved: bool = False, uniforms=None, hand_on: bool = False
) -> Stream:
    """A stream in the batch: its rows reserved (or 429, unless the request already holds them), its prime read,
    then submitted."""
    if not reserved and not batcher.reserve(config.num_samples):
        raise busy(
            f"this model already generates its limit of {batcher.capacity.limit} samples at once "
            f"({batcher.rows_in_use} now)"
        )
    try:
        stream = await run_in_threadpool(batcher.prepare, prime, config, config.seed, asyncio.get_running_loop())
    except BaseException:
        if not reserved:
            batcher.release(config.num_samples)
        raise
    if uniforms is not None:
        stream.uniforms = uniforms
    stream.hands_on_rows = hand_on
    batcher.submit(stream)
    return stream


class Generation:
    """A request's samples: `updates()` gives each sample's new text as it comes, `cancel()` stops them."""

    def __init__(self, served: Served, prime: str, config: SampleConfig):
        self.batcher = served.batcher
        self.config = config
        self.bound = served.loaded.model.config.context
        self.prime = prime
        self.cancelled = False
        self.stream: Stream | None = None
        if self.bound is not None and config.num_samples > 1:
            raise Refused(
                422,
                f"this model restarts its state every {self.bound} characters, and the server samples it one "
                "sample per request. Send num_samples 1, once for each sample",
            )

    async def start(self) -> Generation:
        if self.bound is None:
            self.stream = await open_stream(self.batcher, self.prime, self.config)
            return self
        reread = context.reread_length(self.bound)
        # What generate() starts from: the prime's last characters, or a newline, or (when the vocabulary has
        # none) the random character the first piece draws and delivers.
        self.recent = self.prime[-reread:] if self.prime else ("\n" if "\n" in self.batcher.vocab.index else "")
        self.drawn = 0
        self.stream = await open_stream(self.batcher, self.recent, self.piece(), hand_on=self.more_after_piece())
        return self

    def piece(self) -> SampleConfig:
        return dataclasses.replace(
            self.config, length=min(context.piece_length(self.bound), self.config.length - self.drawn)
        )

    def more_after_piece(self) -> bool:
        return self.drawn + context.piece_length(self.bound) < self.config.length

    async def updates(self) -> AsyncIterator[list[str]]:
        # Rows a finished piece handed on and no stream holds yet: given back here if the request ends first.
        holding = False
        try:
            while True:
                async for new in self.stream.updates():
                    if self.bound is not None:
                        # Only one sample: `new` holds its text since the update before.
                        self.recent = (self.recent + new[0])[-context.reread_length(self.bound) :]
                    yield new
                if self.bound is None:
                    return
                holding = self.stream.kept_rows
                self.drawn += self.stream.config.length
                if self.cancelled or self.drawn >= self.config.length:
                    return
                uniforms = self.stream.uniforms
                self.stream = await open_stream(
                    self.batcher, self.recent, self.piece(), True, uniforms, self.more_after_piece()
                )
                holding = False
        finally:
            if holding:
                self.batcher.release(self.config.num_samples)

    async def texts(self) -> list[str]:
        """Every sample's new characters, once the last is made."""
        texts = [""] * self.config.num_samples
        async for new in self.updates():
            texts = [t + n for t, n in zip(texts, new)]
        return texts

    def cancel(self) -> None:
        self.cancelled = True
        if self.stream is not None:
            self.stream.cancel()


async def until_disconnect(request: Request, work, on_disconnect: Callable[[], None]):
    """`work`'s result, or None once the client has gone (after calling `on_disconnect`)."""

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            try:
                return task.result()
            except StreamFailed as e:
                raise Refused(503, str(e)) from None
        on_disconnect()
        return None
    finally:
        watch.cancel()
        task.cancel()


def event_stream(events: AsyncIterator[str], seed: int) -> StreamingResponse:
    """Server-sent events as they are made, with the seed that makes the same text again."""
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Seed": str(seed)}
    )
