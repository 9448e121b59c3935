"""Where a model runs and in what precision: device choice, autocast, loss scaling, torch.compile."""

from __future__ import annotations

import contextlib

import torch

from charrnn.config import DEVICES, PRECISIONS
from charrnn.errors import CharRNNError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def resolve(name: str, local_rank: int = 0) -> torch.device:
    """`auto` is the best available: a CUDA GPU, else Apple's MPS, else the CPU."""
    if name not in DEVICES:
        raise CharRNNError(f"unknown device {name!r}. Use one of: {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CharRNNError(
                "--device cuda, but this PyTorch sees no CUDA GPU. Use --device cpu, or install a CUDA build of torch"
            )
        # Under torchrun each process on a node takes the GPU matching its local rank.
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps" and not _mps_available():
        raise CharRNNError("--device mps, but this machine or PyTorch has no MPS support. Use --device cpu")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise CharRNNError(f"unknown precision {precision!r}. Use one of: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        # PyTorch's CPU kernels for the fused LSTM reject half precision.
        raise CharRNNError("--precision fp16 needs a GPU. On a CPU use --precision bf16 or fp32")


def autocast(device: torch.device, precision: str):
    """Matrix products in the lower precision, weights and optimiser state in fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Scales the fp16 loss so small gradients do not underflow; a no-op for fp32 and bf16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    if not torch._dynamo.is_dynamo_supported():
        raise CharRNNError(
            "--compile is not supported by this Python or PyTorch (torch.compile needs a supported "
            "platform). Leave out --compile"
        )
    return torch.compile(module)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
