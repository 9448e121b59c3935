"""From options to a Trainer: read the run being resumed, a config file and an --init-from checkpoint, resolve
every option (`settings.resolve`), let the recipe fill what nobody gave, and name the run directory after the
resolved model. `plan_training` does all of it without touching the run directory (`charrnn train --dry-run`
prints its result); `open_training` then builds the Trainer."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from charrnn import distributed
from charrnn.data import ids as corpus_ids
from charrnn.data.splits import splits
from charrnn.errors import CharRNNError
from charrnn.model import device as devices
from charrnn.settings import config_file as configfile
from charrnn.settings.config import ModelConfig
from charrnn.settings.resolve import Resolved, Sources, resolve
from charrnn.storage import checkpoint
from charrnn.training import recipe as recipes
from charrnn.training import step_timing as probe
from charrnn.training.objectives import check_splits
from charrnn.training.run_dir import RunDir
from charrnn.training.trainer import Trainer


@dataclass(frozen=True)
class Plan:
    """A run resolved and not yet built: everything the Trainer receives."""

    run_dir: RunDir
    resolved: Resolved
    saved: dict | None  # the last.pt a resume continues
    base: dict | None  # the --init-from checkpoint
    recipe: recipes.Recipe | None  # None when no recipe chose a value
    probe_s: float  # seconds the recipe spent timing steps, spent on the run's time budget
    encoded: corpus_ids.CorpusIds | None


def default_out_dir(data: str, cell: str) -> Path:
    return Path("runs") / f"{Path(data).stem}-{cell}"


def plan_training(
    out_dir: Path | str | None,
    options: dict,
    *,
    config_file: Path | None = None,
    preset: str | None = None,
    resume: bool = False,
    force: bool = False,
    use_recipe: bool = True,
) -> Plan:
    """The run `charrnn train` would start in `out_dir` (None: `runs/<data>-<cell>` of the resolved model), its
    options resolved (`options` are the command line's, by field name). A fresh language-model run without a
    preset or --init-from fills the options nobody gave from the recipe for its text and budget (`recipe.py`),
    unless `use_recipe` is False; under --max-time the recipe times a few steps on the device."""
    if out_dir is None and resume:
        raise CharRNNError("--resume needs the run directory. Pass --out DIR")
    run_dir = None if out_dir is None else RunDir(out_dir)
    saved = None if run_dir is None else run_dir.saved_run(resume, force)
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
    chosen, probe_s, encoded = None, 0.0, None
    if use_recipe and saved is None and preset is None and base is None and resolved.train.objective == "lm":
        encoded = corpus_ids.load(resolved.train.data)
        # The recipe sizes a model by the text's splits: a text too short to have them is refused first.
        check_splits(splits(len(encoded.ids)))
        chosen, probe_s = _recipe(resolved, encoded)
        if chosen.values:
            resolved = resolve(dataclasses.replace(sources, recipe=chosen.values))
        else:
            chosen = None  # every option it would choose was given
    if run_dir is None:
        cell = ModelConfig(vocab_size=1, **resolved.model).cell
        run_dir = RunDir(default_out_dir(resolved.train.data, cell))
        run_dir.saved_run(resume=False, force=force)
    return Plan(run_dir, resolved, saved, base, chosen, probe_s, encoded)


def open_training(
    out_dir: Path | str | None,
    options: dict,
    *,
    config_file: Path | None = None,
    preset: str | None = None,
    resume: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    use_recipe: bool = True,
) -> Trainer:
    """A Trainer for the run `plan_training` plans. Everything is read, checked and built before the run
    directory is changed; use it as a context manager, or call `close()`."""
    plan = plan_training(
        out_dir, options, config_file=config_file, preset=preset, resume=resume, force=force, use_recipe=use_recipe
    )
    return Trainer(
        plan.run_dir,
        plan.resolved,
        saved=plan.saved,
        base=plan.base,
        stop=stop,
        recipe=plan.recipe,
        spent_s=plan.probe_s,
        encoded=plan.encoded,
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

        def step_seconds(shape: ModelConfig, batch_size: int) -> float:
            devices.check_precision(resolved.train.precision, device, shape.cell)
            began = time.perf_counter()
            seconds = probe.step_seconds(shape, dataclasses.replace(resolved.train, batch_size=batch_size), device)
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
        resolved.train,
        resolved.model,
        resolved.origin,
        train_chars,
        vocab_size,
        step_seconds,
        overhead=overhead and functools.cache(overhead),
        spent_s=lambda: spent[0],
    )
    return chosen, spent[0]
