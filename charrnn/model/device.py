"""Where a model runs and in what precision: device choice, autocast, loss scaling, torch.compile."""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from charrnn.errors import CharRNNError
from charrnn.settings.config import DEVICES, PRECISIONS

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


def check_precision(precision: str, device: torch.device, cell: str = "lstm") -> None:
    """Refuse, before training starts, a precision this device cannot train `cell` in."""
    if precision not in PRECISIONS:
        raise CharRNNError(f"unknown precision {precision!r}. Use one of: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        # PyTorch's CPU kernels for the fused LSTM reject half precision.
        raise CharRNNError("--precision fp16 needs a GPU. On a CPU use --precision bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not _trains_in_bf16(cell):
        raise CharRNNError(
            f"--precision bf16: this CPU cannot run the fused {cell} in bf16 (oneDNN has no bf16 kernel for it "
            f"here; CPUs without AVX-512 lack one). Use --precision fp32"
        )


@functools.cache
def _trains_in_bf16(cell: str) -> bool:
    """One forward and backward of a tiny fused cell under bf16 autocast: whether oneDNN has a kernel for
    it is known only by asking, and a CPU without AVX-512 answers with a RuntimeError."""
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](4, 4)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output, _ = module(torch.zeros(2, 1, 4))
        output.float().sum().backward()
    except RuntimeError:
        return False
    return True


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it has seen the work end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def autocast(device: torch.device, precision: str):
    """Matrix products in the lower precision, weights and optimiser state in fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Scales the fp16 loss so small gradients do not underflow; a no-op for fp32 and bf16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def compiled(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not torch._dynamo.is_dynamo_supported():
        raise CharRNNError(
            "--compile is not supported by this Python or PyTorch (torch.compile needs a supported "
            "platform). Leave out --compile"
        )
    problem = _compiler_problem(device.type)
    if problem is not None:
        raise CharRNNError(f"--compile: torch.compile cannot build code here ({problem}). Leave out --compile")
    return torch.compile(module)


@functools.cache
def _compiler_problem(device_type: str) -> str | None:
    """Compile and run a two-op function once: a missing C++ compiler (or Triton, on a GPU) shows only when
    code is built, which would otherwise be at the first training step."""
    try:
        torch.compile(lambda x: torch.tanh(x) * 2)(torch.ones(2, device=device_type))
    except torch._dynamo.exc.BackendCompilerFailed as e:
        return str(e).strip().splitlines()[0][:200]
    return None


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def parameter_count(model) -> int:
    """The parameters a CharRNN of this ModelConfig holds, counted from its shape before anything is built."""
    directions = 2 if model.bidirectional else 1
    embedding = (model.vocab_size + model.bidirectional) * model.embed_size
    if model.tie_embedding:
        head = model.vocab_size  # the embedding is the weight: only the bias is its own
    else:
        head = (model.hidden_size * directions + 1) * model.vocab_size
    return embedding + head + recurrent_parameter_count(model)


def recurrent_parameter_count(model) -> int:
    """The parameters of a ModelConfig's recurrent layers alone, without the embedding and the output layer."""
    directions = 2 if model.bidirectional else 1
    gates, hidden = GATES[model.cell], model.hidden_size

    def layer(inputs: int) -> int:
        return directions * gates * hidden * (inputs + hidden + 2)

    # Counted, not looped over: --layers 10**12 is refused at once.
    return layer(model.embed_size) + (model.num_layers - 1) * layer(hidden * directions)


def training_bytes(model, train) -> int:
    """A floor on what training needs: fp32 weights, gradients, AdamW's two moments and the average, and
    the activations kept for back-propagation through one window."""
    directions = 2 if model.bidirectional else 1
    copies = 5 if train.ema_decay else 4
    activations = train.batch_size * train.seq_len * model.num_layers * directions * model.hidden_size
    activations *= GATES[model.cell] + 2
    return 4 * (copies * parameter_count(model) + activations + train.batch_size * train.seq_len * model.vocab_size)


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a new allocation on `device`, or None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(needed: int, device: torch.device, what: str, fix: str, purpose: str = "") -> None:
    """The one memory check: refuse `what`, which needs `needed` bytes (`purpose`, e.g. " to train"), before
    anything is allocated when `device` has less free, rather than be killed midway. `fix` says what to pass
    instead."""
    available = available_bytes(device)
    if available is not None and needed > available:
        raise CharRNNError(
            f"{what} needs at least {needed / 2**30:,.1f} GiB{purpose}, and {device} has {available / 2**30:,.1f} GiB "
            f"free. {fix}"
        )


def check_memory(model, train, device: torch.device) -> None:
    """A model too large for the machine is refused before anything is allocated, not killed midway."""
    needed = training_bytes(model, train)
    # The advice names what takes the memory: the weights (and their gradients, moments and average), or
    # one window's activations.
    weights = 4 * 5 * parameter_count(model)
    fix = "--hidden-size or --layers" if weights >= needed - weights else "--batch-size, --seq-len or --layers"
    what = (
        f"a {model.num_layers} x {model.hidden_size} {model.cell} ({parameter_count(model):,} parameters) "
        f"at batch {train.batch_size} x {train.seq_len}"
    )
    require_memory(needed, device, what, f"Pass a smaller {fix}", " to train")
