"""Generation requests that run at the same time, stepped together: one thread runs every active stream's rows
through one model step and one batched draw per character (`BatchState`), and streams join and leave the batch
between steps.

Each stream keeps its own options and its own seeded torch.Generator, whose uniforms the batch reads from a table
(`charrnn.generation.drawing`); its prime is read as `generate` reads it, alone. So a stream that steps alone
gives exactly `generate`'s text, what `charrnn sample` prints. In a batch with others its rows go through a larger
matrix product, which MKL may round differently in the last bit of a logit; the text is then the same unless two
characters' chances at a draw are within that rounding.

The stepping thread touches no stream one by one between joins and leaves: each step's ids go to a `Waker` per
event loop, which turns them into every stream's text once per wake-up of the loop, not once per character."""

from __future__ import annotations

import asyncio
import threading
import weakref

import torch

from charrnn.data.vocabulary import Vocabulary
from charrnn.generation.drawing import RowOptions, Uniforms
from charrnn.generation.sampling import Stepper, read_prime, require_finite_weights
from charrnn.model.network import CharRNN
from charrnn.serving.batch_state import BatchState
from charrnn.serving.capacity import Capacity
from charrnn.serving.streams import Stream, StreamFailed, Waker
from charrnn.settings.config import SampleConfig

# StreamFailed is what a stream's reader catches; the app imports it from here, with the Batcher.
__all__ = ["REQUEST_PRIME_HINT", "SHUTDOWN_MESSAGE", "Batcher", "Stream", "StreamFailed"]

# A request names its fields, not the command line's flags.
REQUEST_PRIME_HINT = "Use only characters of the model's vocabulary in the prime (GET /v1/model lists them)"
SHUTDOWN_MESSAGE = "the server is shutting down. Retry the request when it is back"


class Batcher:
    """The stepping thread, the streams it steps, and how many sample rows may be active at once."""

    def __init__(self, model: CharRNN, vocab: Vocabulary, capacity: int):
        require_finite_weights(model)
        self.model = model.eval()
        self.vocab = vocab
        self.capacity = Capacity(capacity)
        self.device = next(model.parameters()).device
        self.steps = 0
        self._state = BatchState(Stepper(model, 1), Stepper(model, 2))
        self._lock = threading.Condition()
        self._joining: list[Stream] = []
        self._cancelled: list[Stream] = []
        # Streams by the batch step after their last character.
        self._ends: dict[int, list[Stream]] = {}
        self._layout: list[tuple[Stream, int]] = []
        self._layout_wakers: list[Waker] = []
        self._closed = False
        self._wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Waker] = weakref.WeakKeyDictionary()
        self._thread = threading.Thread(target=self._run, name="charrnn-stepper", daemon=True)
        self._thread.start()

    @property
    def rows_in_use(self) -> int:
        return self.capacity.in_use

    def reserve(self, rows: int) -> bool:
        """Take `rows` of the capacity, or none when that many are not free."""
        return self.capacity.reserve(rows)

    def release(self, rows: int) -> None:
        self.capacity.release(rows)

    def prepare(self, prime: str, config: SampleConfig, seed: int, loop: asyncio.AbstractEventLoop) -> Stream:
        """A stream after its prime, read as generate() reads it. Runs in a worker thread, so a long prime
        does not hold up the streams being stepped; `submit` then lets it join them."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with self._lock:
            waker = self._wakers.setdefault(loop, Waker(loop, self.vocab.chars))
        stream = Stream(waker, config, self._cancel)
        n = config.num_samples
        stepper = self._state.single if n == 1 else Stepper(self.model, n)
        with torch.inference_mode():
            first, _, stream.logits, stream.layers = read_prime(
                stepper, self.vocab, prime, generator, REQUEST_PRIME_HINT
            )
            stream.options = RowOptions.of(config, n, len(self.vocab), self.device)
            stream.uniforms = Uniforms(generator, n)
        if first:
            waker.push(("text", stream, [first] * n))
        return stream

    def submit(self, stream: Stream) -> None:
        """Let a prepared stream join the batch at the next step; its rows must be reserved."""
        with self._lock:
            if self._closed:
                self._end([stream], SHUTDOWN_MESSAGE)
            elif stream.config.length == 0:
                self._end([stream])
            else:
                self._joining.append(stream)
                self._lock.notify()

    def close(self) -> None:
        """Stop stepping; streams still running end with an error."""
        self.capacity.close()
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()

    def _cancel(self, stream: Stream) -> None:
        with self._lock:
            self._cancelled.append(stream)

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    while not (self._joining or self._state.streams or self._closed):
                        self._lock.wait()
                    if self._closed:
                        break
                    joining, self._joining = self._joining, []
                try:
                    self._step(joining)
                except Exception as e:  # a failed step must not leave its streams' readers waiting for ever
                    self._end(self._state.streams + joining, f"generation failed ({type(e).__name__}: {e}). Retry")
                    self._change(set(self._state.streams), [])
        with self._lock:
            self._end(self._state.streams + self._joining, SHUTDOWN_MESSAGE)

    def _end(self, streams: list[Stream], error: str | None = None, finished: bool = False) -> None:
        """The streams leave: their readers learn of it, and their rows are free again, except those of a stream
        that `finished` and hands its rows on to the request's next stream."""
        with self._lock:
            for stream in streams:
                if not stream.ended:
                    stream.ended = True
                    stream.kept_rows = finished and stream.hands_on_rows
                    if not stream.kept_rows:
                        self.capacity.release(stream.rows)
                    stream.waker.push(("end", stream, error))

    def _change(self, leaving: set[Stream], joining: list[Stream]) -> torch.Tensor | None:
        """Streams leave and join between steps; the rows kept, or None when all are."""
        for stream in joining:
            self._ends.setdefault(self.steps + stream.config.length, []).append(stream)
        kept = self._state.change({id(s) for s in leaving}, joining, self.steps)
        if not self._state.streams:
            self._ends.clear()  # only streams that have ended are left in it
        self._layout = [(s, self._state.starts[id(s)]) for s in self._state.streams]
        self._layout_wakers = list({s.waker: None for s in self._state.streams})
        for waker in self._layout_wakers:
            waker.streams = sum(s.waker is waker for s in self._state.streams)
        return kept

    def _step(self, joining: list[Stream]) -> None:
        """Draw one character for every stream, then step those that go on."""
        with self._lock:
            cancelled, self._cancelled = set(self._cancelled), []
        if cancelled:
            self._end(list(cancelled))
            joining = [s for s in joining if s not in cancelled]
        if joining or cancelled:
            self._change(cancelled, joining)
        if not self._state.streams:
            return
        ids = self._state.draw(self.steps)
        for waker in self._layout_wakers:
            waker.push(("step", self._layout, ids))
        self.steps += 1
        ending = [s for s in self._ends.pop(self.steps, ()) if not s.ended]
        if ending:
            # The batch lets them go before their readers hear of it, so that what they read of a stream
            # (how far its uniforms were drawn) is final.
            kept = self._change(set(ending), [])
            self._end(ending, finished=True)
            if not self._state.streams:
                return
            ids = ids if kept is None else ids[kept]
        self._state.advance(ids)
