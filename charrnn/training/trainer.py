"""The training loop: from configuration to a run directory of checkpoints and metrics.

`Trainer.run()` yields a `Progress` after every step and prints nothing; the CLI renders it.
Everything a resumed run needs to continue bit-for-bit (weights, optimiser, step, elapsed
time, data position, hidden state, random state) goes into `last.pt`. The objective
(`objectives.py`) supplies the batches and the validation loss; the loop is the same for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn import distributed
from charrnn.data import ids as corpus_ids
from charrnn.data.splits import splits
from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import DIVERGED_FACTOR, diverged
from charrnn.model import device as devices
from charrnn.model.network import CharRNN, detach_state, has_finite_weights
from charrnn.settings import config_file as configfile
from charrnn.settings.config import ModelConfig, to_dict
from charrnn.settings.options import wrap_seed
from charrnn.settings.resolve import Resolved, Sources, resolve
from charrnn.storage import checkpoint
from charrnn.training import recipe as recipes
from charrnn.training import step_timing as probe
from charrnn.training.averaging import WeightAverage
from charrnn.training.objectives import check_splits, objective_for
from charrnn.training.run_dir import METRICS, RunDir

MIN_LR_FRACTION = 0.1


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
    val_chars: int | None = None  # how many validation characters were scored


@dataclass(frozen=True)
class Outcome:
    finished: bool
    step: int
    elapsed_s: float
    best_val_bpc: float | None
    out_dir: Path


def _select_streams(state, streams: slice, device: torch.device):
    """Streams `streams` of a (layers, batch, hidden) state or LSTM pair, on `device`."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(s[:, streams].to(device) for s in state)
    return state[:, streams].to(device)


def _join_streams(states: list):
    """The states of all processes, in rank order, as one state over all streams."""
    if states[0] is None:
        return None
    if isinstance(states[0], tuple):
        return [torch.cat(parts, dim=1) for parts in zip(*states)]
    return torch.cat(states, dim=1)


def default_out_dir(data: str, cell: str) -> Path:
    return Path("runs") / f"{Path(data).stem}-{cell}"


def open_training(
    out_dir: Path | str,
    options: dict,
    *,
    config_file: Path | None = None,
    preset: str | None = None,
    resume: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    use_recipe: bool = True,
) -> Trainer:
    """A Trainer for the run in `out_dir`, its options resolved as `charrnn train` resolves them (`options`
    are the command line's, by field name). A fresh language-model run without a preset or --init-from
    fills the options nobody gave from the recipe for its text and budget (`recipe.py`), unless
    `use_recipe` is False. Everything is read, checked and built before the run directory is changed;
    use it as a context manager, or call `close()`."""
    run_dir = RunDir(out_dir)
    saved = run_dir.saved_run(resume, force)
    file_options, config_path = {}, None
    if config_file is not None:
        file_train, file_model = configfile.read(config_file)
        file_options, config_path = {**file_model, **file_train}, str(config_file)
    sources = Sources(dict(options), file_options, config_path, preset, saved)
    resolved = resolve(sources)
    base = None
    if saved is None and resolved.train.init_from is not None:
        base = checkpoint.load(Path(resolved.train.init_from))
        resolved = resolve(dataclasses.replace(sources, base=base["model_config"]))
    chosen, probe_s = None, 0.0
    if use_recipe and saved is None and preset is None and base is None and resolved.train.objective == "lm":
        encoded = corpus_ids.load(resolved.train.data)
        chosen, probe_s = _recipe(resolved, encoded)
        if chosen.values:
            resolved = resolve(dataclasses.replace(sources, recipe=chosen.values))
        else:
            chosen = None  # every option it would choose was given
    else:
        encoded = None
    return Trainer(
        run_dir, resolved, saved=saved, base=base, stop=stop, recipe=chosen, spent_s=probe_s, encoded=encoded
    )


def _recipe(resolved: Resolved, encoded: corpus_ids.CorpusIds) -> tuple[recipes.Recipe, float]:
    """The recipe for the text and budget of `resolved`, and the seconds spent timing steps on the device,
    which a time budget needs."""
    parts = splits(len(encoded.ids))
    train_chars, val = parts["train"].end, parts["val"]
    spent = [0.0]
    step_seconds = overhead = None
    if resolved.train.max_time is not None and not distributed.from_environment().active:
        device = devices.resolve(resolved.train.device, 0)

        def step_seconds(shape: ModelConfig) -> float:
            devices.check_precision(resolved.train.precision, device, shape.cell)
            began = time.perf_counter()
            seconds = probe.step_seconds(shape, resolved.train, device)
            spent[0] += time.perf_counter() - began
            return seconds

        def overhead(shape: ModelConfig) -> probe.Overhead:
            began = time.perf_counter()
            val_chars = min(resolved.train.val_chars or len(val), len(val))
            seconds = probe.overhead_seconds(shape, resolved.train, device, val_chars)
            spent[0] += time.perf_counter() - began
            return seconds

    vocab_size = len(encoded.chars)
    chosen = recipes.choose(
        resolved.train, resolved.model, resolved.origin, train_chars, vocab_size, step_seconds,
        overhead=overhead and functools.cache(overhead), spent_s=lambda: spent[0],
    )  # fmt: skip
    return chosen, spent[0]


class Trainer:
    """Trains one run. It receives resolved options (`open_training` resolves them) and the checkpoint it
    resumes or fine-tunes from; it touches the run directory only once all of it is built."""

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
        self.run_dir = run_dir
        self.resolved = resolved
        self.recipe = recipe
        self.spent_s = spent_s
        self.stop = stop or threading.Event()
        self.ran_to_the_end = False
        self.config = resolved.train

        self.group = distributed.from_environment()
        self.device = devices.resolve(self.config.device, self.group.local_rank)
        distributed.start(self.group, self.device)
        with distributed.local_leader_first(self.group):
            # One process per machine encodes an uncached text; the others then read its cache.
            if saved is not None:
                encoded = checkpoint.training_text(
                    saved, "Restore the original text, or start a new run without --resume"
                )
            elif encoded is None:
                encoded = corpus_ids.load(self.config.data)
        self.data_sha256 = encoded.sha256
        known = saved or base
        self.vocab = Vocabulary(known["vocab"] if known is not None else encoded.chars)
        self.ids, self.skipped_chars = encoded.under(self.vocab, skip_unknown=self.config.skip_unknown)
        self.splits = splits(len(self.ids))
        self.model_config = ModelConfig(vocab_size=len(self.vocab), **resolved.model)
        self.objective = objective_for(self.config, self.model_config, resolved.origin)
        check_splits(self.splits)
        devices.check_precision(self.config.precision, self.device, self.model_config.cell)
        devices.check_memory(self.model_config, self.config, self.device)
        first, count = self.group.streams(self.config.batch_size)
        train_split = self.splits["train"]
        self.batcher = self.objective.batcher(self.ids[train_split.start : train_split.end], first, count)

        torch.manual_seed(self.config.seed)
        self.model = CharRNN(self.model_config).to(self.device)
        if self.group.rank:
            # Every process starts from rank 0's weights (DDP copies them); dropout masks differ per process.
            torch.manual_seed(wrap_seed(self.config.seed + self.group.rank))
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.config.lr,
        )
        # Timing steps for the recipe was spent on this run's time budget.
        self.step, self.elapsed_s, self.best_val_loss, self.state = 0, self.spent_s, None, None
        self.last_val_loss = None
        self.closing_s = 0.0  # what the latest validation with its checkpoints took
        if base is not None:
            self.model.load_state_dict(base["model"])
        self.average = WeightAverage(self.model, self.config.ema_decay) if self.config.ema_decay else None
        self.scaler = devices.grad_scaler(self.device, self.config.precision)
        if saved is not None:
            self._restore(saved)
        # What a training step calls: the model, wrapped by DDP to average gradients, compiled on request.
        self.step_module = self.model
        if self.group.active:
            self.step_module = torch.nn.parallel.DistributedDataParallel(self.step_module)
        if self.config.compile:
            self.step_module = devices.compiled(self.step_module, self.device)
        # Only now, with every option checked and everything built, is the run directory changed.
        if self.group.is_main:
            self.run_dir.begin(fresh=saved is None)
            self.run_dir.truncate_metrics(self.step)
            self._write_config()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _restore(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.batcher.load_state_dict(saved["batcher"])
        self.step, self.elapsed_s, self.best_val_loss = saved["step"], saved["elapsed_s"], saved["best_val_loss"]
        self.last_val_loss = saved.get("last_val_loss")
        # The checkpoint holds the state of all --batch-size streams; this process continues its own share.
        self.state = _select_streams(saved["hidden"], self.batcher.streams, self.device)
        rank_rng = saved.get("rank_rng", [])
        if len(rank_rng) == self.group.world_size:
            self._set_rng_state(rank_rng[self.group.rank])
        else:
            torch.set_rng_state(saved["rng"])
        if self.average is not None:
            self.average.load_state_dict(saved["average"])
        if "scaler" in saved and self.scaler.is_enabled():
            self.scaler.load_state_dict(saved["scaler"])

    def _rng_state(self) -> dict:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def _write_config(self) -> None:
        resolved = {"model": to_dict(self.model_config), "train": to_dict(self.config)}
        note = None if self.recipe is None else f"recipe: {self.recipe.reason}"
        configfile.write(self.run_dir.path / configfile.CONFIG, resolved, note=note)

    def close(self) -> None:
        self.run_dir.unlock()
        distributed.stop(all_done=self.ran_to_the_end)

    def budget_fraction(self) -> float:
        fractions = []
        if self.config.max_steps is not None:
            fractions.append(self.step / self.config.max_steps)
        if self.config.max_time is not None:
            # The time the last validation and its checkpoints took is kept for the final one.
            fractions.append((self.elapsed_s + self.closing_s) / self.config.max_time)
        return min(1.0, max(fractions))

    def lr(self) -> float:
        """Linear warm-up, then cosine decay to a tenth of --lr at the end of the budget."""
        if self.step < self.config.warmup_steps:
            return self.config.lr * (self.step + 1) / self.config.warmup_steps
        cosine = 0.5 * (1 + math.cos(math.pi * self.budget_fraction()))
        return self.config.lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * cosine)

    def content(self, full: bool) -> dict:
        """What a checkpoint holds; `full` adds what resuming needs."""
        content = checkpoint.training_content(
            model_config=self.model_config,
            train_config=self.config,
            vocab=self.vocab.chars,
            data_sha256=self.data_sha256,
            model_state=self.model.state_dict(),
            step=self.step,
            elapsed_s=self.elapsed_s,
            best_val_loss=self.best_val_loss,
            last_val_loss=self.last_val_loss,
        )
        if full:
            # Every process must call this together: the hidden state and random state come from all of them.
            content.update(
                optimizer=self.optimizer.state_dict(),
                batcher=self.batcher.state_dict(),
                hidden=_join_streams(distributed.gather(self.group, self.state)),
                rng=torch.get_rng_state(),
                rank_rng=distributed.gather(self.group, self._rng_state()),
            )
            if self.scaler.is_enabled():
                content["scaler"] = self.scaler.state_dict()
        if self.average is not None:
            # best.pt holds the averaged weights, which validation scored; last.pt resumes training.
            if full:
                content["average"] = self.average.state_dict()
            else:
                content["model"] = self.average.model_state()
        return content

    def validate(self):
        split = self.splits["val"]
        with self.average.applied() if self.average is not None else contextlib.nullcontext():
            with devices.autocast(self.device, self.config.precision):
                return self.objective.validation_score(self.model, self.ids, split, self.group)

    def run(self) -> Iterator[Progress]:
        params = list(self.model.parameters())
        chars_per_step = self.config.batch_size * self.config.seq_len
        clip_norm = self.config.clip_norm or math.inf
        self.model.train()
        stopping = False
        with open(self.run_dir.path / METRICS, "a") if self.group.is_main else contextlib.nullcontext() as metrics:
            while True:
                _, stopping, self.elapsed_s = distributed.agree(
                    self.group, self.device, 0.0, self.stop.is_set(), self.elapsed_s
                )
                if stopping or self.budget_fraction() >= 1.0:
                    break
                began = time.perf_counter()
                inputs, targets, fresh = self.batcher.next_batch()
                inputs, targets = inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
                if fresh or self.model_config.context is not None:
                    # A bounded context reads every window from a zero state (context.py).
                    self.state = None
                lr = self.lr()
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with devices.autocast(self.device, self.config.precision):
                    logits, state = self.step_module(inputs, self.state)
                    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
                if self.config.clip_value:
                    torch.nn.utils.clip_grad_value_(params, self.config.clip_value)
                train_loss = float(loss.detach())
                # Under fp16 an overflowing gradient is expected now and then: the scaler skips that step.
                if not (math.isfinite(train_loss) and (math.isfinite(grad_norm) or self.scaler.is_enabled())):
                    raise self._non_finite(self.step + 1)
                if diverged(train_loss, len(self.vocab)):
                    raise self._non_finite(self.step + 1, "the training loss", train_loss)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.average is not None:
                    self.average.update()
                self.state = detach_state(state)
                self.step += 1
                self.elapsed_s += time.perf_counter() - began
                train_loss, _, self.elapsed_s = distributed.agree(
                    self.group, self.device, train_loss, False, self.elapsed_s
                )
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
                if metrics is not None:
                    metrics.write(json.dumps(dataclasses.asdict(progress)) + "\n")
                    metrics.flush()
                yield progress
        if stopping:
            self._save_last()
        # Every process leaves the loop at the same step, agreed by the all-reduce above.
        self.ran_to_the_end = True

    def _save_last(self) -> None:
        content = self.content(full=True)
        if self.group.is_main:
            checkpoint.save(self.run_dir.path / checkpoint.LAST, content)

    def _non_finite(self, step: int, what: str = "the loss or gradient", loss: float | None = None) -> CharRNNError:
        """The error for a run that diverged: to a value that is not finite, or to a finite `loss` far worse
        than guessing uniformly (`evaluate.diverged`)."""
        advice = [f"lower {self.resolved.named('lr', f'{self.config.lr:g}')}"]
        if not self.config.clip_norm or self.config.clip_norm > 1:
            advice.append("clip gradients with --clip-norm 1")
        elif self.config.clip_norm > 0.25:
            advice.append(f"clip harder than {self.resolved.named('clip_norm', self.config.clip_norm)}, e.g. 0.25")
        last = self.run_dir.path / checkpoint.LAST
        saved = f"; the last good checkpoint is {last}" if last.is_file() else "; no checkpoint was written yet"
        happened = f"{what} became non-finite at step {step}"
        if loss is not None:
            happened = (
                f"{what} diverged at step {step}: {loss / math.log(2):.4g} bits per character, over "
                f"{DIVERGED_FACTOR} times the {math.log2(len(self.vocab)):.2f} of guessing uniformly"
            )
        return CharRNNError(f"{happened}. {' or '.join(advice).capitalize()}{saved}")

    def _evaluate_and_save(self, progress: Progress) -> Progress:
        began = time.perf_counter()
        # Every process scores its share of the windows and gets the whole score; rank 0 writes.
        score = self.validate()
        val_loss = score.loss
        if not math.isfinite(val_loss) or not has_finite_weights(self.model):
            raise self._non_finite(self.step, "the validation loss or the weights")
        if diverged(val_loss, len(self.vocab)):
            raise self._non_finite(self.step, "the validation loss", val_loss)
        self.last_val_loss = val_loss
        if self.best_val_loss is None or val_loss < self.best_val_loss:
            self.best_val_loss = val_loss
            if self.group.is_main:
                checkpoint.save(self.run_dir.path / checkpoint.BEST, self.content(full=False))
        self._save_last()
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
        )

    def outcome(self) -> Outcome:
        finished = self.budget_fraction() >= 1.0
        best = None if self.best_val_loss is None else self.best_val_loss / math.log(2)
        if finished and self.group.is_main:
            self.run_dir.write_summary({"step": self.step, "elapsed_s": self.elapsed_s, "best_val_bpc": best})
        return Outcome(finished, self.step, self.elapsed_s, best, self.run_dir.path)
