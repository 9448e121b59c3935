"""charrnn where the environment is against it: a home directory nothing can be written under, a C locale,
Python's warnings ignored, no terminal. The notes a user needs still reach them, and the work is done."""

import os
import subprocess
import sys

import pytest

from tests.conftest import make_text

UNSET = ("CHARRNN_CACHE_DIR", "XDG_CACHE_HOME", "XDG_DATA_HOME", "PYTHONIOENCODING")


@pytest.fixture
def hostile_env(tmp_path):
    # A file where the home directory should be: nothing can be made under it, even by root.
    home = tmp_path / "home"
    home.write_text("not a directory")
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "HOME": str(home), "LC_ALL": "C", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def charrnn(env, cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
def test_training_and_sampling_without_a_home_in_a_c_locale_with_warnings_ignored(tmp_path, hostile_env):
    (tmp_path / "text.txt").write_text(make_text(20_000))
    trained = charrnn(hostile_env, tmp_path, "train", "--data", "text.txt", "--preset", "tiny", "--max-steps", 20)
    err = trained.stderr.decode()
    assert trained.returncode == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "could not cache" in notes[0] and "$CHARRNN_CACHE_DIR" in notes[0], err
    assert "Traceback" not in err and "Warning" not in err

    run_dir = tmp_path / "runs" / "text-lstm"
    sampled = charrnn(hostile_env, tmp_path, "sample", run_dir, "--length", 40, "--seed", 1)
    assert sampled.returncode == 0, sampled.stderr.decode()
    assert len(sampled.stdout.decode()) >= 40

    unknown = charrnn(hostile_env, tmp_path, "sample", run_dir, "--prime", "\u00e9")
    assert unknown.returncode == 1
    assert unknown.stderr.decode().startswith("error: the prime has 1 characters the model never saw")
