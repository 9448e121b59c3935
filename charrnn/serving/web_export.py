"""Export a language model as a folder that generates text in a web browser, with no server behind it (docs/export.md).

The folder holds a page (index.html), the step function and sampler in plain JavaScript (charrnn.js, the
files under charrnn/serving/web/), the weights as little-endian float32 (weights.bin) and a manifest
(model.json) that names each tensor's place in them with the vocabulary and the model's options. The page
loads nothing else, so it runs from any static file server, offline.

The folder is written beside its final name and renamed into place; it replaces only an earlier export.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn import __version__, atomic
from charrnn.errors import CharRNNError
from charrnn.serving.onnx_export import Exported, check_exportable, exported

if TYPE_CHECKING:
    from charrnn.api import Loaded

FORMAT = "charrnn-web"
FORMAT_VERSION = 1
MANIFEST = "model.json"
WEIGHTS = "weights.bin"
ASSETS = ("index.html", "charrnn.js")


def web_files(loaded: Loaded) -> dict[str, bytes]:
    """The folder's files by name: the page and its script, the weights and their manifest."""
    import torch

    tensors, chunks, offset = {}, [], 0
    for name, tensor in loaded.model.state_dict().items():
        values = tensor.detach().cpu().to(torch.float32).contiguous()
        tensors[name] = {"shape": list(values.shape), "offset": offset}
        chunks.append(values.numpy().astype("<f4").tobytes())
        offset += values.numel()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "charrnn_version": __version__,
        "vocab": loaded.vocab.chars,
        "model_config": dataclasses.asdict(loaded.model.config),
        "weights": WEIGHTS,
        "tensors": tensors,
    }
    assets = resources.files("charrnn.serving") / "web"
    return {
        **{name: (assets / name).read_bytes() for name in ASSETS},
        MANIFEST: json.dumps(manifest, ensure_ascii=False, indent=1).encode(),
        WEIGHTS: b"".join(chunks),
    }


def is_replaceable(out: Path) -> bool:
    """Whether `out` may be replaced: missing, an empty folder, or an earlier web export."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    try:
        return not any(out.iterdir()) or json.loads((out / MANIFEST).read_text())["format"] == FORMAT
    except (OSError, ValueError, KeyError, TypeError):
        return False


def check_destination(out: Path) -> None:
    if not out.parent.is_dir():
        raise CharRNNError(
            f"--out {out}: the directory {out.parent} does not exist. Create it, or choose another --out"
        )
    if not is_replaceable(out):
        raise CharRNNError(
            f"--out {out} exists and is not an earlier web export, which is all an export replaces. "
            "Choose a new folder for --out"
        )


def write_folder(files: dict[str, bytes], out: Path) -> None:
    """`files` as the folder `out`, written beside it and renamed into place."""
    new = out.with_name(f".{out.name}{atomic.TEMP_MARK}{os.getpid()}")
    old = out.with_name(f".{out.name}.old{atomic.TEMP_MARK}{os.getpid()}")
    try:
        new.mkdir()
        for name, data in files.items():
            atomic.write_bytes(new / name, data)
        if out.exists():
            out.rename(old)
        try:
            new.rename(out)
        except OSError:
            old.rename(out)
            raise
    finally:
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def export(loaded: Loaded, out: Path) -> Exported:
    """Write `loaded` as a web page folder `out`; the size reported is the whole folder's."""
    check_exportable(loaded, "web")
    out = Path(out)
    check_destination(out)
    files = web_files(loaded)
    try:
        write_folder(files, out)
    except OSError as e:
        raise CharRNNError(f"could not write {out} ({e.strerror or e}). Choose a writable --out") from None
    return exported(loaded, out, sum(len(data) for data in files.values()))
