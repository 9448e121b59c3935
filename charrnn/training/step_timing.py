"""Time a training step of a model size on the device, for a recipe that must fit a time budget."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from charrnn.model import device as devices
from charrnn.model.network import CharRNN
from charrnn.settings.config import ModelConfig, TrainConfig

PROBE_STEPS = 2


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
