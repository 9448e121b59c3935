"""What --help shows is what the commands do: every default shown comes from the configuration the code uses."""

import re

import pytest
import typer

from charrnn.cli import COMMANDS, app
from charrnn.cli.options import RECIPE_NOTE
from charrnn.settings.config import ModelConfig, SampleConfig, TrainConfig
from charrnn.settings.options import default_of, spec_of
from charrnn.settings.resolve import MODEL_FIELDS, Sources, resolve
from charrnn.studies.compare_configs import COMPARE_EVAL_EVERY, COMPARE_SHAPE
from tests.conftest import run

CLICK = typer.main.get_command(app)
# Where a command's defaults come from, by option: the config whose fields the command fills in.
TRAINED = resolve(Sources())
TRAIN_DEFAULTS = {**{k: default_of(ModelConfig, k) for k in TRAINED.model | COMPARE_SHAPE}, **vars(TRAINED.train)}
SAMPLE_DEFAULTS = {k: default_of(SampleConfig, k) for k in vars(SampleConfig())}
EXPECTED = {
    "train": TRAIN_DEFAULTS | {"num_layers": ModelConfig.num_layers},
    "gradients": {k: default_of(ModelConfig, k) for k in ("cell", "init", "nonlinearity", "hidden_size")}
    | {"num_layers": default_of(ModelConfig, "num_layers"), "seed": default_of(TrainConfig, "seed")},
    "bench": {k: default_of(ModelConfig, k) for k in ("cell", "hidden_size", "num_layers")}
    | {k: default_of(TrainConfig, k) for k in ("batch_size", "seq_len")},
    "compare": COMPARE_SHAPE | {"eval_every": COMPARE_EVAL_EVERY, "seed": default_of(TrainConfig, "seed")},
    "sample": SAMPLE_DEFAULTS | {"device": "cpu"},
    "fill": {"temperature": 0.0, "device": "auto"},
    "eval": {"device": "auto"},
}


def shown_defaults(command: str) -> dict:
    shown = {}
    for param in CLICK.commands[command].params:
        found = re.search(r"\[default: ([^\]]+)\]", (getattr(param, "help", None) or "").replace("\\[", "["))
        if found:
            shown[param.name] = found.group(1)
    return shown


def as_shown(value) -> str:
    return "on" if value is True else str(value)


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_every_shown_default_is_the_one_the_code_uses(command):
    shown = shown_defaults(command)
    checked = {name: text for name, text in shown.items() if name in EXPECTED[command]}
    assert checked, f"{command} shows none of its config defaults"
    for name, text in checked.items():
        expected = EXPECTED[command][name]
        if command == "train" and spec_of(ModelConfig if name in MODEL_FIELDS else TrainConfig, name).recipe:
            # The recipe's choice for Alice is the field's default (test_recipe.py states it).
            assert text == RECIPE_NOTE.format(as_shown(expected)), f"train --help: {name}"
            continue
        if expected is None:
            continue  # something else decides, and the help says what (a random seed)
        assert text.split(" ")[0] == as_shown(expected), f"{command} --help: {name}"


def test_train_help_says_which_values_the_recipe_chooses():
    shown = shown_defaults("train")
    chosen = {name for name, text in shown.items() if "chosen by the recipe" in text}
    expected = {"cell", "hidden_size", "embed_size", "tie_embedding", "dropout", "embed_dropout", "weight_drop"}
    assert chosen == expected | {"warmup_steps", "max_steps", "eval_every", "ema_decay", "batch_size"}
    assert "chosen by the recipe" not in shown_defaults("bench").get("hidden_size", "")


def test_choices_are_shown_and_checked():
    assert "[rnn|lstm|gru]" in run("train", "--help").stdout
    result = run("train", "--cell", "tcn")
    assert result.exit_code == 2 and "Invalid value for '--cell'" in result.stderr


def test_train_help_groups_its_options_in_panels():
    panels = {p.rich_help_panel for p in CLICK.commands["train"].params if getattr(p, "rich_help_panel", None)}
    expected = {"Data", "Model", "Regularisation", "Optimisation", "Budget", "Run directory", "Hardware"}
    assert panels >= expected | {"Fill objective"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout
