"""The README's table of `charrnn train` options states the defaults the code has."""

import dataclasses
import re
from pathlib import Path

import pytest

from charrnn.config import ModelConfig, TrainConfig

README = Path(__file__).parent.parent / "README.md"
# Options whose name differs from their field's.
FIELD_OF = {"layers": "num_layers"}


def documented_defaults() -> dict[str, str]:
    section = README.read_text(encoding="utf-8").split("### `charrnn train`", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `--([a-z-]+)` \| .* \| ([^|]*) \|$", section, flags=re.MULTILINE)
    return {option.replace("-", "_"): default.strip().strip("`") for option, default in rows}


def test_every_model_and_training_option_in_the_table_has_the_code_default():
    fields = {f.name: f.default for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
    checked = 0
    for option, documented in documented_defaults().items():
        field = FIELD_OF.get(option, option)
        if field not in fields or fields[field] is None or isinstance(fields[field], bool):
            continue
        default = fields[field]
        if isinstance(default, str):
            assert documented == default, option
        else:
            assert float(documented) == pytest.approx(default), option
        checked += 1
    assert checked >= 15
