"""Sampling rates for `charrnn bench`, each beside its bounds: the bare cell loop, the matrix-vector products
a batch-1 step must stream, and the matrix products a batched step must compute."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from charrnn.data.vocabulary import Vocabulary
from charrnn.generation.sampling import choose, column_major, generate
from charrnn.model.network import CharRNN, layer_weights
from charrnn.settings.config import SampleConfig
from charrnn.studies.bench_report import BenchShape
from charrnn.studies.bench_timing import alternating_seconds_per_call

SAMPLE_LENGTH = 200


def alphabet(vocab_size: int) -> str:
    """Newline, then code points from the space upwards, leaving out the UTF-16 surrogates."""
    code_points = (c for c in range(32, 0x110000) if not 0xD800 <= c < 0xE000)
    return "".join(["\n", *map(chr, itertools.islice(code_points, vocab_size - 1))])[:vocab_size]


def _product_passes(shape: BenchShape, inputs: list[torch.Tensor], product) -> list[Callable[[], None]]:
    """`product(matrix, input)` over matrices of the shapes a sampling step reads, as many passes as a
    sample has steps: one callable per storage order, since streaming sampling keeps its weights in the
    transposed one (see sample.Stepper) and a bound must hold for either."""
    matrices = [torch.randn(rows, cols) for rows, cols in shape.step_matrices()]

    def passes(stored):
        for _ in range(SAMPLE_LENGTH):
            for matrix, x in zip(stored, inputs):
                product(matrix, x)

    return [functools.partial(passes, matrices), functools.partial(passes, [column_major(m) for m in matrices])]


def matvec_passes(shape: BenchShape) -> list[Callable[[], None]]:
    """Matrix-vector products: each reads a whole matrix for two FLOPs per weight, so they measure how
    fast weights stream from memory."""
    return _product_passes(shape, [torch.randn(cols) for _, cols in shape.step_matrices()], torch.mv)


def batch_product_passes(shape: BenchShape) -> list[Callable[[], None]]:
    """The products of `shape.num_samples` rows at once, as a batched sampling step runs them (input times
    the transposed weight): at 32 rows each weight serves 64 FLOPs, so they measure arithmetic."""
    inputs = [torch.randn(shape.num_samples, cols) for _, cols in shape.step_matrices()]
    return _product_passes(shape, inputs, lambda matrix, x: torch.mm(x, matrix.t()))


_CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


def _sampler(model: CharRNN, num_samples: int) -> Callable[[], None]:
    vocab = Vocabulary(list(alphabet(model.config.vocab_size)))
    config = SampleConfig(length=SAMPLE_LENGTH, num_samples=num_samples, seed=0)

    def sample():
        for _ in generate(model, vocab, config, "", 0):
            pass

    return sample


@dataclass(frozen=True)
class SamplingRates:
    single_chars_per_s: float
    cell_loop_chars_per_s: float
    matvec_gb_per_s: float
    batch_chars_per_s: float
    batch_cell_loop_chars_per_s: float
    batch_product_gflops: float


def sampling_rates(model: CharRNN, shape: BenchShape, min_time_s: float) -> SamplingRates:
    """Sampling and the bare cell loop at batch 1 and at `shape.num_samples` (characters/s), the
    matrix-vector bandwidth (GB/s) and the batch's matrix-product rate (GFLOP/s), each bound from the
    faster storage order, all timed in one alternation: a neighbour's load, or a spell in which two
    threads run at the speed of one, slows every rate and its bound alike, so their ratios hold."""
    batch = shape.num_samples
    samplers = [_sampler(model, 1), _cell_loop(model, 1), _sampler(model, batch), _cell_loop(model, batch)]
    streaming, arithmetic = matvec_passes(shape), batch_product_passes(shape)
    seconds = alternating_seconds_per_call(samplers + streaming + arithmetic, min_time_s)
    sample_s, loop_s, batch_sample_s, batch_loop_s = seconds[: len(samplers)]
    streaming_s = min(seconds[len(samplers) : len(samplers) + len(streaming)])
    arithmetic_s = min(seconds[len(samplers) + len(streaming) :])
    bandwidth = SAMPLE_LENGTH * shape.streamed_bytes_per_step() / streaming_s / 1e9
    batch_chars = SAMPLE_LENGTH * batch
    batch_gflops = batch_chars * shape.step_flops_per_char() / arithmetic_s / 1e9
    return SamplingRates(
        single_chars_per_s=SAMPLE_LENGTH / sample_s,
        cell_loop_chars_per_s=SAMPLE_LENGTH / loop_s,
        matvec_gb_per_s=bandwidth,
        batch_chars_per_s=batch_chars / batch_sample_s,
        batch_cell_loop_chars_per_s=batch_chars / batch_loop_s,
        batch_product_gflops=batch_gflops,
    )


def _cell_loop(model: CharRNN, num_samples: int) -> Callable[[], None]:
    """A plain loop of nn.LSTMCell/GRUCell/RNNCell modules holding the model's weights, choosing as sampling does."""
    config = model.config
    extra = {"nonlinearity": config.nonlinearity} if config.cell == "rnn" else {}
    cells = []
    for layer in range(config.num_layers):
        cell = _CELLS[config.cell](config.embed_size if layer == 0 else config.hidden_size, config.hidden_size, **extra)
        cell.load_state_dict(
            dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), layer_weights(model.rnn, layer)))
        )
        cells.append(cell)
    sample_config = SampleConfig(seed=0)
    generator = torch.Generator().manual_seed(0)

    @torch.inference_mode()
    def loop():
        ids = torch.zeros(num_samples, dtype=torch.long)
        zeros = torch.zeros(num_samples, config.hidden_size)
        states = [(zeros, zeros) if config.cell == "lstm" else zeros for _ in cells]
        for _ in range(SAMPLE_LENGTH):
            x = model.embedding(ids)
            for layer, cell in enumerate(cells):
                states[layer] = cell(x, states[layer])
                x = states[layer][0] if config.cell == "lstm" else states[layer]
            ids = choose(model.head(x), sample_config, generator)

    return loop
