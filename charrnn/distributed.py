"""Training across processes with PyTorch's own engine: torchrun starts them, DDP keeps them in step.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK in each process's environment; without them a run is
one process and nothing here is used. Rank r trains the r-th contiguous share of the --batch-size
streams, so the processes together see exactly the data one process would.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from charrnn.errors import CharRNNError


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def streams(self, batch_size: int) -> tuple[int, int]:
        """The first stream and the number of streams this process trains."""
        if batch_size % self.world_size:
            raise CharRNNError(
                f"--batch-size {batch_size} does not split evenly over {self.world_size} processes. "
                f"Pass a multiple of {self.world_size}; each process trains batch-size / processes streams"
            )
        share = batch_size // self.world_size
        return self.rank * share, share


def from_environment() -> Group:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Group()
    return Group(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def start(group: Group, device: torch.device) -> None:
    """Join the process group torchrun set up: NCCL between GPUs, gloo between CPU processes."""
    if not group.active or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


@contextlib.contextmanager
def local_leader_first(group: Group):
    """The block runs in each machine's local rank 0 first, then in the other processes together; every
    process passes one barrier, before the block or after it."""
    leader = group.local_rank == 0
    if group.active and not leader:
        dist.barrier()
    yield
    if group.active and leader:
        dist.barrier()


def stop(all_done: bool) -> None:
    """Leave the process group. When every process got to the end of its run, they first wait for each
    other: a gloo process that tore its group down while another still held it open was seen to abort
    (SIGABRT, "terminate called without an active exception") in about 1 of 30 torchrun launches in the tests."""
    if dist.is_initialized():
        if all_done:
            dist.barrier()
        dist.destroy_process_group()


def agree(
    group: Group, device: torch.device, loss: float, stopping: bool, elapsed_s: float
) -> tuple[float, bool, float]:
    """One small all-reduce per step: the mean loss, whether any process was asked to stop, and rank 0's
    clock, so that every process ends, evaluates and saves at the same step."""
    if not group.active:
        return loss, stopping, elapsed_s
    values = torch.tensor(
        [loss, float(stopping), elapsed_s if group.is_main else 0.0], dtype=torch.float64, device=device
    )
    dist.all_reduce(values)
    mean_loss, stops, main_elapsed = values.tolist()
    return mean_loss / group.world_size, stops > 0, main_elapsed


def total(group: Group, values: list[float], device: torch.device) -> list[float]:
    """`values` summed over every process (in float64, so counts stay exact); as they are without a group."""
    if not group.active:
        return values
    summed = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return summed.tolist()


def gather(group: Group, value) -> list:
    """Every process's `value` (tensors moved to the CPU), in rank order; a list of one without a group."""
    if not group.active:
        return [value]
    gathered = [None] * group.world_size
    dist.all_gather_object(gathered, _to_cpu(value))
    return gathered


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
