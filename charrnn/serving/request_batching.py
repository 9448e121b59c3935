"""Generation requests that run at the same time, stepped together: one thread runs every active stream's
rows through one `Stepper` call per character, and streams join and leave the batch between steps.

Each stream keeps its own SampleConfig and its own seeded torch.Generator: `charrnn.generation.sampling.choose`
draws its characters from its own rows of logits with its own generator, and its prime is read as `generate` reads
it, alone. So a stream that steps alone gives exactly `generate`'s text, what `charrnn sample` prints. In a batch
with others its rows go through a larger matrix product, which MKL may round differently in the last bit of a logit;
the text is then the same unless two characters' chances at a draw are within that rounding."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator

import torch

from charrnn.data.vocabulary import Vocabulary
from charrnn.generation.sampling import Stepper, choose, require_finite_weights
from charrnn.model.network import CharRNN
from charrnn.settings.config import SampleConfig

PRIME_HINT = "Use only characters of the model's vocabulary in the prime (GET /v1/model lists them)"
SHUTDOWN_MESSAGE = "the server is shutting down. Retry the request when it is back"


class StreamFailed(Exception):
    """A stream ended before its last character; the message says why and what to do."""


class Waker:
    """Wakes the readers of streams on one event loop. At most one call waits in the loop at a time, whatever
    the number of streams: a loop busier than the stepping gets many characters per wake-up, not a backlog."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        # Weakly, so that a batcher that outlives a loop (a test's, say) lets it go.
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._pending: set[Stream] = set()
        self._scheduled = False

    def wake(self, stream: Stream) -> None:
        with self._lock:
            self._pending.add(stream)
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the event loop is gone")
            loop.call_soon_threadsafe(self._wake_pending)
        except RuntimeError:  # the event loop is closed: nobody is left to read
            for waiting in self._take():
                waiting.cancel()

    def _take(self) -> set[Stream]:
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, set(), False
        return pending

    def _wake_pending(self) -> None:
        for stream in self._take():
            stream.ready.set()


class Stream:
    """One request's samples as the stepping thread makes them, read from the event loop that asked for them."""

    def __init__(self, waker: Waker, config: SampleConfig, generator: torch.Generator):
        self.config = config
        self.rows = config.num_samples
        self.generator = generator
        self.remaining = config.length
        # Set from the event loop, read by the stepping thread at its next step.
        self.cancelled = False
        # Set by the stepping thread once the stream has left the batch and given back its rows.
        self.ended = False
        self.logits: torch.Tensor | None = None
        self.layers: list | None = None
        self.ready = asyncio.Event()
        self._waker = waker
        self._lock = threading.Lock()
        self._new: list[list[str]] = [[] for _ in range(self.rows)]
        self._finished = False
        self._error: str | None = None

    def cancel(self) -> None:
        self.cancelled = True

    def deliver(self, chars: list[str] | None = None, finished: bool = False, error: str | None = None) -> None:
        """Called by the stepping thread: one character per sample, and/or the end of the stream."""
        with self._lock:
            for sample, char in zip(self._new, chars or ()):
                sample.append(char)
            self._finished = self._finished or finished or error is not None
            self._error = self._error or error
        self._waker.wake(self)

    async def updates(self) -> AsyncIterator[list[str]]:
        """Each sample's new text since the last update, until the last character."""
        while True:
            await self.ready.wait()
            with self._lock:
                self.ready.clear()
                new = ["".join(sample) for sample in self._new]
                self._new = [[] for _ in range(self.rows)]
                finished, error = self._finished, self._error
            if any(new):
                yield new
            if error is not None:
                raise StreamFailed(error)
            if finished:
                return

    async def texts(self) -> list[str]:
        """Every sample's new characters, once the stream has ended."""
        texts = [""] * self.rows
        async for new in self.updates():
            texts = [t + n for t, n in zip(texts, new)]
        return texts


class Batcher:
    """The stepping thread, the streams it steps, and how many sample rows may be active at once."""

    def __init__(self, model: CharRNN, vocab: Vocabulary, capacity: int):
        require_finite_weights(model)
        self.model = model.eval()
        self.vocab = vocab
        self.capacity = capacity
        self.device = next(model.parameters()).device
        # generate() steps one sample with the batch-of-one layout and more with the stored one; so does the batch.
        self.single = Stepper(model, 1)
        self.multi = Stepper(model, 2)
        self.steps = 0
        self._in_use = 0
        self._lock = threading.Condition()
        self._joining: list[Stream] = []
        self._streams: list[Stream] = []
        self._logits: torch.Tensor | None = None
        self._layers: list | None = None
        self._closed = False
        self._wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Waker] = weakref.WeakKeyDictionary()
        self._thread = threading.Thread(target=self._run, name="charrnn-stepper", daemon=True)
        self._thread.start()

    @property
    def rows_in_use(self) -> int:
        return self._in_use

    def reserve(self, rows: int) -> bool:
        """Take `rows` of the capacity, or none when that many are not free."""
        with self._lock:
            if self._closed or self._in_use + rows > self.capacity:
                return False
            self._in_use += rows
            return True

    def release(self, rows: int) -> None:
        with self._lock:
            self._in_use -= rows

    def prepare(self, prime: str, config: SampleConfig, seed: int, loop: asyncio.AbstractEventLoop) -> Stream:
        """A stream after its prime, read as generate() reads it. Runs in a worker thread, so a long prime
        does not hold up the streams being stepped; `submit` then lets it join them."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with self._lock:
            waker = self._wakers.setdefault(loop, Waker(loop))
        stream = Stream(waker, config, generator)
        n = config.num_samples
        with torch.inference_mode():
            if not prime:
                if "\n" in self.vocab.index:
                    prime = "\n"
                else:
                    index = int(torch.randint(len(self.vocab), (1,), generator=generator, device=self.device))
                    prime = self.vocab.chars[index]
                    stream.deliver([prime] * n)
            ids = self.vocab.encode(prime, fix=PRIME_HINT, what="the prime").long().to(self.device)
            ids = ids.unsqueeze(0).expand(n, -1)
            stepper = self.single if n == 1 else Stepper(self.model, n)
            if ids.shape[1] == 1:
                stream.logits, stream.layers = stepper.step(ids[:, 0], stepper.zero_state())
            else:
                logits, state = self.model(ids)
                stream.logits, stream.layers = logits[:, -1], stepper.split_state(state)
        return stream

    def submit(self, stream: Stream) -> None:
        """Let a prepared stream join the batch at the next step; its rows must be reserved."""
        with self._lock:
            if self._closed:
                self._end([stream], SHUTDOWN_MESSAGE)
            elif stream.remaining == 0:
                self._end([stream])
            else:
                self._joining.append(stream)
                self._lock.notify()

    def close(self) -> None:
        """Stop stepping; streams still running end with an error."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    while not (self._joining or self._streams or self._closed):
                        self._lock.wait()
                    if self._closed:
                        break
                    joining, self._joining = self._joining, []
                try:
                    self._step(joining)
                except Exception as e:  # a failed step must not leave its streams' readers waiting for ever
                    self._end(self._streams + joining, f"generation failed ({type(e).__name__}: {e}). Retry")
                    self._streams, self._logits, self._layers = [], None, None
        with self._lock:
            self._end(self._streams + self._joining, SHUTDOWN_MESSAGE)

    def _end(self, streams: list[Stream], error: str | None = None) -> None:
        """The streams leave: their readers learn of it, and their rows are free again."""
        with self._lock:
            for stream in streams:
                if not stream.ended:
                    stream.ended = True
                    self._in_use -= stream.rows
                    stream.deliver(finished=True, error=error)

    def _step(self, joining: list[Stream]) -> None:
        """Draw one character for every stream, then step those that go on."""
        # Read once: the event loop may cancel a stream while this step runs.
        cancelled = {id(s) for s in self._streams if s.cancelled}
        staying = [s for s in self._streams if id(s) not in cancelled]
        if joining or cancelled:
            self._end([s for s in self._streams if id(s) in cancelled])
            kept = rows_of(self._streams, lambda s: id(s) not in cancelled, self.device)
            parts = [(self._logits[kept], select_rows(self._layers, kept))] if staying else []
            parts += [(s.logits, s.layers) for s in joining]
            for s in joining:
                s.logits = s.layers = None
            self._streams = staying + joining
            if not self._streams:
                self._logits, self._layers = None, None
                return
            self._logits = torch.cat([logits for logits, _ in parts])
            self._layers = concat_rows([layers for _, layers in parts])
        ids = self._draw()
        start, chars = 0, [self.vocab.chars[i] for i in ids.tolist()]
        for stream in self._streams:
            stream.remaining -= 1
            stream.deliver(chars[start : start + stream.rows])
            start += stream.rows
        self.steps += 1
        going = rows_of(self._streams, lambda s: s.remaining > 0, self.device)
        self._end([s for s in self._streams if s.remaining == 0])
        self._streams = [s for s in self._streams if s.remaining > 0]
        if not self._streams:
            self._logits, self._layers = None, None
            return
        layers = self._layers
        if len(going) < len(ids):
            ids, layers = ids[going], select_rows(layers, going)
        stepper = self.single if len(ids) == 1 else self.multi
        self._logits, self._layers = stepper.step(ids, layers)

    def _draw(self) -> torch.Tensor:
        """The next id of every row, each stream's drawn from its own rows with its own generator."""
        ids, start = [], 0
        for stream in self._streams:
            ids.append(choose(self._logits[start : start + stream.rows], stream.config, stream.generator))
            start += stream.rows
        return torch.cat(ids)


def rows_of(streams: list[Stream], keep, device: torch.device) -> torch.Tensor:
    """The batch rows of the streams that `keep` accepts."""
    rows, start = [], 0
    for stream in streams:
        if keep(stream):
            rows.extend(range(start, start + stream.rows))
        start += stream.rows
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
