"""Time what a run spends on the device, for a recipe that must fit a time budget: a training step of a model
size, and the rest of a run's time (validation with its checkpoints, weight averaging)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.data.splits import WARMUP_CHARS
from charrnn.evaluation.score import evaluate
from charrnn.model import device as devices
from charrnn.model.network import CharRNN
from charrnn.settings.config import ModelConfig, TrainConfig
from charrnn.training.averaging import WeightAverage

PROBE_STEPS = 2


@dataclass(frozen=True)
class Overhead:
    validation_s: float  # one validation and the two checkpoints written after it
    average_s: float  # one update of the weight average, paid every step a run averages


def step_seconds(shape: ModelConfig, train: TrainConfig, device: torch.device) -> float:
    """Seconds one training step of `shape` takes: the fastest of PROBE_STEPS steps on
    random characters, after one step that allocates and picks kernels. The caller's random numbers are
    left as they were."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = CharRNN(shape).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
        ids = torch.randint(shape.vocab_size, (train.batch_size, train.seq_len + 1), device=device)
        times = []
        for _ in range(PROBE_STEPS + 1):
            began = time.perf_counter()
            with devices.autocast(device, train.precision):
                logits, _ = model(ids[:, :-1])
                loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            devices.synchronize(device)
            times.append(time.perf_counter() - began)
    return min(times[1:])


def overhead_seconds(shape: ModelConfig, train: TrainConfig, device: torch.device, val_chars: int) -> Overhead:
    """What a run of `shape` spends besides its steps: validating `val_chars` characters of random text (as
    validation reads them: in chunks, each after a warm-up) and writing best.pt and last.pt (the weights, and
    the optimiser's two moments), and one weight-average update."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = CharRNN(shape).to(device)
        ids = torch.randint(shape.vocab_size, (WARMUP_CHARS + val_chars,), device=device)
        began = time.perf_counter()
        with devices.autocast(device, train.precision):
            evaluate(model, ids, WARMUP_CHARS, WARMUP_CHARS + val_chars)
        devices.synchronize(device)
        weights = model.state_dict()
        for copies in (1, 3):
            torch.save([{k: v.clone() for k, v in weights.items()} for _ in range(copies)], io.BytesIO())
        validation = time.perf_counter() - began  # scoring and both checkpoints
        average = WeightAverage(model, 0.995)
        average.update()
        began = time.perf_counter()
        average.update()
        devices.synchronize(device)
        return Overhead(validation, time.perf_counter() - began)
