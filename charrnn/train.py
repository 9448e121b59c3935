"""The training loop: from configuration to a run directory of checkpoints and metrics.

`Trainer.run()` yields a `Progress` after every step and prints nothing; the CLI renders it.
Everything a resumed run needs to continue bit-for-bit (weights, optimiser, step, elapsed
time, data position, hidden state, random state) goes into `last.pt`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn import __version__, checkpoint, corpus
from charrnn.config import ModelConfig, TrainConfig, to_dict
from charrnn.data import StreamBatcher, Vocabulary, splits
from charrnn.errors import CharRNNError
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN, detach_state
from charrnn.rundir import METRICS, RunDir

MIN_LR_FRACTION = 0.1
DEFAULT_MAX_TIME_S = 540.0
# Options that define what a run is; a resume must not change them.
RESUMABLE_OPTIONS = ("max_steps", "max_time", "eval_every")


@dataclass(frozen=True)
class Progress:
    step: int
    elapsed_s: float
    lr: float
    train_loss: float
    grad_norm: float
    clipped: bool
    chars_per_s: float
    budget_fraction: float
    val_loss: float | None = None
    val_bpc: float | None = None


@dataclass(frozen=True)
class Outcome:
    finished: bool
    step: int
    elapsed_s: float
    best_val_bpc: float | None
    out_dir: Path


def default_out_dir(data: str, cell: str) -> Path:
    return Path("runs") / f"{Path(data).stem}-{cell}"


class Trainer:
    def __init__(
        self,
        out_dir: Path,
        train_options: dict,
        model_options: dict,
        *,
        resume: bool = False,
        force: bool = False,
        stop: threading.Event | None = None,
    ):
        self.run_dir = RunDir(out_dir)
        self.stop = stop or threading.Event()
        saved = self._saved_run(resume, force, train_options, model_options)
        if saved is None and "max_steps" not in train_options and "max_time" not in train_options:
            train_options = {**train_options, "max_time": DEFAULT_MAX_TIME_S}
        if saved is not None:
            train_options = {**saved["train_config"], **train_options}
            model_options = {**saved["model_config"], **model_options}
        elif "data" in train_options and Path(train_options["data"]).is_file():
            train_options = {**train_options, "data": str(Path(train_options["data"]).resolve())}
        self.config = TrainConfig(**train_options)

        text, self.data_sha256 = corpus.load_text(self.config.data)
        if saved is not None and saved["data_sha256"] != self.data_sha256:
            raise CharRNNError(
                f"the text of {self.config.data} changed since this run started. "
                "Restore the original text, or start a new run without --resume"
            )
        self.vocab = Vocabulary(saved["vocab"]) if saved is not None else Vocabulary.from_text(text)
        self.ids = self.vocab.encode(text)
        self.splits = splits(len(self.ids))
        model_options.pop("vocab_size", None)
        self.model_config = ModelConfig(vocab_size=len(self.vocab), **model_options)
        train_split = self.splits["train"]
        self.batcher = StreamBatcher(
            self.ids[train_split.start : train_split.end], self.config.batch_size, self.config.seq_len, self.config.seed
        )

        self.run_dir.create()
        self.run_dir.lock()
        if saved is None:
            self.run_dir.clear()

        torch.manual_seed(self.config.seed)
        self.model = CharRNN(self.model_config)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.config.lr,
        )
        self.step, self.elapsed_s, self.best_val_loss, self.state = 0, 0.0, None, None
        if saved is not None:
            self._restore(saved)
        self.run_dir.truncate_metrics(self.step)
        self._write_config()

    def _saved_run(self, resume: bool, force: bool, train_options: dict, model_options: dict) -> dict | None:
        last = self.run_dir.path / checkpoint.LAST
        if not resume:
            if self.run_dir.holds_run() and not force:
                raise CharRNNError(
                    f"{self.run_dir.path} already holds a run. Pass --resume to continue it, "
                    "--force to start it over (its checkpoints are replaced), or another --out"
                )
            return None
        if not last.is_file():
            raise CharRNNError(
                f"there is no run to resume in {self.run_dir.path} (no {checkpoint.LAST}). "
                "Leave out --resume to start one"
            )
        saved = checkpoint.load(last)
        for given, key in ((train_options, "train_config"), (model_options, "model_config")):
            for name, value in given.items():
                if name not in RESUMABLE_OPTIONS and saved[key].get(name) != value:
                    raise CharRNNError(
                        f"--{name.replace('_', '-')} {value} differs from the run being resumed "
                        f"({saved[key].get(name)}). Leave it out to keep the saved value, or start a new run"
                    )
        return saved

    def _restore(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.batcher.load_state_dict(saved["batcher"])
        self.step, self.elapsed_s, self.best_val_loss = saved["step"], saved["elapsed_s"], saved["best_val_loss"]
        hidden = saved["hidden"]
        self.state = tuple(hidden) if isinstance(hidden, list) else hidden
        torch.set_rng_state(saved["rng"])

    def _write_config(self) -> None:
        resolved = {"model": to_dict(self.model_config), "train": to_dict(self.config)}
        (self.run_dir.path / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")

    def close(self) -> None:
        self.run_dir.unlock()

    def budget_fraction(self) -> float:
        fractions = []
        if self.config.max_steps is not None:
            fractions.append(self.step / self.config.max_steps)
        if self.config.max_time is not None:
            fractions.append(self.elapsed_s / self.config.max_time)
        return min(1.0, max(fractions))

    def lr(self) -> float:
        """Linear warm-up, then cosine decay to a tenth of --lr at the end of the budget."""
        if self.step < self.config.warmup_steps:
            return self.config.lr * (self.step + 1) / self.config.warmup_steps
        cosine = 0.5 * (1 + math.cos(math.pi * self.budget_fraction()))
        return self.config.lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * cosine)

    def content(self, full: bool) -> dict:
        """What a checkpoint holds; `full` adds what resuming needs."""
        content = {
            "charrnn_version": __version__,
            "model_config": to_dict(self.model_config),
            "train_config": to_dict(self.config),
            "vocab": self.vocab.chars,
            "data_sha256": self.data_sha256,
            "model": self.model.state_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "best_val_loss": self.best_val_loss,
        }
        if full:
            content.update(
                optimizer=self.optimizer.state_dict(),
                batcher=self.batcher.state_dict(),
                hidden=list(self.state) if isinstance(self.state, tuple) else self.state,
                rng=torch.get_rng_state(),
            )
        return content

    def validate(self) -> float:
        split = self.splits["val"]
        return evaluate(self.model, self.ids, split.start, split.end).loss

    def run(self) -> Iterator[Progress]:
        params = list(self.model.parameters())
        chars_per_step = self.config.batch_size * self.config.seq_len
        clip_norm = self.config.clip_norm or math.inf
        self.model.train()
        with open(self.run_dir.path / METRICS, "a") as metrics:
            while self.budget_fraction() < 1.0 and not self.stop.is_set():
                began = time.perf_counter()
                inputs, targets, fresh = self.batcher.next_batch()
                if fresh:
                    self.state = None
                lr = self.lr()
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                logits, state = self.model(inputs, self.state)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
                if self.config.clip_value:
                    torch.nn.utils.clip_grad_value_(params, self.config.clip_value)
                train_loss = float(loss.detach())
                if not (math.isfinite(train_loss) and math.isfinite(grad_norm)):
                    raise CharRNNError(
                        f"the loss or gradient became non-finite at step {self.step + 1}. Lower --lr "
                        f"(now {self.config.lr:g}) or clip gradients with --clip-norm 1; the last good "
                        f"checkpoint is {self.run_dir.path / checkpoint.LAST}"
                    )
                self.optimizer.step()
                self.state = detach_state(state)
                self.step += 1
                self.elapsed_s += time.perf_counter() - began
                progress = Progress(
                    step=self.step,
                    elapsed_s=self.elapsed_s,
                    lr=lr,
                    train_loss=train_loss,
                    grad_norm=grad_norm,
                    clipped=grad_norm > clip_norm,
                    chars_per_s=chars_per_step / (time.perf_counter() - began),
                    budget_fraction=self.budget_fraction(),
                )
                if self.step % self.config.eval_every == 0 or progress.budget_fraction >= 1.0:
                    progress = self._evaluate_and_save(progress)
                metrics.write(json.dumps(dataclasses.asdict(progress)) + "\n")
                metrics.flush()
                yield progress
        if self.stop.is_set():
            checkpoint.save(self.run_dir.path / checkpoint.LAST, self.content(full=True))

    def _evaluate_and_save(self, progress: Progress) -> Progress:
        began = time.perf_counter()
        val_loss = self.validate()
        if self.best_val_loss is None or val_loss < self.best_val_loss:
            self.best_val_loss = val_loss
            checkpoint.save(self.run_dir.path / checkpoint.BEST, self.content(full=False))
        self.elapsed_s += time.perf_counter() - began
        checkpoint.save(self.run_dir.path / checkpoint.LAST, self.content(full=True))
        return dataclasses.replace(
            progress, val_loss=val_loss, val_bpc=val_loss / math.log(2), elapsed_s=self.elapsed_s
        )

    def outcome(self) -> Outcome:
        finished = self.budget_fraction() >= 1.0
        best = None if self.best_val_loss is None else self.best_val_loss / math.log(2)
        if finished:
            self.run_dir.write_summary({"step": self.step, "elapsed_s": self.elapsed_s, "best_val_bpc": best})
        return Outcome(finished, self.step, self.elapsed_s, best, self.run_dir.path)
