"""One optimisation step, in two halves so that a diverged loss is caught before the weights change:
`backward` (forward, loss, backward, clipping) and `update` (optimiser, scaler, weight average)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from charrnn.model import device as devices
from charrnn.settings.config import TrainConfig


def backward(module, params: list, optimizer, scaler, batch: tuple, state, config: TrainConfig, device):
    """Forward and backward over one batch of (inputs, targets) from `state`; the gradients are unscaled and
    clipped. Returns the training loss, the gradient norm before clipping and the final hidden state."""
    inputs, targets = batch
    with devices.autocast(device, config.precision):
        logits, state = module(inputs, state)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.clip_norm or math.inf))
    if config.clip_value:
        torch.nn.utils.clip_grad_value_(params, config.clip_value)
    return float(loss.detach()), grad_norm, state


def update(optimizer, scaler, average) -> None:
    """Apply the gradients (the fp16 scaler skips a step whose gradient overflowed) and follow with the
    weight average."""
    scaler.step(optimizer)
    scaler.update()
    if average is not None:
        average.update()


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
