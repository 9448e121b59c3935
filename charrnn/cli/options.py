"""Typer options built from the core's table of options (`charrnn/settings/options.py`).

`opt(TrainConfig, "lr")` is the annotation of a parameter that takes `--lr`: its flag, help, default
shown in --help, panel and choices all come from the field's Spec. The parameter itself defaults to
None, so that a command can tell the options the user gave from the ones a preset, a config file or
a saved run should decide; `given()` collects those, with choices as plain strings.
"""

from __future__ import annotations

import enum
import functools
import typing
from typing import Annotated, Optional

import typer

from charrnn.settings.options import default_of, flag_of, spec_of
from charrnn.settings.presets import DEFAULT_MAX_STEPS


@functools.cache
def choice_enum(name: str, choices: tuple[str, ...]) -> type[enum.Enum]:
    """An Enum Typer shows as [a|b|c], checks and completes; its values are the core's strings."""
    return enum.Enum(name, {c: c for c in choices}, type=str)


RECIPE_NOTE = "chosen by the recipe for the text and budget; {} for Alice"


def default_text(cls, name: str, default=None, recipe: bool = False) -> str | None:
    """The default --help shows; `recipe` is for `charrnn train`, where the recipe chooses the options the
    table marks, and the field's default is its choice for Alice."""
    spec = spec_of(cls, name)
    value = default_of(cls, name) if default is None else default
    if recipe and spec.recipe:
        return RECIPE_NOTE.format(DEFAULT_MAX_STEPS if value is None else value)
    if spec.default_note is not None:
        return spec.default_note
    if value is None or value is False:
        return None
    return "on" if value is True else str(value)


def opt(
    cls,
    name: str,
    *,
    flag: str | None = None,
    help: str | None = None,
    default=None,
    panel: str | None = None,
    recipe: bool = False,
):
    """The annotation of a parameter for field `name` of `cls`; the keyword arguments are for a command
    whose own default or wording differs from the field's, e.g. `compare`'s smaller shared model, and
    `recipe` for `charrnn train`, whose recipe chooses some values."""
    spec = spec_of(cls, name)
    field_type = typing.get_type_hints(cls)[name]
    base = next((t for t in typing.get_args(field_type) if t is not type(None)), field_type)
    if spec.choices is not None:
        base = choice_enum(name.title().replace("_", ""), spec.choices)
    elif name == "max_time":
        base = str  # a duration, e.g. 10m
    shown = default_text(cls, name, default, recipe)
    text = (help or spec.help) + (f" \\[default: {shown}]" if shown is not None else "")
    flags = flag or flag_of(cls, name)
    if base is bool:
        flags = f"{flags}/--no-{flags[2:]}"
    metavar = f"[{'|'.join(spec.choices)}]" if spec.choices is not None else None
    option = typer.Option(flags, help=text, rich_help_panel=panel or spec.panel, show_default=False, metavar=metavar)
    return Annotated[Optional[base], option]


def plain(value, default=None):
    """A parameter's value as the core takes it: a choice as its string, and `default` when not given."""
    if value is None:
        return default
    return value.value if isinstance(value, enum.Enum) else value


def given(values: dict) -> dict:
    """The options the user typed, by field name, with choices as the core's plain strings."""
    return {k: plain(v) for k, v in values.items() if v is not None}
