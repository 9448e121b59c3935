"""Charts as PNG files. matplotlib is an optional extra, imported only here and only when a plot is asked for."""

from __future__ import annotations

import math
from pathlib import Path

from charrnn.errors import CharRNNError

INSTALL_HINT = "pip install 'charrnn-lm[plot]'"


def require_matplotlib(what: str = "--plot"):
    """pyplot on a file-only backend; call it before long work so a missing extra fails at once."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharRNNError(f"{what} needs matplotlib, which is not installed. Install it: {INSTALL_HINT}") from None
    return plt


def image_path(path: Path, flag: str) -> Path:
    """The file a plot will be written to: its suffix names the format, and a name without one gets .png, as
    matplotlib would add it. Checked before any work, so that a long measurement is not lost to a typo."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    if path.is_dir():
        raise CharRNNError(f"{flag} {path} is a directory. Pass the image file to write, e.g. {path / 'plot.png'}")
    if path.exists() and not path.is_file():
        raise CharRNNError(f"{flag} {path} is not a regular file (a FIFO or a device). Pass the image file to write")
    formats = FigureCanvasBase.get_supported_filetypes()
    if not path.suffix:
        return path.with_name(path.name + ".png")
    if path.suffix[1:].lower() not in formats:
        raise CharRNNError(
            f"{flag} {path}: matplotlib cannot write {path.suffix!r} images. "
            f"End the name with one of: {', '.join('.' + f for f in sorted(formats))}"
        )
    return path


def _save(fig, path: Path, flag: str) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
    except OSError as e:
        raise CharRNNError(f"cannot write the plot {path} ({e.strerror or e}). Pass a writable {flag} path") from None
    finally:
        require_matplotlib().close(fig)


def gradient_norms(curves: dict[str, list[float | None]], path: Path, title: str, flag: str = "--plot") -> None:
    """One line per model: |dL/dh_{t-k}| against k, on a log scale."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, norms in curves.items():
        points = [(k, n) for k, n in enumerate(norms) if n is not None and n > 0 and math.isfinite(n)]
        ax.plot([k for k, _ in points], [n for _, n in points], label=label, linewidth=1.6)
    ax.set_yscale("log")
    ax.set_xlabel("k (steps back from the loss)")
    ax.set_ylabel("|dL / dh(t-k)|, mean over windows")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, flag)


def validation_curves(
    curves: dict[str, list[tuple[float, float]]], path: Path, title: str, flag: str = "--plot"
) -> None:
    """One line per configuration: validation bits per character against training time."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in curves.items():
        if points:
            ax.plot([t / 60 for t, _ in points], [bpc for _, bpc in points], label=label, linewidth=1.6, marker=".")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("validation bits per character")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, flag)


def training_run(metrics: list[dict], path: Path, title: str, flag: str = "--out") -> None:
    """Four panels of one run's metrics.jsonl: bpc against steps and against time, learning rate, gradient norm."""
    plt = require_matplotlib("charrnn plot")
    steps = [m["step"] for m in metrics]
    minutes = [m["elapsed_s"] / 60 for m in metrics]
    train_bpc = [m["train_loss"] / math.log(2) for m in metrics]
    val = [(m["step"], m["elapsed_s"] / 60, m["val_bpc"]) for m in metrics if m.get("val_bpc") is not None]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for ax, x, val_x, label in ((axes[0, 0], steps, 0, "step"), (axes[0, 1], minutes, 1, "training time (minutes)")):
        ax.plot(x, train_bpc, label="training", linewidth=0.8, alpha=0.7)
        ax.plot([v[val_x] for v in val], [v[2] for v in val], label="validation", marker=".", linewidth=1.6)
        ax.set_xlabel(label)
        ax.set_ylabel("bits per character")
        ax.legend(fontsize=8)
    axes[1, 0].plot(steps, [m["lr"] for m in metrics], linewidth=1.2)
    axes[1, 0].set_ylabel("learning rate")
    axes[1, 1].plot(steps, [m["grad_norm"] for m in metrics], linewidth=0.8)
    axes[1, 1].set_yscale("log")
    axes[1, 1].set_ylabel("gradient norm, before clipping")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, flag)
