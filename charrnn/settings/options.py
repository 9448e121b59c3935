"""The table of options: each configuration field declares, in one place, its default, its help, its
command-line flag, its help panel and its limits. The dataclasses in `config.py` check themselves
against it; the CLI builds its options, `--help` and the generated reference from it; a config file
is read against it. Nothing here imports typer, so the core and the Python API use the same table.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass

from charrnn.errors import CharRNNError


@dataclass(frozen=True)
class Spec:
    """What a field means to a user: how it is spelled, explained, grouped and bounded."""

    help: str
    flag: str | None = None
    panel: str | None = None
    choices: tuple[str, ...] | None = None
    # Inclusive bounds, and exclusive ones where a limit itself is not allowed (a dropout of 1).
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    example: str | None = None
    # Shown as the default in --help where the field's own default is None and something else decides.
    default_note: str | None = None
    # `charrnn train`'s recipe chooses this option's value for a fresh run that leaves it out
    # (training/recipe.py); the field's default is what it chooses for Alice.
    recipe: bool = False


def option(default, help: str, **spec):
    """A dataclass field whose metadata is its `Spec`."""
    return dataclasses.field(default=default, metadata={"spec": Spec(help=help, **spec)})


def spec_of(cls, name: str) -> Spec:
    return _fields(cls)[name].metadata["spec"]


def flag_of(cls, name: str) -> str:
    spec = _fields(cls)[name].metadata.get("spec")
    return (spec and spec.flag) or "--" + name.replace("_", "-")


def default_of(cls, name: str):
    field = _fields(cls)[name]
    return None if field.default is MISSING else field.default


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


class OptionError(CharRNNError):
    """A value a field does not accept. Its message names the field (`num_layers`), as the Python API is
    called; `for_flags()` names the flag instead (`--layers`), as the command line is typed."""

    def __init__(self, cls, name: str, problem: str):
        # `problem` names other fields of `cls` as {field}, filled in with the field's name or its flag.
        self.cls, self.name, self.problem = cls, name, problem
        names = {f.name: f.name for f in dataclasses.fields(cls)}
        super().__init__(f"{name} {problem.format(**names)}")

    def for_flags(self) -> str:
        flags = {f.name: flag_of(self.cls, f.name) for f in dataclasses.fields(self.cls)}
        return f"{flag_of(self.cls, self.name)} {self.problem.format(**flags)}"


# Seeds go to torch.manual_seed, which takes 64 bits.
SEED_LIMIT = 2**64 - 1


def wrap_seed(value: int) -> int:
    """A seed derived from --seed (plus a rank, an epoch, a count), kept within the 64 bits torch takes."""
    return value % (SEED_LIMIT + 1)


# torch computes in 32-bit floats and turns every number it is handed into one: beyond this it overflows.
FLOAT32_MAX = 3.4028234663852886e38


def check_fields(config) -> None:
    """Every field of `config` against its Spec: type, choices and bounds, one rule for every option."""
    cls = type(config)
    for field in dataclasses.fields(cls):
        spec = field.metadata.get("spec")
        value = getattr(config, field.name)
        if spec is None or value is None:
            continue
        problem = _problem(value, spec, field.type)
        if problem is not None:
            example = f". Pass e.g. {spec.example}" if spec.example else ""
            raise OptionError(cls, field.name, problem + example)


def not_utf8(text: str) -> str | None:
    """Where `text` holds bytes that are not UTF-8, e.g. `\\xff\\xfe at character 3`, or None. Python hands such
    bytes over (in argv, in file names) as lone surrogates, U+DC80 to U+DCFF for 0x80 to 0xff."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        shown = "".join(
            f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else f"\\u{ord(c):04x}"
            for c in text[e.start : e.end][:8]
        )
        return f"{shown} at character {e.start + 1}"
    return None


def _problem(value, spec: Spec, annotation: str) -> str | None:
    if isinstance(value, str) and not_utf8(value) is not None:
        # A run records its options in config.toml, whose strings are UTF-8: a path in other bytes cannot be.
        return (
            f"{value!r} holds bytes that are not UTF-8 ({not_utf8(value)}), which a run's config.toml cannot "
            "record; rename it in UTF-8"
        )
    if spec.choices is not None:
        if value not in spec.choices:
            return f"must be one of {', '.join(spec.choices)}, got {value!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if "float" in annotation and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if "float" in annotation and abs(value) > FLOAT32_MAX:
        return f"must be at most {FLOAT32_MAX:.4g} in size, the largest 32-bit float, got {value:g}"
    if "float" not in annotation and isinstance(value, float):
        return f"must be a whole number, got {value}"
    low_ok = (spec.min is None or value >= spec.min) and (spec.above is None or value > spec.above)
    high_ok = (spec.max is None or value <= spec.max) and (spec.below is None or value < spec.below)
    return None if low_ok and high_ok else f"must be {_bounds(spec)}, got {value}"


def _bounds(spec: Spec) -> str:
    low = f"at least {_number(spec.min)}" if spec.min is not None else None
    low = low or (f"above {_number(spec.above)}" if spec.above is not None else None)
    high = f"at most {_number(spec.max)}" if spec.max is not None else None
    high = high or (f"below {_number(spec.below)}" if spec.below is not None else None)
    return " and ".join(part for part in (low, high) if part)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"
