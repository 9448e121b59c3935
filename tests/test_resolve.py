"""Which value each option takes, decided by one pure function that the CLI and the Python API share."""

import pytest

from charrnn.errors import CharRNNError
from charrnn.settings.config import TrainConfig
from charrnn.settings.options import OptionError
from charrnn.settings.presets import DEFAULT_MAX_STEPS, PRESETS
from charrnn.settings.resolve import Sources, resolve

SAVED = {
    "train_config": {"data": "alice", "lr": 3e-3, "max_steps": 500, "seed": 7},
    "model_config": {"cell": "gru", "hidden_size": 96, "vocab_size": 60},
}


def test_defaults_alone_give_the_default_budget():
    resolved = resolve(Sources())
    assert resolved.train == TrainConfig(max_steps=DEFAULT_MAX_STEPS)
    assert resolved.model == {}
    assert resolved.origin["max_steps"] == "default"


def test_command_line_beats_config_file_beats_preset():
    resolved = resolve(
        Sources(
            given={"lr": 1e-3},
            config_file={"lr": 2e-3, "hidden_size": 100, "seq_len": 48},
            config_path="my.toml",
            preset="quick",
        )
    )
    assert resolved.train.lr == 1e-3 and resolved.origin["lr"] == "command line"
    assert resolved.model["hidden_size"] == 100 and resolved.origin["hidden_size"] == "config file my.toml"
    assert resolved.train.seq_len == 48
    assert resolved.model["dropout"] == PRESETS["quick"]["dropout"]
    assert resolved.origin["dropout"] == "preset quick"


def test_a_given_budget_replaces_the_presets_whole_budget():
    resolved = resolve(Sources(given={"max_time": 30.0}, preset="quick"))
    assert resolved.train.max_time == 30.0 and resolved.train.max_steps is None


def test_a_resume_keeps_the_saved_run_and_may_change_only_its_budget_and_hardware():
    resolved = resolve(Sources(given={"max_steps": 900, "precision": "bf16"}, saved=SAVED))
    assert resolved.train.lr == 3e-3 and resolved.model["cell"] == "gru"
    assert resolved.train.max_steps == 900 and resolved.train.precision == "bf16"
    with pytest.raises(CharRNNError, match=r"--hidden-size 64 differs from the run being resumed \(96\)"):
        resolve(Sources(given={"hidden_size": 64}, saved=SAVED))


def test_advice_says_where_a_value_came_from_when_the_user_did_not_type_it():
    with pytest.raises(CharRNNError, match=r"--hidden-size 256 \(from the preset quick\) differs"):
        resolve(Sources(preset="quick", saved=SAVED))


def test_init_from_fixes_the_shape_and_leaves_the_regularisers_open():
    base = {"cell": "gru", "num_layers": 1, "hidden_size": 96, "vocab_size": 60}
    resolved = resolve(Sources(given={"init_from": "base.pt", "dropout": 0.5}, base=base))
    assert resolved.model["cell"] == "gru" and resolved.model["hidden_size"] == 96 and resolved.model["dropout"] == 0.5
    # A preset's shape gives way to the model's; a shape the user typed is refused.
    assert resolve(Sources(given={"init_from": "base.pt"}, preset="tiny", base=base)).model["hidden_size"] == 96
    with pytest.raises(CharRNNError, match="--hidden-size 8 differs from the model given to --init-from"):
        resolve(Sources(given={"init_from": "base.pt", "hidden_size": 8}, base=base))


def test_the_fill_objective_implies_a_bidirectional_model():
    resolved = resolve(Sources(given={"objective": "fill"}))
    assert resolved.model["bidirectional"] is True and resolved.origin["bidirectional"] == "fill objective"


def test_mask_options_without_fill_name_the_field_or_the_flag():
    with pytest.raises(OptionError) as caught:
        resolve(Sources(given={"mask_rate": 0.2}))
    assert str(caught.value).startswith("mask_rate applies to the fill objective only")
    assert caught.value.for_flags().endswith("pass --objective fill")


def test_the_model_shape_is_checked_before_any_text_is_read():
    with pytest.raises(OptionError, match="hidden_size must be at least 1"):
        resolve(Sources(given={"hidden_size": 0, "data": "/no/such/text.txt"}))


def test_an_unknown_option_is_named():
    with pytest.raises(CharRNNError, match="config file names no option called hiden_size"):
        resolve(Sources(config_file={"hiden_size": 3}))
