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
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from charrnn.data import corpus
from charrnn.data import ids as corpus_ids
from charrnn.data.splits import TRAIN_FRACTION, min_train_chars
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import evaluate
from charrnn.generation.sampling import check_memory as check_sampling_memory
from charrnn.model.device import check_memory
from charrnn.model.network import CharRNN
from charrnn.settings.config import DERIVED_MODEL_FIELDS, TrainConfig
from charrnn.studies.bench_report import BenchReport, BenchShape, CorpusBench
from charrnn.studies.bench_sampling import alphabet, sampling_rates
from charrnn.studies.bench_timing import alternating_seconds_per_call, matmul_peak_gflops, seconds_per_call

# Evaluation is timed on a span the size of a 5% split of a 5 MB corpus.
EVAL_CHARS = 1 << 18


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
