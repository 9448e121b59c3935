"""A run's state as a checkpoint holds it, and back: `snapshot` builds what `best.pt` and `last.pt` hold,
`restore` continues a run from `last.pt` bit-for-bit (weights, optimiser, step, elapsed time, data position,
hidden state, random state, weight average, fp16 scaler)."""

from __future__ import annotations

import torch

from charrnn import distributed
from charrnn.storage import checkpoint


def snapshot(trainer, full: bool) -> dict:
    """What a checkpoint of `trainer` holds; `full` adds what resuming needs."""
    content = checkpoint.training_content(
        model_config=trainer.model_config,
        train_config=trainer.config,
        vocab=trainer.vocab.chars,
        data_sha256=trainer.data_sha256,
        model_state=trainer.model.state_dict(),
        step=trainer.step,
        elapsed_s=trainer.elapsed_s,
        best_val_loss=trainer.best_val_loss,
        last_val_loss=trainer.last_val_loss,
    )
    group = trainer.group
    if full:
        # Every process must call this together: the hidden state and random state come from all of them.
        content.update(
            optimizer=trainer.optimizer.state_dict(),
            batcher=trainer.batcher.state_dict(),
            hidden=_join_streams(distributed.gather(group, trainer.state)),
            rng=torch.get_rng_state(),
            rank_rng=distributed.gather(group, _rng_state(trainer.device)),
        )
        if trainer.scaler.is_enabled():
            content["scaler"] = trainer.scaler.state_dict()
    if trainer.average is not None:
        # best.pt holds the averaged weights, which validation scored; last.pt resumes training.
        if full:
            content["average"] = trainer.average.state_dict()
        else:
            content["model"] = trainer.average.model_state()
    return content


def restore(trainer, saved: dict) -> None:
    """Continue `trainer` from the full checkpoint `saved`."""
    trainer.model.load_state_dict(saved["model"])
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.batcher.load_state_dict(saved["batcher"])
    trainer.step, trainer.elapsed_s = saved["step"], saved["elapsed_s"]
    trainer.best_val_loss, trainer.last_val_loss = saved["best_val_loss"], saved.get("last_val_loss")
    # The checkpoint holds the state of all --batch-size streams; this process continues its own share.
    trainer.state = _select_streams(saved["hidden"], trainer.batcher.streams, trainer.device)
    rank_rng = saved.get("rank_rng", [])
    if len(rank_rng) == trainer.group.world_size:
        _set_rng_state(rank_rng[trainer.group.rank], trainer.device)
    else:
        torch.set_rng_state(saved["rng"])
    if trainer.average is not None:
        trainer.average.load_state_dict(saved["average"])
    if "scaler" in saved and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(saved["scaler"])


def _select_streams(state, streams: slice, device: torch.device):
    """Streams `streams` of a (layers, batch, hidden) state or LSTM pair, on `device`."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(s[:, streams].to(device) for s in state)
    return state[:, streams].to(device)


def _join_streams(states: list):
    """The states of all processes, in rank order, as one state over all streams."""
    if states[0] is None:
        return None
    if isinstance(states[0], tuple):
        return [torch.cat(parts, dim=1) for parts in zip(*states)]
    return torch.cat(states, dim=1)


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
