"""nanoGPT, run from a checkout of it: its `train.py` with its README's CPU command for a character model.

    python benchmarks/nanogpt.py CHECKOUT SPLIT_FOLDER BUDGET_S SEED

The split's training and validation characters, as charrnn's ids, become its `train.bin` and `val.bin`
(uint16) with a `meta.pkl` naming the vocabulary size. `train.py` has no time budget: a run of
TIMING_ITERS iterations times one iteration (outside the budget, as a user would time it), and
`--max_iters` and `--lr_decay_iters` are set to fill the budget (and `--eval_interval` to a tenth of them
when that is under its 250); a run still going at 1.1 times the budget is stopped. It keeps the
checkpoint that validated best (its `always_save_checkpoint=False`), which is scored on every test
character in windows of its 64-character block advanced by 32, each scoring its last 32.
Its seed is its own (1337): SEED is not passed on. Needs `numpy`.
"""

from __future__ import annotations

import math
import pickle
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BLOCK, STRIDE, TIMING_ITERS = 64, 32, 30
CPU_COMMAND = [
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
    f"--block_size={BLOCK}", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0",
]  # fmt: skip
ITER_TIME = re.compile(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", re.MULTILINE)
TRAINING_SHARE = 0.9  # the rest pays for its validations and its start-up
EVAL_INTERVAL = 250  # its config's


def write_data(folder: Path, split: dict) -> Path:
    import numpy as np

    data = folder / "nanogpt"
    data.mkdir(exist_ok=True)
    ids = split["ids"].numpy().astype(np.uint16)
    (_, train_end), (val_start, val_end) = split["train"], split["val"]
    ids[:train_end].tofile(data / "train.bin")
    ids[val_start:val_end].tofile(data / "val.bin")
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(split["chars"])}, f)
    return data


def train(checkout: Path, data: Path, out: Path, iters: int, timeout: float | None) -> str:
    # train.py reads data/<dataset>: an absolute dataset path stands for itself there.
    command = [sys.executable, "train.py", *CPU_COMMAND, f"--dataset={data}", f"--out_dir={out}"]
    # Its config validates every 250 iterations; a short budget validates at least ten times, or it might
    # stop before its first checkpoint.
    command += [f"--max_iters={iters}", f"--lr_decay_iters={iters}", f"--eval_interval={eval_interval(iters)}"]
    try:
        done = subprocess.run(command, cwd=checkout, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired as stopped:
        return stopped.stdout.decode() if isinstance(stopped.stdout, bytes) else stopped.stdout or ""
    except subprocess.CalledProcessError as failed:
        sys.exit(f"nanoGPT's train.py failed:\n{failed.stderr[-2000:]}")
    return done.stdout


def eval_interval(iters: int) -> int:
    return max(1, min(EVAL_INTERVAL, iters // 10))


@torch.no_grad()
def test_bpc(checkout: Path, checkpoint: Path, split: dict) -> float:
    sys.path.insert(0, str(checkout))
    from model import GPT, GPTConfig  # nanoGPT's

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**saved["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in saved["model"].items()})
    model.eval()
    ids, (start, end) = split["ids"], split["test"]
    total = 0.0
    ends = list(range(start + STRIDE, end + STRIDE, STRIDE))
    for at in range(0, len(ends), 64):
        windows = []
        for stop in ends[at : at + 64]:
            stop = min(stop, end)
            windows.append(ids[stop - BLOCK - 1 : stop])  # predicts ids[stop - BLOCK : stop]
        batch = torch.stack(windows)  # the test split starts far enough in for every window to be full
        logits, _ = model(batch[:, :-1], batch[:, 1:].contiguous())
        losses = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
        for row, stop in enumerate(ends[at : at + 64]):
            first = stop - STRIDE if stop - STRIDE >= start else start
            scored = min(stop, end) - first
            total += float(losses[row, BLOCK - scored :].sum())
    return total / math.log(2) / (end - start)


def main(checkout: Path, folder: Path, budget_s: float, seed: int) -> None:
    del seed  # nanoGPT seeds itself
    split = common.read_split(folder)
    data = write_data(folder, split)
    timing = train(checkout, data, folder / "nanogpt-timing", TIMING_ITERS, None)
    iter_s = statistics.median(float(ms) / 1000 for ms in ITER_TIME.findall(timing)[2:])
    iters = max(1, int(TRAINING_SHARE * budget_s / iter_s))
    out = folder / "nanogpt-out"
    began = time.perf_counter()
    log = train(checkout, data, out, iters, 1.1 * budget_s)
    seconds = time.perf_counter() - began
    vals = [float(v) for v in re.findall(r"val loss ([\d.]+)", log)]
    best_val = min(vals) / math.log(2) if vals else None
    test = test_bpc(checkout, out / "ckpt.pt", split) if (out / "ckpt.pt").is_file() else None
    common.report(val_bpc=best_val, test_bpc=test, steps=iters, seconds=seconds)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
