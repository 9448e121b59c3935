import tomllib

import pytest

from charrnn.errors import CharRNNError
from charrnn.settings.config import DEFAULT_MAX_STEPS, PRESETS, ModelConfig, TrainConfig, apply_preset
from tests.conftest import assert_error, run


def resolved_config(run_dir):
    return tomllib.loads((run_dir / "config.toml").read_text())


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_makes_valid_configs(name):
    train_options, model_options = apply_preset(name, {}, {})
    ModelConfig(vocab_size=75, **model_options)
    TrainConfig(**train_options)
    assert "max_steps" in train_options


def test_given_options_win_over_the_preset():
    train_options, model_options = apply_preset("quick", {"lr": 1e-3}, {"hidden_size": 100})
    assert model_options["hidden_size"] == 100 and train_options["lr"] == 1e-3
    assert train_options["max_steps"] == PRESETS["quick"]["max_steps"]


def test_a_given_budget_replaces_the_presets_budget():
    train_options, _ = apply_preset("quick", {"max_time": 30.0}, {})
    assert train_options["max_time"] == 30.0 and "max_steps" not in train_options


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(CharRNNError, match="unknown preset 'huge'. Use one of: tiny, quick, default, large"):
        apply_preset("huge", {}, {})


def test_the_default_preset_is_the_default_run():
    train_options, model_options = apply_preset("default", {}, {})
    assert train_options == {"max_steps": DEFAULT_MAX_STEPS} and model_options == {}


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
