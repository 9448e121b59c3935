"""How `charrnn bench` times a call: the median of repeated calls after a warm-up, several callables in
alternation so that a neighbour's load slows each alike, and the matrix-multiply peak as the fastest call."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

import torch

from charrnn.model.device import GATES
from charrnn.studies.bench_report import BenchShape


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
