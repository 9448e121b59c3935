"""The training loop: from resolved options to a run directory of checkpoints and metrics.

`Trainer.run()` yields a `Progress` after every step and prints nothing; the CLI renders it. The pieces it
calls each live in their own module: `setup` (text, optimiser, the module a step calls), `schedule` (budget
and learning rate), `step` (backward and update), `divergence` (stop with advice), `validation` (score and
save) and `state` (what `last.pt` holds to resume bit-for-bit). The objective (`objectives.py`) supplies the
batches and the validation score; the loop is the same for both. `launch.open_training` builds a Trainer
from options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator

import torch

from charrnn import distributed
from charrnn.data import ids as corpus_ids
from charrnn.data.splits import splits
from charrnn.data.vocabulary import Vocabulary
from charrnn.model import device as devices
from charrnn.model.network import CharRNN, detach_state, has_finite_weights
from charrnn.settings import config_file as configfile
from charrnn.settings.config import ModelConfig, to_dict
from charrnn.settings.options import wrap_seed
from charrnn.settings.resolve import Resolved
from charrnn.storage import checkpoint
from charrnn.training import divergence, schedule, setup, state, step, validation
from charrnn.training import recipe as recipes
from charrnn.training.averaging import WeightAverage
from charrnn.training.objectives import check_splits, objective_for
from charrnn.training.progress import Outcome, Progress
from charrnn.training.run_dir import METRICS, RunDir


class Trainer:
    """Trains one run. It receives resolved options and the checkpoint it resumes or fine-tunes from; it
    touches the run directory only once all of it is built."""

    def __init__(
        self,
        run_dir: RunDir,
        resolved: Resolved,
        *,
        saved: dict | None = None,
        base: dict | None = None,
        stop: threading.Event | None = None,
        recipe: recipes.Recipe | None = None,
        spent_s: float = 0.0,
        encoded: corpus_ids.CorpusIds | None = None,
    ):
        self.run_dir, self.resolved, self.config = run_dir, resolved, resolved.train
        self.recipe, self.spent_s = recipe, spent_s
        self.stop = stop or threading.Event()
        self.ran_to_the_end = False
        self.group = distributed.from_environment()
        self.device = devices.resolve(self.config.device, self.group.local_rank)
        distributed.start(self.group, self.device)
        self._read_text(saved, base, encoded)
        self._build(base)
        if saved is not None:
            state.restore(self, saved)
        self.step_module = setup.step_module(self.model, self.group, self.config, self.device)
        # Only now, with every option checked and everything built, is the run directory changed.
        if self.group.is_main:
            self.run_dir.begin(fresh=saved is None)
            self.run_dir.truncate_metrics(self.step)
            self._write_config()

    def _read_text(self, saved: dict | None, base: dict | None, encoded) -> None:
        encoded = setup.training_text(self.config, self.group, saved, encoded)
        self.data_sha256 = encoded.sha256
        known = saved or base
        self.vocab = Vocabulary(known["vocab"] if known is not None else encoded.chars)
        self.ids, self.skipped_chars = encoded.under(self.vocab, skip_unknown=self.config.skip_unknown)
        self.splits = splits(len(self.ids))

    def _build(self, base: dict | None) -> None:
        """Check the options against the text and device, then build the batches, model and optimiser."""
        config = self.config
        self.model_config = ModelConfig(vocab_size=len(self.vocab), **self.resolved.model)
        self.objective = objective_for(config, self.model_config, self.resolved.origin)
        check_splits(self.splits)
        devices.check_precision(config.precision, self.device, self.model_config.cell)
        devices.check_memory(self.model_config, config, self.device)
        first, count = self.group.streams(config.batch_size)
        train_split = self.splits["train"]
        self.batcher = self.objective.batcher(self.ids[train_split.start : train_split.end], first, count)
        torch.manual_seed(config.seed)
        self.model = CharRNN(self.model_config).to(self.device)
        if self.group.rank:
            # Every process starts from rank 0's weights (DDP copies them); dropout masks differ per process.
            torch.manual_seed(wrap_seed(config.seed + self.group.rank))
        self.optimizer = setup.optimizer(self.model, config)
        # Timing steps for the recipe was spent on this run's time budget.
        self.step, self.elapsed_s, self.best_val_loss, self.state = 0, self.spent_s, None, None
        self.last_val_loss = None
        self.closing_s = 0.0  # what the latest validation with its checkpoints took
        if base is not None:
            self.model.load_state_dict(base["model"])
        self.average = WeightAverage(self.model, config.ema_decay) if config.ema_decay else None
        self.scaler = devices.grad_scaler(self.device, config.precision)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write_config(self) -> None:
        resolved = {"model": to_dict(self.model_config), "train": to_dict(self.config)}
        note = None if self.recipe is None else f"recipe: {self.recipe.reason}"
        configfile.write(self.run_dir.path / configfile.CONFIG, resolved, note=note)

    def close(self) -> None:
        self.run_dir.unlock()
        distributed.stop(all_done=self.ran_to_the_end)

    def budget_fraction(self) -> float:
        # The time the last validation and its checkpoints took is kept for the final one.
        return schedule.budget_fraction(self.config, self.step, self.elapsed_s + self.closing_s)

    def lr(self) -> float:
        return schedule.learning_rate(self.config, self.step, self.budget_fraction())

    def content(self, full: bool) -> dict:
        """What a checkpoint holds; `full` adds what resuming needs."""
        return state.snapshot(self, full)

    def validate(self):
        return validation.score(self)

    def run(self) -> Iterator[Progress]:
        """Train to the end of the budget or until `stop` is set, yielding after every step."""
        self.model.train()
        stopping = False
        self.paced_from = self.step, self.elapsed_s  # the run's own pace is measured from here
        with open(self.run_dir.path / METRICS, "a") if self.group.is_main else contextlib.nullcontext() as metrics:
            while True:
                _, stopping, self.elapsed_s = distributed.agree(
                    self.group, self.device, 0.0, self.stop.is_set(), self.elapsed_s
                )
                if stopping or self.budget_fraction() >= 1.0:
                    break
                progress = self._train_step()
                if self.step % self.config.eval_every == 0 or progress.budget_fraction >= 1.0:
                    progress = self._validate_and_save(progress)
                if metrics is not None:
                    metrics.write(json.dumps(dataclasses.asdict(progress)) + "\n")
                    metrics.flush()
                yield progress
        if stopping:
            # Every process takes part (the checkpoint gathers their states); a run that never replaced the
            # one it was started over writes it into the folder `close()` then removes.
            self._save_last()
        # Every process leaves the loop at the same step, agreed by the all-reduce above.
        self.ran_to_the_end = True

    def _train_step(self) -> Progress:
        began = time.perf_counter()
        inputs, targets, fresh = self.batcher.next_batch()
        batch = inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        if fresh or self.model_config.context is not None:
            # A bounded context reads every window from a zero state (ModelConfig.context).
            self.state = None
        lr = self.lr()
        step.set_learning_rate(self.optimizer, lr)
        params = list(self.model.parameters())
        train_loss, grad_norm, new_state = step.backward(
            self.step_module, params, self.optimizer, self.scaler, batch, self.state, self.config, self.device
        )
        divergence.check_training_step(
            self.resolved, self.run_dir, len(self.vocab), self.step + 1, train_loss, grad_norm, self.scaler.is_enabled()
        )
        step.update(self.optimizer, self.scaler, self.average)
        self.state = detach_state(new_state)
        self.step += 1
        self.elapsed_s += time.perf_counter() - began
        train_loss, _, self.elapsed_s = distributed.agree(self.group, self.device, train_loss, False, self.elapsed_s)
        return Progress(
            step=self.step,
            elapsed_s=self.elapsed_s,
            lr=lr,
            train_loss=train_loss,
            grad_norm=grad_norm,
            clipped=grad_norm > (self.config.clip_norm or math.inf),
            chars_per_s=self.config.batch_size * self.config.seq_len / (time.perf_counter() - began),
            budget_fraction=self.budget_fraction(),
        )

    def _validate_and_save(self, progress: Progress) -> Progress:
        began = time.perf_counter()
        # Every process scores its share of the windows and gets the whole score; rank 0 writes.
        score = self.validate()
        val_loss = score.loss
        divergence.check_validation(
            self.resolved, self.run_dir, len(self.vocab), self.step, val_loss, has_finite_weights(self.model)
        )
        self.last_val_loss = val_loss
        if self.best_val_loss is None or val_loss < self.best_val_loss:
            self.best_val_loss = val_loss
            if self.group.is_main:
                validation.save(self.run_dir.path, checkpoint.BEST, self.content(full=False))
        self._save_last()
        if self.group.is_main:
            self.run_dir.commit()  # a good checkpoint: now the new run replaces the one it was started over
        # Rank 0's, as its clock is every process's: they must agree on the step that ends the run.
        _, _, self.closing_s = distributed.agree(self.group, self.device, 0.0, False, time.perf_counter() - began)
        self.elapsed_s += self.closing_s
        # Validation time counts against the budget, so it may be the validation that ends it.
        return dataclasses.replace(
            progress,
            val_loss=val_loss,
            val_bpc=val_loss / math.log(2),
            val_chars=score.chars,
            elapsed_s=self.elapsed_s,
            budget_fraction=self.budget_fraction(),
            projected_steps=self._projected_steps(),
        )

    def _projected_steps(self) -> int | None:
        if self.config.max_time is None:
            return None
        first_step, first_s = self.paced_from
        pace_s = (self.elapsed_s - first_s) / max(1, self.step - first_step)
        left_s = self.config.max_time - self.elapsed_s - self.closing_s  # the last validation's share is kept
        return schedule.projected_steps(self.config, self.step, pace_s, left_s)

    def _save_last(self) -> None:
        content = self.content(full=True)
        if self.group.is_main:
            validation.save(self.run_dir.path, checkpoint.LAST, content)

    def outcome(self) -> Outcome:
        finished = self.budget_fraction() >= 1.0
        best = None if self.best_val_loss is None else self.best_val_loss / math.log(2)
        if finished and self.group.is_main:
            self.run_dir.write_summary({"step": self.step, "elapsed_s": self.elapsed_s, "best_val_bpc": best})
        return Outcome(finished, self.step, self.elapsed_s, best, self.run_dir.target, self.run_dir.replacing)
