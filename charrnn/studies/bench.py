"""How fast one model shape runs on this machine, each figure beside the bound it is measured against.

Pure measurement: `run` returns a `BenchReport`; the CLI renders it. Every rate is the median of
repeated timed calls after one warm-up call, except the matrix-multiply peak, which is the fastest
call. Training is timed in alternation with the bare fused cell, and sampling with the bare cell
loop and with the bare matrix products a sampling step must run (its limits), so that a neighbour's
load on a shared machine slows each rate and its bound alike; the other ratios compare separate
measurements.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from charrnn.data import corpus
from charrnn.data import ids as corpus_ids
from charrnn.data.splits import TRAIN_FRACTION, min_train_chars
from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import evaluate
from charrnn.generation.sampling import check_memory as check_sampling_memory
from charrnn.generation.sampling import choose, column_major, generate
from charrnn.model.device import check_memory
from charrnn.model.network import CharRNN, layer_weights
from charrnn.settings.config import DERIVED_MODEL_FIELDS, ModelConfig, SampleConfig, TrainConfig

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# Newline and printable ASCII: about what an English text holds.
DEFAULT_VOCAB_SIZE = 96
SAMPLE_LENGTH = 200
# Evaluation is timed on a span the size of a 5% split of a 5 MB corpus.
EVAL_CHARS = 1 << 18
FLOAT_BYTES = 4
# The backward pass of a matrix product costs two products of the same size.
FORWARD_AND_BACKWARD = 3


@dataclass(frozen=True)
class BenchShape:
    """A model and batch shape to measure; by default the default model's, read from its configs."""

    cell: str = ModelConfig.cell
    num_layers: int = ModelConfig.num_layers
    hidden_size: int = ModelConfig.hidden_size
    embed_size: int = ModelConfig.embed_size
    vocab_size: int = DEFAULT_VOCAB_SIZE
    batch_size: int = TrainConfig.batch_size
    seq_len: int = TrainConfig.seq_len
    num_samples: int = 32

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size,
            cell=self.cell,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            embed_size=self.embed_size,
        )

    def _layer_inputs(self) -> list[int]:
        return [self.embed_size] + [self.hidden_size] * (self.num_layers - 1)

    def cell_flops_per_char(self) -> int:
        """Forward and backward matrix-product FLOPs of the recurrent layers for one character."""
        gates = GATES[self.cell] * self.hidden_size
        return FORWARD_AND_BACKWARD * sum(2 * gates * (n + self.hidden_size) for n in self._layer_inputs())

    def model_flops_per_char(self) -> int:
        """The same for the whole model: the recurrent layers and the output layer."""
        return self.cell_flops_per_char() + FORWARD_AND_BACKWARD * 2 * self.hidden_size * self.vocab_size

    def step_matrices(self) -> list[tuple[int, int]]:
        """The shapes of the weight matrices one sampling step reads (the first layer's input is a table row)."""
        gates = GATES[self.cell] * self.hidden_size
        shapes = [(gates, self.hidden_size)] + [(gates, n) for n in self._layer_inputs()[1:]]
        return shapes + [(gates, self.hidden_size)] * (self.num_layers - 1) + [(self.vocab_size, self.hidden_size)]

    def streamed_bytes_per_step(self) -> int:
        return FLOAT_BYTES * sum(rows * cols for rows, cols in self.step_matrices())

    def step_flops_per_char(self) -> int:
        """Matrix-product FLOPs of one sampling step for one sample."""
        return 2 * sum(rows * cols for rows, cols in self.step_matrices())


@dataclass(frozen=True)
class CorpusBench:
    """Encoding a real corpus into its id cache: paid once per file, again only when the file changes."""

    path: str
    megabytes: float
    chars: int
    vocab_size: int
    encode_mb_per_s: float


@dataclass(frozen=True)
class BenchReport:
    shape: BenchShape
    threads: int
    matmul_gflops: float
    cell_chars_per_s: float
    train_chars_per_s: float
    eval_chars_per_s: float
    matvec_gb_per_s: float
    sample_chars_per_s: float
    cell_loop_chars_per_s: float
    batch_sample_chars_per_s: float
    batch_cell_loop_chars_per_s: float
    batch_product_gflops: float
    peak_rss_mb: float
    corpus: CorpusBench | None = None

    @property
    def cell_gflops(self) -> float:
        return self.cell_chars_per_s * self.shape.cell_flops_per_char() / 1e9

    @property
    def train_gflops(self) -> float:
        return self.train_chars_per_s * self.shape.model_flops_per_char() / 1e9

    @property
    def stream_limit_chars_per_s(self) -> float:
        """Batch 1 can go no faster than reading every weight matrix once per character."""
        return self.matvec_gb_per_s * 1e9 / self.shape.streamed_bytes_per_step()

    @property
    def arithmetic_limit_chars_per_s(self) -> float:
        """A batch of samples can go no faster than its step's matrix products at that many rows."""
        return self.batch_product_gflops * 1e9 / self.shape.step_flops_per_char()

    def ratios(self) -> dict[str, float]:
        return {
            "cell_mfu": self.cell_gflops / self.matmul_gflops,
            "train_mfu": self.train_gflops / self.matmul_gflops,
            "train_vs_cell": self.train_chars_per_s / self.cell_chars_per_s,
            "eval_vs_train": self.eval_chars_per_s / self.train_chars_per_s,
            "sample_vs_cell_loop": self.sample_chars_per_s / self.cell_loop_chars_per_s,
            "sample_vs_stream_limit": self.sample_chars_per_s / self.stream_limit_chars_per_s,
            "batch_sample_vs_cell_loop": self.batch_sample_chars_per_s / self.batch_cell_loop_chars_per_s,
            "batch_sample_vs_single": self.batch_sample_chars_per_s / self.sample_chars_per_s,
            "batch_sample_vs_arithmetic_limit": self.batch_sample_chars_per_s / self.arithmetic_limit_chars_per_s,
            # The most a batch can gain over this batch-1 rate: a faster batch 1 lowers it.
            "arithmetic_limit_vs_single": self.arithmetic_limit_chars_per_s / self.sample_chars_per_s,
        }

    def as_dict(self) -> dict:
        derived = {
            "cell_gflops": self.cell_gflops,
            "train_gflops": self.train_gflops,
            "stream_limit_chars_per_s": self.stream_limit_chars_per_s,
            "arithmetic_limit_chars_per_s": self.arithmetic_limit_chars_per_s,
        }
        return {**dataclasses.asdict(self), **derived, "ratios": self.ratios()}


def seconds_per_call(fn: Callable[[], object], min_time_s: float, min_calls: int = 3) -> float:
    """Median wall time of `fn` over at least `min_calls` calls and `min_time_s` seconds, after a warm-up."""
    return alternating_seconds_per_call([fn], min_time_s, min_calls)[0]


def alternating_seconds_per_call(
    fns: list[Callable[[], object]], min_time_s: float, min_calls: int = 3, statistic=statistics.median
) -> list[float]:
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    began = time.perf_counter()
    while len(times[0]) < min_calls or time.perf_counter() - began < min_time_s:
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistic(spent) for spent in times]


def matmul_peak_gflops(shape: BenchShape, min_time_s: float) -> float:
    """The fastest fp32 matrix product among those the model's training step runs, in GFLOP/s."""
    gates = GATES[shape.cell] * shape.hidden_size
    chars = shape.batch_size * shape.seq_len
    sizes = {(chars, n, gates) for n in shape._layer_inputs()}
    sizes |= {(shape.batch_size, shape.hidden_size, gates), (chars, shape.hidden_size, shape.vocab_size)}
    products = [(2 * m * k * n, functools.partial(torch.mm, torch.randn(m, k), torch.randn(k, n))) for m, k, n in sizes]
    # A peak is the best the machine did: the fastest call, so that a neighbour's burst cannot lower it.
    seconds = alternating_seconds_per_call([mm for _, mm in products], min_time_s, statistic=min)
    return max(flops / s / 1e9 for (flops, _), s in zip(products, seconds))


def alphabet(vocab_size: int) -> str:
    """Newline, then code points from the space upwards, leaving out the UTF-16 surrogates."""
    code_points = (c for c in range(32, 0x110000) if not 0xD800 <= c < 0xE000)
    return "".join(["\n", *map(chr, itertools.islice(code_points, vocab_size - 1))])[:vocab_size]


def synthetic_text(vocab_size: int, length: int, seed: int = 0) -> str:
    """Every character of the alphabet, then uniformly random ones: a text with exactly `vocab_size` characters."""
    chars = alphabet(vocab_size)
    draws = torch.randint(len(chars), (max(0, length - len(chars)),), generator=torch.Generator().manual_seed(seed))
    return chars + "".join(chars[i] for i in draws.tolist())


def encoding(data: str) -> CorpusBench:
    """Time encoding `data` afresh into a scratch cache (the training measurement then uses, or makes,
    the corpus's own cache, as `charrnn train` would)."""
    path = corpus.resolve(data)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        encoded = corpus_ids.encode(data, Path(tmp))
        seconds = time.perf_counter() - start
        chars, vocab_size = len(encoded.ids), len(encoded.chars)
        del encoded
    megabytes = path.stat().st_size / 1e6
    return CorpusBench(str(path), megabytes, chars, vocab_size, megabytes / seconds)


def training_chars_per_s(shape: BenchShape, min_time_s: float, data: str | None = None) -> tuple[float, float]:
    """Characters per second of the bare fused cell's forward+backward, and of charrnn's whole training step.

    The training step reads `data` when given, else a synthetic text with the shape's vocabulary.
    """
    from charrnn.training.launch import open_training

    chars = shape.batch_size * shape.seq_len
    length = int(4 * min_train_chars(shape.batch_size, shape.seq_len) / TRAIN_FRACTION)
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            data = str(Path(tmp) / "bench.txt")
            Path(data).write_text(synthetic_text(shape.vocab_size, length), encoding="utf-8")
        train_options = {
            "data": data,
            "batch_size": shape.batch_size,
            "seq_len": shape.seq_len,
            "max_steps": 10**9,
            "eval_every": 10**9,
        }
        model_options = {
            k: v for k, v in dataclasses.asdict(shape.model_config()).items() if k not in DERIVED_MODEL_FIELDS
        }
        trainer = open_training(Path(tmp) / "run", {**train_options, **model_options}, use_recipe=False)
        steps = trainer.run()
        try:
            torch.manual_seed(0)
            cell = CharRNN(shape.model_config()).rnn.train()
            inputs = torch.randn(shape.batch_size, shape.seq_len, shape.embed_size)

            def cell_step():
                for p in cell.parameters():
                    p.grad = None
                output, _ = cell(inputs)
                output.sum().backward()

            cell_s, train_s = alternating_seconds_per_call([cell_step, lambda: next(steps)], min_time_s)
        finally:
            steps.close()
            trainer.close()
    return chars / cell_s, chars / train_s


def eval_chars_per_s(model: CharRNN, chars: int, min_time_s: float) -> float:
    ids = torch.randint(model.config.vocab_size, (chars + 1,), generator=torch.Generator().manual_seed(0))
    return chars / seconds_per_call(lambda: evaluate(model, ids, 1, chars + 1), min_time_s, min_calls=1)


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


def peak_rss_mb() -> float:
    """The process's peak resident memory in MB (2^20 bytes): ru_maxrss is in KiB on Linux, in bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run(
    shape: BenchShape, min_time_s: float = 5.0, eval_chars: int = EVAL_CHARS, data: str | None = None, on_stage=None
) -> BenchReport:
    """Measure everything for one shape; `on_stage(name)` hears which measurement starts.

    With `data` (a corpus name or path), encoding it is timed too, the training step reads it, and
    the shape takes its vocabulary size.
    """
    announce = on_stage or (lambda name: None)
    if not math.isfinite(min_time_s):
        raise CharRNNError(f"--min-time must be a finite number of seconds, got {min_time_s}. Pass e.g. 5")
    corpus_bench = None
    if data is not None:
        announce("encoding the corpus")
        corpus_bench = encoding(data)
        shape = dataclasses.replace(shape, vocab_size=corpus_bench.vocab_size)
    # A shape too large for the machine is refused before anything is allocated, as training refuses it.
    model, cpu = shape.model_config(), torch.device("cpu")
    check_memory(model, TrainConfig(batch_size=shape.batch_size, seq_len=shape.seq_len, max_steps=1), cpu)
    check_sampling_memory(model, cpu, shape.num_samples)
    announce("matrix-multiply peak")
    matmul = matmul_peak_gflops(shape, min_time_s)
    announce("training step and bare fused cell")
    cell, train = training_chars_per_s(shape, min_time_s, data)
    torch.manual_seed(0)
    model = CharRNN(shape.model_config()).eval()
    announce("evaluation")
    evaluation = eval_chars_per_s(model, eval_chars, min_time_s)
    announce(f"sampling at batch 1 and {shape.num_samples}, and their matrix products")
    sampling = sampling_rates(model, shape, min_time_s)
    return BenchReport(
        shape=shape,
        threads=torch.get_num_threads(),
        matmul_gflops=matmul,
        cell_chars_per_s=cell,
        train_chars_per_s=train,
        eval_chars_per_s=evaluation,
        matvec_gb_per_s=sampling.matvec_gb_per_s,
        sample_chars_per_s=sampling.single_chars_per_s,
        cell_loop_chars_per_s=sampling.cell_loop_chars_per_s,
        batch_sample_chars_per_s=sampling.batch_chars_per_s,
        batch_cell_loop_chars_per_s=sampling.batch_cell_loop_chars_per_s,
        batch_product_gflops=sampling.batch_product_gflops,
        peak_rss_mb=peak_rss_mb(),
        corpus=corpus_bench,
    )
