"""The server's batch, driven without HTTP: every stream's text is what `generate` (and so `charrnn sample`)
gives for its seed and options, whoever else is in the batch and whenever they join or leave."""

import asyncio
from types import SimpleNamespace

import pytest
import torch

from charrnn.api import load
from charrnn.data.vocabulary import Vocabulary
from charrnn.generation.drawing import UNIFORM_CHUNK
from charrnn.generation.sampling import generate
from charrnn.model.network import CharRNN
from charrnn.serving.request_batching import SHUTDOWN_MESSAGE, Batcher, StreamFailed
from charrnn.settings.config import ModelConfig, SampleConfig


def alone(loaded, prime, config) -> list[str]:
    samples = [""] * config.num_samples
    for chars in generate(loaded.model, loaded.vocab, config, prime, config.seed):
        samples = [s + c for s, c in zip(samples, chars)]
    return samples


async def start(batcher, prime, config):
    assert batcher.reserve(config.num_samples)
    stream = await asyncio.to_thread(batcher.prepare, prime, config, config.seed, asyncio.get_running_loop())
    batcher.submit(stream)
    return stream


async def after(stream, characters: int) -> str:
    """The first sample's text once it holds at least `characters` new characters (the stream goes on)."""
    text = ""
    async for new in stream.updates():
        text += new[0]
        if len(text) >= characters:
            return text
    return text


@pytest.fixture
def batched(tiny_run):
    loaded = load(tiny_run)
    batcher = Batcher(loaded.model, loaded.vocab, 64)
    yield loaded, batcher
    batcher.close()


OPTIONS = [
    {"temperature": 1.0},
    {"temperature": 0.0},
    {"temperature": 0.7, "top_k": 3},
    {"temperature": 1.3, "top_p": 0.6},
    {"temperature": 0.9, "top_k": 5, "top_p": 0.9},
    {"temperature": 1.0, "num_samples": 3},
]


def test_streams_in_one_batch_keep_their_own_text(batched):
    loaded, batcher = batched
    configs = [SampleConfig(length=90 + 13 * i, seed=i, **OPTIONS[i % len(OPTIONS)]) for i in range(12)]
    primes = ["", "A", "Alice ", "The queen said "]

    async def run():
        streams = [await start(batcher, primes[i % 4], c) for i, c in enumerate(configs)]
        return await asyncio.gather(*(s.texts() for s in streams))

    assert asyncio.run(run()) == [alone(loaded, primes[i % 4], c) for i, c in enumerate(configs)]
    assert batcher.rows_in_use == 0


def test_streams_that_join_and_leave_mid_batch_keep_their_text(batched):
    loaded, batcher = batched
    # Longer than a chunk of uniforms, joining at steps that are not multiples of it.
    long = SampleConfig(length=UNIFORM_CHUNK * 2 + 40, seed=1, top_p=0.9)
    short = SampleConfig(length=30, seed=2, temperature=0.5)
    late = SampleConfig(length=UNIFORM_CHUNK + 7, seed=3, top_k=4, num_samples=2)

    async def run():
        first = await start(batcher, "Alice ", long)
        head = await after(first, 50)
        second = await start(batcher, "", short)
        second_text = await second.texts()
        third = await start(batcher, "The ", late)
        rest, third_text = await asyncio.gather(first.texts(), third.texts())
        return [head + rest[0]], second_text, third_text

    assert asyncio.run(run()) == (alone(loaded, "Alice ", long), alone(loaded, "", short), alone(loaded, "The ", late))


def test_a_cancelled_stream_frees_its_rows_and_the_others_go_on(batched):
    loaded, batcher = batched
    leaving = SampleConfig(length=100_000, seed=5)
    staying = SampleConfig(length=UNIFORM_CHUNK + 60, seed=6, top_k=3)

    async def run():
        gone = await start(batcher, "A", leaving)
        kept = await start(batcher, "A", staying)
        await after(gone, 20)
        gone.cancel()
        text = await kept.texts()
        for _ in range(500):
            if batcher.rows_in_use == 0:
                break
            await asyncio.sleep(0.01)
        return text

    assert asyncio.run(run()) == alone(loaded, "A", staying)
    assert batcher.rows_in_use == 0


def test_a_vocabulary_without_newline_starts_both_ways_from_the_same_random_character():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=5, hidden_size=8, embed_size=3))
    loaded = SimpleNamespace(model=model, vocab=Vocabulary(list("abcde")))
    batcher = Batcher(model, loaded.vocab, 4)
    config = SampleConfig(length=40, seed=11)

    async def run():
        return await (await start(batcher, "", config)).texts()

    try:
        assert asyncio.run(run()) == alone(loaded, "", config)
    finally:
        batcher.close()


def test_streams_still_running_at_close_end_with_an_error(batched):
    loaded, batcher = batched

    async def run():
        stream = await start(batcher, "A", SampleConfig(length=100_000, seed=1))
        await after(stream, 5)
        await asyncio.to_thread(batcher.close)
        with pytest.raises(StreamFailed, match=SHUTDOWN_MESSAGE):
            await stream.texts()

    asyncio.run(run())
    assert batcher.rows_in_use == 0 and not batcher.reserve(1)
