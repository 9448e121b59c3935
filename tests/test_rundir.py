"""No option a user gets wrong costs the run that was in the directory, and charrnn overwrites only its own files."""

import shutil

import pytest

from charrnn.settings import config_file as configfile
from charrnn.storage import checkpoint
from tests.conftest import TINY, assert_error, run


def snapshot(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")}


@pytest.fixture
def trained(tmp_path, text_file):
    out = tmp_path / "run"
    assert run("train", "--data", text_file, *TINY, "--max-steps", 3, "--out", out).exit_code == 0
    return out


@pytest.mark.parametrize(
    "options, message",
    [
        (["--hidden-size", "1000000"], "GiB to train"),
        (["--dropout", "2"], "--dropout must be at least 0 and below 1"),
        (["--data", "/no/such/text.txt"], "/no/such/text.txt"),
        (["--cell", "gru", "--init", "identity"], "--init applies to the vanilla rnn cell only"),
    ],
)
def test_force_with_a_bad_option_deletes_nothing(trained, text_file, options, message):
    before = snapshot(trained)
    args = ["--data", text_file, *TINY, "--max-steps", 3, *options, "--out", trained, "--force"]
    assert_error(run("train", *args), message)
    assert snapshot(trained) == before


def test_a_model_too_large_for_memory_is_refused_with_its_size(tmp_path, text_file):
    result = run("train", "--data", text_file, "--hidden-size", 1_000_000, "--out", tmp_path / "huge")
    assert_error(result, "parameters) at batch 32 x 128 needs at least", "GiB free", "--hidden-size")
    assert not (tmp_path / "huge").exists()


def test_a_last_pt_of_another_run_is_not_resumed(tmp_path, text_file):
    lstm, gru = tmp_path / "lstm", tmp_path / "gru"
    assert run("train", "--data", text_file, *TINY, "--cell", "lstm", "--max-steps", 3, "--out", lstm).exit_code == 0
    assert run("train", "--data", text_file, *TINY, "--cell", "gru", "--max-steps", 3, "--out", gru).exit_code == 0
    shutil.copy(gru / checkpoint.LAST, lstm / checkpoint.LAST)
    before = snapshot(lstm)
    assert_error(run("train", "--out", lstm, "--resume", "--max-steps", 6), "is not this run's", "cell = 'gru'")
    assert snapshot(lstm) == before


def test_an_empty_out_is_an_error_not_the_current_directory(tmp_path, text_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text("my = 'own file'\n")
    assert_error(run("train", "--data", text_file, *TINY, "--max-steps", 2, "--out", ""), "--out is empty")
    assert (tmp_path / "config.toml").read_text() == "my = 'own file'\n"
    assert not (tmp_path / checkpoint.LAST).exists()


def test_a_config_toml_charrnn_did_not_write_is_never_overwritten(tmp_path, text_file):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.toml").write_text("[tool]\nname = 'mine'\n")
    for extra in ([], ["--force"]):
        args = ["--data", text_file, *TINY, "--max-steps", 2, "--out", folder, *extra]
        assert_error(run("train", *args), "was not written by charrnn")
    assert (folder / "config.toml").read_text() == "[tool]\nname = 'mine'\n"


def test_a_runs_own_config_toml_is_marked_and_may_be_replaced(trained, text_file):
    assert configfile.written_by_charrnn(trained / "config.toml")
    args = ["--data", text_file, *TINY, "--max-steps", 2, "--lr", "0.005", "--out", trained, "--force"]
    assert run("train", *args).exit_code == 0
    assert configfile.read(trained / "config.toml")[0]["lr"] == 0.005
