"""What a Trainer builds before its first step: the text under the run's vocabulary, the optimiser, and the
module a step calls (wrapped by DDP, compiled on request). Each is a plain function of the resolved options."""

from __future__ import annotations

import torch

from charrnn import distributed
from charrnn.data import ids as corpus_ids
from charrnn.model import device as devices
from charrnn.settings.config import TrainConfig
from charrnn.storage import checkpoint


def training_text(config: TrainConfig, group, saved: dict | None, encoded) -> corpus_ids.CorpusIds:
    """The encoded text of the run: the resumed run's own text, else --data (already read by the recipe, or
    read now)."""
    with distributed.local_leader_first(group):
        # One process per machine encodes an uncached text; the others then read its cache.
        if saved is not None:
            return checkpoint.training_text(saved, "Restore the original text, or start a new run without --resume")
        if encoded is None:
            return corpus_ids.load(config.data)
        return encoded


def optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices only, never on biases."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )


def step_module(model: torch.nn.Module, group, config: TrainConfig, device: torch.device) -> torch.nn.Module:
    """What a training step calls: the model, wrapped by DDP to average gradients, compiled on request."""
    module = model
    if group.active:
        module = torch.nn.parallel.DistributedDataParallel(module)
    if config.compile:
        module = devices.compiled(module, device)
    return module
