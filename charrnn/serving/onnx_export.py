"""Export a language model as a one-step ONNX graph, for runtimes without PyTorch (docs/export.md).

The graph is the model's own forward on a sequence of one character, from a state passed in: the
caller keeps the state between calls, as `charrnn.generation.sampling.Stepper` does, picks each next
character itself, and restarts the state where the model's context is bounded (`model_config.context`
in the metadata). It is traced with PyTorch's TorchScript exporter (`dynamo=False`), which needs only
the `onnx` package and turns each layer of the fused module into one ONNX RNN, LSTM or GRU node.

torch is imported only when a model is exported, so that the CLI can name the formats and start
without it.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn import __version__, atomic
from charrnn.errors import CharRNNError

if TYPE_CHECKING:
    from torch import nn

    from charrnn.api import Loaded

FORMAT = "charrnn-onnx-step"
FORMAT_VERSION = 1
# Below the exporter's default of 20, so that older runtimes load the file; each cell is still one node.
OPSET = 17
INSTALL_HINT = "pip install 'charrnn-lm[export]'"


@dataclasses.dataclass(frozen=True)
class Exported:
    path: Path
    size_bytes: int
    cell: str
    num_layers: int
    hidden_size: int
    vocab_size: int


def one_step(model: nn.Module) -> nn.Module:
    """A module for `model` in eval mode: ids (batch,) and the state (layers, batch, hidden) -> logits
    (batch, vocab) and the next state, by the model's own forward on a sequence of one."""
    from torch import nn

    class OneStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids, *state):
            logits, new_state = self.model(ids.unsqueeze(1), state if len(state) == 2 else state[0])
            new_state = new_state if isinstance(new_state, tuple) else (new_state,)
            return (logits[:, 0], *new_state)

    return OneStep().eval()


def graph_names(cell: str) -> tuple[list[str], list[str]]:
    """The graph's input and output names, in order; an LSTM carries a cell state `c` beside `h`."""
    states = ["h", "c"] if cell == "lstm" else ["h"]
    return ["ids", *states], ["logits", *(f"{name}_out" for name in states)]


def metadata(loaded: Loaded) -> dict[str, str]:
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "charrnn_version": __version__,
        "vocab": json.dumps(loaded.vocab.chars),
        "model_config": json.dumps(dataclasses.asdict(loaded.model.config)),
    }


def onnx_bytes(loaded: Loaded) -> bytes:
    """The serialised ONNX model of one step of `loaded`, with its metadata."""
    try:
        import onnx
    except ImportError:
        raise CharRNNError(
            f"exporting to ONNX needs the onnx package, which is not installed. Run {INSTALL_HINT}"
        ) from None
    import torch

    # A copy, so that the caller's model stays on its device and in its dtype.
    model = copy.deepcopy(loaded.model).cpu().float().eval()
    config = model.config
    inputs, outputs = graph_names(config.cell)
    ids = torch.zeros(1, dtype=torch.long)
    state = tuple(torch.zeros(config.num_layers, 1, config.hidden_size) for _ in inputs[1:])
    dynamic_axes = {name: {0 if name in ("ids", "logits") else 1: "batch"} for name in inputs + outputs}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The exporter warns that it is deprecated and that nn.RNN's input checks read tensors as
        # booleans while tracing; those checks hold for every batch size.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            one_step(model),
            (ids, *state),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata(loaded).items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def check_destination(out: Path) -> None:
    if out.is_dir():
        raise CharRNNError(f"--out {out} is a directory. Pass a file path, e.g. {out / 'model.onnx'}")
    if not out.parent.is_dir():
        raise CharRNNError(
            f"--out {out}: the directory {out.parent} does not exist. Create it, or choose another --out"
        )


def check_exportable(loaded: Loaded, kind: str) -> None:
    """Refuse, naming `--format kind`, a model with no left-to-right step or with weights that are not all finite."""
    from charrnn.generation.sampling import require_finite_weights

    if loaded.objective == "fill" or loaded.model.config.bidirectional:
        raise CharRNNError(
            f"--format {kind} exports a model that generates text left to right, and this checkpoint holds a fill "
            "model, which reads its text in both directions. Fill gaps with `charrnn fill`, or export a model "
            "trained with --objective lm"
        )
    require_finite_weights(loaded.model)


def export(loaded: Loaded, out: Path) -> Exported:
    """Write `loaded`'s one-step ONNX graph to the file `out`."""
    check_exportable(loaded, "onnx")
    out = Path(out)
    check_destination(out)
    data = onnx_bytes(loaded)
    try:
        atomic.write_bytes(out, data)
    except OSError as e:
        raise CharRNNError(f"could not write {out} ({e.strerror or e}). Choose a writable --out") from None
    return exported(loaded, out, len(data))


def exported(loaded: Loaded, path: Path, size_bytes: int) -> Exported:
    config = loaded.model.config
    return Exported(path, size_bytes, config.cell, config.num_layers, config.hidden_size, config.vocab_size)
