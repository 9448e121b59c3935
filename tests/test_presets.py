import tomllib

import pytest

from charrnn.errors import CharRNNError
from charrnn.settings.config import ModelConfig, TrainConfig
from charrnn.settings.presets import DEFAULT_MAX_STEPS, PRESETS
from charrnn.settings.resolve import Sources, resolve
from tests.conftest import assert_error, run


def resolved_config(run_dir):
    return tomllib.loads((run_dir / "config.toml").read_text())


def preset(name: str, **given):
    """A run's options under preset `name` with `given` on the command line, resolved as `charrnn train` does."""
    resolved = resolve(Sources(given=given, preset=name))
    return resolved.train, ModelConfig(vocab_size=75, **resolved.model)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_makes_valid_configs(name):
    train, _ = preset(name)
    assert train.max_steps == PRESETS[name]["max_steps"]


def test_given_options_win_over_the_preset():
    train, model = preset("quick", lr=1e-3, hidden_size=100)
    assert (model.hidden_size, train.lr, train.max_steps, model.dropout) == (100, 1e-3, 600, 0.1)


def test_a_given_budget_replaces_the_presets_budget():
    train, _ = preset("quick", max_time=30.0)
    assert train.max_time == 30.0 and train.max_steps is None


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(CharRNNError, match="unknown preset 'huge'. Use one of: tiny, quick, default, large"):
        preset("huge")


def test_the_default_preset_is_the_default_run():
    assert preset("default") == (TrainConfig(max_steps=DEFAULT_MAX_STEPS), ModelConfig(vocab_size=75))


def test_cli_unknown_preset(tmp_path, text_file):
    result = run("train", "--data", text_file, "--preset", "huge", "--out", tmp_path / "run")
    assert_error(result, "unknown preset 'huge'", "tiny, quick, default, large")
    assert not (tmp_path / "run").exists()


def test_cli_preset_tiny_and_an_explicit_option_overrides_it(tmp_path, text_file):
    out = tmp_path / "run"
    result = run("train", "--data", text_file, "--preset", "tiny", "--hidden-size", 24, "--max-steps", 8, "--out", out)
    assert result.exit_code == 0, result.output
    config = resolved_config(out)
    assert config["model"]["hidden_size"] == 24
    assert config["model"]["num_layers"] == PRESETS["tiny"]["num_layers"]
    assert config["train"]["seq_len"] == PRESETS["tiny"]["seq_len"]
    assert config["train"]["max_steps"] == 8
