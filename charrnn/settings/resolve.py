"""Which value each training option takes: one pure function over the places a value can come from.

Precedence, highest first: the command line (or the Python call), a `--config` file, a preset, the
run being resumed, the defaults that depend on the cell, the recipe chosen for the text and budget
(`recipe.py`), the defaults. A resume may change only what does not define the run; `--init-from`
fixes the model's shape to the checkpoint's and leaves only its regularisers open; the fill objective
implies a bidirectional model. The CLI and the Python API both call `resolve`, so they agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.settings.config import ADDED_MODEL_OPTIONS, DERIVED_MODEL_FIELDS, ModelConfig, TrainConfig
from charrnn.settings.options import OptionError, default_of, flag_of
from charrnn.settings.presets import BUDGET, DEFAULT_MAX_STEPS, cell_defaults, preset_values

# What --init-from lets a fine-tuning run change: only what acts in training, never the model's shape.
FINE_TUNABLE = ("dropout", "embed_dropout", "weight_drop")
# Options that do not define what a run is; a resume may change them.
RESUMABLE_OPTIONS = ("max_steps", "max_time", "eval_every", "device", "precision", "compile")
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in DERIVED_MODEL_FIELDS)
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
MASK_OPTIONS = ("mask_rate", "mask_span")


@dataclass(frozen=True)
class Sources:
    """Options by field name from each place a value can come from; `saved` is the run being resumed (a
    checkpoint's content, of which its train_config and model_config are read) and `base` the model
    configuration of the --init-from checkpoint."""

    given: dict = field(default_factory=dict)
    config_file: dict = field(default_factory=dict)
    config_path: str | None = None
    preset: str | None = None
    saved: dict | None = None
    base: dict | None = None
    recipe: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Resolved:
    train: TrainConfig
    model: dict  # ModelConfig's fields but vocab_size, which the text decides
    origin: dict  # field name -> where its value came from, for messages that must be true for this run

    def named(self, name: str, value) -> str:
        return named(name, value, self.origin.get(name, "default"))


def named(name: str, value, origin: str) -> str:
    """An option as advice names it, `--flag value`, and where the value came from when the user did not type it."""
    cls = ModelConfig if name in MODEL_FIELDS else TrainConfig
    return f"{flag_of(cls, name)} {value}" + ("" if origin == "command line" else f" (from the {origin})")


def resolve(sources: Sources) -> Resolved:
    """The training and model options of a run, checked, from `sources`; nothing is read or written."""
    _check_names(sources.given, "command line")
    _check_names(sources.config_file, "config file")
    layers = [("default", {}), ("recipe", sources.recipe)]
    if sources.saved is not None:
        layers.append(("run being resumed", {**sources.saved["model_config"], **sources.saved["train_config"]}))
    if sources.preset is not None:
        values = preset_values(sources.preset, {**sources.config_file, **sources.given})
        layers.append((f"preset {sources.preset}", values))
    if sources.config_file:
        layers.append((f"config file {sources.config_path}", sources.config_file))
    layers.append(("command line", sources.given))
    values, origin = {}, {}
    for name, layer in layers:
        for key, value in layer.items():
            if key != "vocab_size":
                values[key], origin[key] = value, name

    chosen = {k: v for k, v in values.items() if origin[k] not in ("default", "recipe", "run being resumed")}
    if sources.saved is not None:
        _check_resume(chosen, sources.saved, origin)
        values["context"] = sources.saved["model_config"].get("context")
    else:
        if not any(k in values for k in BUDGET):
            values["max_steps"], origin["max_steps"] = DEFAULT_MAX_STEPS, "default"
        if values.get("init_from") is not None and sources.base is not None:
            values = _fine_tuning(values, origin, sources.base)
        _apply_cell_defaults(values, origin)
        if values.get("objective") == "fill":
            values.setdefault("bidirectional", True)
            origin.setdefault("bidirectional", "fill objective")
        else:
            for name in MASK_OPTIONS:
                # A run's config.toml holds them for every objective; only typing one asks for fill.
                if origin.get(name) == "command line":
                    raise OptionError(
                        TrainConfig, name, "applies to the fill objective only. Drop it, or pass {objective} fill"
                    )
        embed_from = origin.get("embed_size", "default")
        if values.get("tie_embedding") and (embed_from in ("default", "recipe") or embed_from.startswith("preset")):
            # A tied embedding scores the hidden state, so it is as wide, unless a width was given for it.
            values["embed_size"] = values.get("hidden_size", default_of(ModelConfig, "hidden_size"))
            origin["embed_size"] = "tied embedding"
        for name in ("data", "init_from"):
            if values.get(name) is not None and Path(values[name]).is_file():
                values[name] = str(Path(values[name]).resolve())
    train = TrainConfig(**{k: v for k, v in values.items() if k in TRAIN_FIELDS})
    model = {k: v for k, v in values.items() if k in MODEL_FIELDS or k == "context"}
    ModelConfig(vocab_size=1, **model)  # the shape is checked before any text is read
    return Resolved(train, model, origin)


def _apply_cell_defaults(values: dict, origin: dict) -> None:
    """The defaults that depend on the cell, wherever nothing above the recipe gave a value."""
    shown = {name: values.get(name, default_of(cls, name)) for name, cls in _CELL_KEYS.items()}
    cell = f"{shown['cell']} cell"
    for name, value in cell_defaults(shown["cell"], shown["init"], shown["nonlinearity"], shown["seq_len"]).items():
        if origin.get(name, "default") in ("default", "recipe"):
            values[name], origin[name] = value, cell


_CELL_KEYS = {"cell": ModelConfig, "init": ModelConfig, "nonlinearity": ModelConfig, "seq_len": TrainConfig}


def _check_names(options: dict, where: str) -> None:
    unknown = set(options) - set(MODEL_FIELDS) - set(TRAIN_FIELDS)
    if unknown:
        raise CharRNNError(
            f"the {where} names no option called {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(MODEL_FIELDS + TRAIN_FIELDS)}"
        )


def _check_resume(chosen: dict, saved: dict, origin: dict) -> None:
    recorded = {**ADDED_MODEL_OPTIONS, **saved["model_config"], **saved["train_config"]}
    for name, value in chosen.items():
        if name not in RESUMABLE_OPTIONS and recorded.get(name) != value:
            raise CharRNNError(
                f"{named(name, value, origin[name])} differs from the run being resumed "
                f"({recorded.get(name)}). Leave it out to keep the saved value, or start a new run"
            )


def _fine_tuning(values: dict, origin: dict, base: dict) -> dict:
    """The model of --init-from, with only its regularisers open to change."""
    shape = {**ADDED_MODEL_OPTIONS, **base}
    for name in MODEL_FIELDS:
        if name in FINE_TUNABLE or name not in shape:
            continue
        if origin.get(name) == "command line" or origin.get(name, "").startswith("config file"):
            if values[name] != shape[name]:
                raise CharRNNError(
                    f"{named(name, values[name], origin[name])} differs from the model given to --init-from "
                    f"({shape[name]}). Leave it out to fine-tune that model as it is"
                )
        values[name] = shape[name]
        origin[name] = "--init-from model"
    return values
