"""A new run started over an old one (`--force`) replaces it only once it has a good checkpoint: whatever stops
it before then (divergence, a full disk, a failed rename, Ctrl-C, SIGKILL at any stage) leaves the old run as
it was."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from charrnn.errors import CharRNNError
from charrnn.storage import checkpoint
from charrnn.training import staging
from charrnn.training.launch import open_training
from charrnn.training.run_dir import RunDir
from tests.conftest import TINY, TINY_MODEL, TINY_TRAIN, assert_error, run

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# The new run differs from the old in its width, so that a test can tell whose checkpoint a folder holds.
NEW = ["--preset", "tiny", "--hidden-size", "24", "--embed-size", "4", "--layers", "1", "--seq-len", "16"]


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


def siblings(folder):
    """What a replacement leaves beside the run: nothing, once it has ended either way."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def assert_ended_in_error(result, *fragments):
    """An error after training began: what was announced, then one `error:` line, and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: ")
    for fragment in fragments:
        assert fragment in error, error


def hidden_size(folder):
    return checkpoint.load(folder / checkpoint.BEST)["model_config"]["hidden_size"]


@pytest.fixture
def old_run(tmp_path, text_file):
    out = tmp_path / "run"
    assert run("train", "--data", text_file, *TINY, "--max-steps", 3, "--out", out).exit_code == 0
    (out / "notes.txt").write_text("the user's own file")
    return out


def replace(old_run, text_file, *options):
    args = ["--data", text_file, *NEW, "--max-steps", 4, "--eval-every", 2, *options, "--out", old_run, "--force"]
    return run("train", *args)


def test_a_run_that_diverges_leaves_the_old_run_as_it_was(old_run, text_file):
    before = files(old_run)
    result = replace(old_run, text_file, "--lr", "1e6")
    assert_ended_in_error(result, "diverged", f"the run that was in {old_run} is kept")
    assert files(old_run) == before
    assert siblings(old_run) == []


def test_a_new_run_replaces_the_old_at_its_first_checkpoint_and_keeps_the_users_files(old_run, text_file):
    result = replace(old_run, text_file)
    assert result.exit_code == 0, result.output
    assert "replacing the run there" in result.stderr
    assert hidden_size(old_run) == 24
    assert checkpoint.load(old_run / checkpoint.LAST)["step"] == 4
    assert (old_run / "notes.txt").read_text() == "the user's own file"
    assert siblings(old_run) == []


def test_a_full_disk_at_the_first_checkpoint_leaves_the_old_run(old_run, text_file, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    before = files(old_run)
    monkeypatch.setattr(checkpoint.atomic, "write_bytes", full)
    assert_ended_in_error(replace(old_run, text_file), "No space left on device", "Free some disk space")
    assert files(old_run) == before
    assert siblings(old_run) == []


@pytest.mark.parametrize("failing_rename", [1, 2])
def test_a_rename_that_fails_leaves_the_old_run(old_run, text_file, monkeypatch, failing_rename):
    before, calls, rename = files(old_run), [], os.rename

    def flaky(src, dst):
        calls.append(src)
        if len(calls) == failing_rename:
            raise OSError(errno.EACCES, "Permission denied", str(src))
        rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", flaky)
    assert_ended_in_error(replace(old_run, text_file), "could not put the new run in place", "is kept as it was")
    assert files(old_run) == before
    assert siblings(old_run) == []


# Where a SIGKILL lands (a line run before charrnn starts), and whose run the folder holds once the next
# training has looked at it.
KILL_POINTS = {
    # Before the new run's first checkpoint is written.
    "first save": ("from charrnn.training import validation; validation.save = die", "old"),
    # Its first checkpoint is written, the swap not begun.
    "swap": ("from charrnn.training.run_dir import RunDir; RunDir.commit = die", "old"),
    # The old run renamed aside, the new one not yet in its place.
    "second rename": ("os.rename = die_at_call(2, os.rename)", "new"),
    # Both renames done, the old folder not yet emptied.
    "emptying": ("from charrnn.training import staging; staging._empty_into = die", "new"),
}
KILLING_SCRIPT = """
import os, runpy, signal, sys
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
def die_at_call(n, function):
    calls = []
    def counted(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            die()
        return function(*args, **kwargs)
    return counted
{patch}
sys.argv = ["charrnn", *sys.argv[1:]]
runpy.run_module("charrnn", run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_any_stage_leaves_one_whole_run(old_run, text_file, point):
    patch, survivor = KILL_POINTS[point]
    before = files(old_run)
    script = KILLING_SCRIPT.format(patch=patch)
    args = ["train", "--data", text_file, *NEW, "--max-steps", 4, "--eval-every", 2, "--out", old_run, "--force"]
    killed = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=ENV, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()

    RunDir(old_run).saved_run(resume=False, force=True)  # what every later training does first
    assert siblings(old_run) == []
    assert (old_run / "notes.txt").read_text() == "the user's own file"
    if survivor == "old":
        assert files(old_run) == before
    else:
        assert hidden_size(old_run) == 24


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_keeps_the_old_run(old_run, text_file):
    before = files(old_run)
    budget = ["--max-steps", 10**6, "--eval-every", 10**6]
    args = ["train", "--data", text_file, *NEW, *budget, "--out", old_run, "--force"]
    process = subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)], env=ENV, stderr=subprocess.PIPE)
    while b"training a" not in process.stderr.readline():
        pass
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"before the new run's first checkpoint; the run in {old_run} is kept as it was" in err.decode()
    assert files(old_run) == before
    assert siblings(old_run) == []


def test_a_second_training_is_refused_while_the_first_replaces_the_run(old_run, text_file):
    options = {"data": str(text_file), **TINY_TRAIN, **TINY_MODEL}
    first = open_training(old_run, options, force=True)
    try:
        assert first.run_dir.replacing
        with pytest.raises(CharRNNError, match="another training .* is writing into"):
            open_training(old_run, options, force=True)
        assert first.run_dir.path.is_dir()  # the second did not take the first one's folder for a leftover
    finally:
        first.close()


def test_a_run_reached_through_a_link_is_replaced_in_place(old_run, text_file, tmp_path):
    link = tmp_path / "latest"
    link.symlink_to(old_run)
    result = replace(link, text_file)
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert hidden_size(old_run) == 24


def test_replacing_the_run_in_the_current_directory_is_refused(old_run, text_file, monkeypatch):
    monkeypatch.chdir(old_run)
    before = files(old_run)
    assert_error(replace(".", text_file), "holds the current directory")
    assert files(old_run) == before
