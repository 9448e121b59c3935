"""Training options in a TOML file: `[model]` and `[train]` tables of field names and scalar values.

Every run writes its resolved options as `config.toml`, and `charrnn train --config FILE` reads
the same shape, so a run's own file reproduces it. The tables are flat scalars, so writing them
needs no TOML library; Python's tomllib reads them.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.settings.config import (
    ADDED_MODEL_OPTIONS,
    ADDED_TRAIN_OPTIONS,
    DERIVED_MODEL_FIELDS,
    ModelConfig,
    TrainConfig,
    parse_duration,
)

CONFIG = "config.toml"
# The first line of every config.toml a run writes: charrnn overwrites only files that carry it.
MARK = "# Written by charrnn train: the resolved options of this run."
_TABLES = {"model": ModelConfig, "train": TrainConfig}
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def read(path: Path) -> tuple[dict, dict]:
    """The train and model options a file gives, checked against the fields they name."""
    path = Path(path)
    if path.is_char_device() or path.is_block_device():
        # A pipe is read (--config <(...)), but a device such as /dev/zero never ends.
        raise CharRNNError(f"{path} is a device, not a config file. Pass the path of a TOML file to --config")
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CharRNNError(f"no such config file: {path}. Pass the path of a TOML file to --config") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise CharRNNError(f"cannot read the config file {path} ({e}). Fix the file, or leave out --config") from None
    unknown = set(tables) - set(_TABLES)
    if unknown:
        raise CharRNNError(
            f"{path} has the table(s) {', '.join(sorted(unknown))}. "
            "Use only [model] and [train], as in a run's config.toml"
        )
    options = {}
    for name, cls in _TABLES.items():
        fields = {f.name: f.type for f in dataclasses.fields(cls) if f.name not in DERIVED_MODEL_FIELDS}
        options[name] = {}
        for key, value in tables.get(name, {}).items():
            if key in DERIVED_MODEL_FIELDS:
                continue
            if key not in fields:
                raise CharRNNError(f"{path}: [{name}] has no option {key!r}. Known: {', '.join(fields)}")
            if name == "train" and key == "max_time" and isinstance(value, str):
                value = parse_duration(value)
            if not _fits(value, fields[key]):
                raise CharRNNError(f"{path}: [{name}] {key} = {value!r} should be {fields[key]}. Fix the value")
            options[name][key] = value
    if "vocab_size" in tables.get("model", {}):
        # Only a run writes vocab_size, and a run writes every option it had, so one missing here is
        # an option added since that run, which it trained without.
        options["model"] = {**ADDED_MODEL_OPTIONS, **options["model"]}
        options["train"] = {**ADDED_TRAIN_OPTIONS, **options["train"]}
    return options["train"], options["model"]


def _fits(value, annotation: str) -> bool:
    allowed = tuple(t for part in annotation.split("|") for t in _TYPES.get(part.strip(), ()))
    return isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))


def write(path: Path, tables: dict[str, dict], note: str | None = None) -> None:
    """Scalar tables as TOML; None values are left out, which reads back as the field's default. A `note`
    goes in as a comment under the mark."""
    lines = [MARK] + ([] if note is None else [f"# {line}" for line in note.splitlines()])
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_value(value)}" for key, value in values.items() if value is not None)
        lines.append("")
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def written_by_charrnn(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline().rstrip("\n") == MARK


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # 2e-05, 1.0, inf and nan are all TOML floats
    return _string(str(value))


def _string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for c in text:
        if c in escapes:
            out.append(escapes[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'
