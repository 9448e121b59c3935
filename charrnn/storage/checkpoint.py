"""Checkpoints: plain dicts on disk, with a format version and a SHA-256 of their own contents.

Files are written atomically (beside the target, flushed, renamed) and read with
`torch.load(weights_only=True)`, after a check that the file is a torch zip archive whose
entries are stored uncompressed, so a crafted pickle or a compression bomb never gets to run.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import math
import zipfile
from pathlib import Path

import torch

from charrnn import atomic
from charrnn.errors import CharRNNError
from charrnn.model.device import parameter_count
from charrnn.settings.config import ADDED_MODEL_OPTIONS, ADDED_TRAIN_OPTIONS, ModelConfig

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 1
BEST, LAST = "best.pt", "last.pt"


def _feed(digest, obj) -> None:
    """Hash a nested structure by value, independent of how torch laid it out in the file."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            digest.update(ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()))
    elif isinstance(obj, dict):
        digest.update(b"D%d" % len(obj))
        for key in sorted(obj, key=repr):
            _feed(digest, key)
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(b"L%d" % len(obj))
        for item in obj:
            _feed(digest, item)
    else:
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_sha256(content: dict) -> str:
    digest = hashlib.sha256()
    _feed(digest, content)
    return digest.hexdigest()


def save(path: Path, content: dict) -> None:
    """Write `content` to `path` so that a crash at any moment leaves the old file or the new one."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sha256": content_sha256(content),
        "content": content,
    }
    # Serialise in memory first: torch reports a failed write as a bare RuntimeError, Python as OSError.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        atomic.write_bytes(path, buffer.getbuffer())
    except OSError as e:
        raise CharRNNError(
            f"could not write {path} ({e.strerror or e}). Free some disk space or choose a writable --out; "
            "the previous checkpoint there is intact"
        ) from None


def remove_stale_temps(directory: Path) -> None:
    """Temporary files left by a process killed mid-save. Call only while holding the run's lock."""
    for tmp in Path(directory).glob(f".*.pt{atomic.TEMP_MARK}*"):
        tmp.unlink(missing_ok=True)


def resolve(path: Path) -> Path:
    """A run directory means its best.pt."""
    path = Path(path)
    if path.is_dir():
        if not (path / BEST).is_file() and (path / LAST).is_file():
            raise CharRNNError(
                f"{path} has no {BEST} yet (the first validation writes it); its {LAST} holds the latest weights. "
                f"Pass {path / LAST}"
            )
        path = path / BEST
    if not path.is_file():
        raise CharRNNError(f"no checkpoint at {path}. Pass a run directory or a .pt file written by `charrnn train`")
    return path


def _check_archive(path: Path) -> None:
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):  # the last: a damaged version byte
        raise CharRNNError(
            f"{path} is not a charrnn checkpoint (not a torch archive, or truncated). "
            "Pass a checkpoint written by `charrnn train`, e.g. the run's last.pt"
        ) from None
    unpacked = sum(e.file_size for e in entries)
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or unpacked > size:
        raise CharRNNError(
            f"{path} holds compressed entries, which torch never writes; it was not written by charrnn. "
            "Pass a checkpoint written by `charrnn train`"
        )


def load(path: Path) -> dict:
    """The content dict of a checkpoint file or run directory, verified."""
    path = resolve(path)
    _check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or hostile files
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CharRNNError(
            f"{path} is damaged or not a charrnn checkpoint ({reason}). "
            "Use another checkpoint, e.g. the run's last.pt or best.pt"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CharRNNError(f"{path} is a torch file but not a charrnn checkpoint. Pass one written by `charrnn train`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CharRNNError(
            f"{path} has checkpoint format {payload['format_version']}, newer than this charrnn reads "
            f"({FORMAT_VERSION}). Upgrade charrnn"
        )
    content = payload.get("content")
    if not isinstance(content, dict) or content_sha256(content) != payload.get("sha256"):
        raise CharRNNError(
            f"{path} is damaged: its contents do not match the SHA-256 it carries. "
            "Use another checkpoint, e.g. the run's last.pt or best.pt"
        )
    if isinstance(content.get("model_config"), dict):
        content["model_config"] = {**ADDED_MODEL_OPTIONS, **content["model_config"]}
    if isinstance(content.get("train_config"), dict):
        content["train_config"] = {**ADDED_TRAIN_OPTIONS, **content["train_config"]}
    return content


def training_text(content: dict, fix: str):
    """The encoded text a checkpoint was trained on, refused when the file has changed since."""
    from charrnn.data import ids as corpus_ids

    source = content["train_config"]["data"]
    encoded = corpus_ids.load(source)
    if encoded.sha256 != content["data_sha256"]:
        raise CharRNNError(f"the text of {source} changed since the model was trained. {fix}")
    return encoded


def training_content(*, model_config, train_config, vocab, data_sha256: str, model_state: dict, **progress) -> dict:
    """What every checkpoint of a run holds: the model, how it was made, and `progress` (step, elapsed_s,
    best_val_loss, last_val_loss, and what a resume needs on top of that)."""
    from charrnn import __version__
    from charrnn.settings.config import to_dict

    return {
        "charrnn_version": __version__,
        "model_config": to_dict(model_config),
        "train_config": to_dict(train_config),
        "vocab": list(vocab),
        "data_sha256": data_sha256,
        "model": model_state,
        **progress,
    }


def report(path: Path, content: dict) -> dict:
    """What a checkpoint holds, as `charrnn info --json` prints it and `charrnn serve` answers at /v1/model."""
    model = content["model_config"]

    def bpc(key: str) -> float | None:
        loss = content.get(key)
        return None if loss is None else loss / math.log(2)

    return {
        "checkpoint": str(path),
        "charrnn_version": content.get("charrnn_version"),
        "model": model,
        # Counted from the shape: a tied embedding is two names of one matrix (two copies in an averaged best.pt).
        "parameters": parameter_count(ModelConfig(**model)),
        "vocab_size": len(content["vocab"]),
        "vocab": "".join(content["vocab"]),
        "train": content["train_config"],
        "step": content["step"],
        "elapsed_s": content["elapsed_s"],
        "best_val_bpc": bpc("best_val_loss"),
        "last_val_bpc": bpc("last_val_loss"),
        "resumable": "optimizer" in content,
    }
