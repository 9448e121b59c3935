import tomllib

import pytest

from charrnn.errors import CharRNNError
from charrnn.settings import config_file as configfile
from charrnn.settings.config import TrainConfig
from charrnn.settings.presets import PRESETS
from charrnn.storage import checkpoint
from tests.conftest import TINY, assert_error, run


def test_written_values_read_back_the_same(tmp_path):
    tables = {
        "model": {"vocab_size": 40, "cell": "gru", "dropout": 0.25, "weight_drop": 0.5},
        "train": {"data": 'odd "name"\\\ttab\x7f', "lr": 2e-05, "max_time": None, "compile": True, "seed": 7},
    }
    configfile.write(tmp_path / "c.toml", tables)
    assert tomllib.loads((tmp_path / "c.toml").read_text()) == {
        "model": tables["model"],
        "train": {k: v for k, v in tables["train"].items() if v is not None},
    }
    train, model = configfile.read(tmp_path / "c.toml")
    # The vocabulary comes from the text; a run file without an option added since trained without it.
    assert model == {"cell": "gru", "dropout": 0.25, "weight_drop": 0.5, "tie_embedding": False}
    assert train["lr"] == 2e-05 and train["compile"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nbatchsize = 3\n", "[train] has no option 'batchsize'. Known: data, seq_len"),
        ("[train]\nseq_len = 'long'\n", "[train] seq_len = 'long' should be int"),
        ("[train]\nseq_len = true\n", "[train] seq_len = True should be int"),
        ("[optim]\nlr = 1\n", "has the table(s) optim. Use only [model] and [train]"),
        ("[train\n", "cannot read the config file"),
    ],
)
def test_a_bad_file_is_named_with_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CharRNNError) as raised:
        configfile.read(path)
    assert message in str(raised.value)


def test_max_time_may_be_written_as_a_duration(tmp_path):
    (tmp_path / "c.toml").write_text('[train]\nmax_time = "1h30m"\n')
    assert configfile.read(tmp_path / "c.toml")[0] == {"max_time": 5400.0}


def test_command_line_beats_file_beats_preset_beats_defaults(tmp_path, text_file):
    config = tmp_path / "c.toml"
    config.write_text("[model]\nhidden_size = 20\nembed_size = 6\n[train]\nseq_len = 24\nmax_steps = 3\n")
    out = tmp_path / "run"
    result = run("train", "--data", text_file, "--config", config, "--preset", "tiny", "--embed-size", 5, "--out", out)
    assert result.exit_code == 0, result.output
    written = tomllib.loads((out / "config.toml").read_text())
    assert written["model"]["embed_size"] == 5  # command line over file
    assert written["model"]["hidden_size"] == 20 and written["train"]["seq_len"] == 24  # file over preset
    assert written["train"]["max_steps"] == 3  # the file's budget replaces the preset's
    assert written["train"]["batch_size"] == PRESETS["tiny"]["batch_size"]  # preset over defaults
    assert written["train"]["lr"] == TrainConfig.lr  # defaults


def test_a_runs_own_config_reproduces_it(tmp_path, text_file):
    first = tmp_path / "first"
    result = run("train", "--data", text_file, *TINY, "--max-steps", 4, "--dropout", 0, "--out", first)
    assert result.exit_code == 0, result.output
    again = tmp_path / "again"
    assert run("train", "--config", first / "config.toml", "--out", again).exit_code == 0
    # The first run's file also says, in a comment, what the recipe chose; the second had nothing left to choose.
    assert tomllib.loads((again / "config.toml").read_text()) == tomllib.loads((first / "config.toml").read_text())
    a, b = checkpoint.load(first / "last.pt"), checkpoint.load(again / "last.pt")
    assert all(a["model"][k].equal(b["model"][k]) for k in a["model"])


def test_missing_config_file(tmp_path):
    assert_error(run("train", "--config", tmp_path / "none.toml"), "no such config file", "--config")


def test_a_run_file_from_before_an_option_existed_reads_as_trained_without_it(tmp_path):
    old_run = tmp_path / "old.toml"
    old_run.write_text('[model]\nvocab_size = 75\ncell = "lstm"\ndropout = 0.3\n\n[train]\nlr = 0.01\n')
    hand_written = tmp_path / "mine.toml"
    hand_written.write_text('[model]\ncell = "lstm"\ndropout = 0.3\n')
    assert configfile.read(old_run)[1] == {"cell": "lstm", "dropout": 0.3, "weight_drop": 0.0, "tie_embedding": False}
    assert configfile.read(hand_written)[1] == {"cell": "lstm", "dropout": 0.3}
