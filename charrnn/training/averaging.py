"""An exponential moving average (EMA) of a model's weights.

On a small corpus the weights of the last steps wander around a minimum while the model starts
to memorise; their running average sits nearer its centre and scores better on unseen text.
Training updates the model's own weights; the average is only swapped in to validate and save.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        self.params = list(model.parameters())
        self.decay = decay
        self.updates = 0
        self.averaged = [p.detach().clone() for p in self.params]

    def current_decay(self) -> float:
        # The first weights are far from trained ones; a horizon that grows with the step count
        # forgets them quickly instead of dragging the average back towards the initialisation.
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = 1 - self.current_decay()
        for average, param in zip(self.averaged, self.params):
            average.lerp_(param, weight)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside this block and its own weights again after it."""
        own = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for param, average in zip(self.params, self.averaged):
                param.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, weights in zip(self.params, own):
                    param.copy_(weights)

    def model_state(self) -> dict:
        """The model's state_dict with the averaged weights in place of its own."""
        averaged = {id(p): a for p, a in zip(self.params, self.averaged)}
        # Every name of a shared weight (a tied embedding is also the output layer's) gets the average.
        names = self.model.named_parameters(remove_duplicate=False)
        return {**self.model.state_dict(), **{n: averaged[id(p)].clone() for n, p in names}}

    def state_dict(self) -> dict:
        return {"updates": self.updates, "averaged": [a.clone() for a in self.averaged]}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        self.averaged = [a.clone() for a in state["averaged"]]
