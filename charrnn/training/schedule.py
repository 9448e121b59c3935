"""The budget and the learning rate: how far through --max-steps or --max-time a run is, and the rate that
follows from it (linear warm-up, then cosine decay)."""

from __future__ import annotations

import math

from charrnn.settings.config import TrainConfig

MIN_LR_FRACTION = 0.1


def budget_fraction(config: TrainConfig, step: int, elapsed_s: float) -> float:
    """The larger of the fractions of --max-steps and --max-time spent, at most 1."""
    fractions = []
    if config.max_steps is not None:
        fractions.append(step / config.max_steps)
    if config.max_time is not None:
        fractions.append(elapsed_s / config.max_time)
    return min(1.0, max(fractions))


def learning_rate(config: TrainConfig, step: int, fraction: float) -> float:
    """Linear warm-up, then cosine decay to a tenth of --lr at the end of the budget."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * fraction))
    return config.lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * cosine)


def projected_steps(config: TrainConfig, step: int, pace_s: float, left_s: float) -> int:
    """The step a time budget ends at if every step after `step` takes `pace_s` (its share of validation
    included) and `left_s` seconds are left for them (none at the budget's end: `step` itself); --max-steps when
    that comes first."""
    steps = step + max(0, math.ceil(left_s / pace_s))
    return steps if config.max_steps is None else min(steps, config.max_steps)
