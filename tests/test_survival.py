"""What survives what: signals, kills mid-save, full disks, dead locks, hostile files (README: "What survives what")."""

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch

from charrnn.api import load
from charrnn.storage import checkpoint
from charrnn.training.launch import open_training
from tests.conftest import TINY_MODEL, TINY_TRAIN, make_text

TINY = ["--hidden-size", "32", "--embed-size", "8", "--layers", "2", "--seq-len", "32", "--batch-size", "8"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def charrnn(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def finish(process, timeout=120):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out.decode(), err.decode()


def metric_steps(run_dir):
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for_steps(run_dir, steps, process, timeout=60):
    deadline = time.monotonic() + timeout
    while metric_steps(run_dir) < steps:
        assert process.poll() is None, finish(process)
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)


def losses(run_dir):
    return [json.loads(line)["train_loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(make_text(20_000))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_and_a_fresh_process_resumes_bit_identically(tmp_path, data, signum, code):
    train = ["train", "--data", data, *TINY, "--max-steps", 150, "--eval-every", 25]
    assert finish(charrnn(*train, "--out", tmp_path / "whole"))[0] == 0

    process = charrnn(*train, "--out", tmp_path / "split")
    wait_for_steps(tmp_path / "split", 40, process)
    process.send_signal(signum)
    returncode, _, err = finish(process)
    assert returncode == code, err
    assert f"resume with: charrnn train --out {tmp_path / 'split'} --resume" in err
    stopped_at = checkpoint.load(tmp_path / "split" / "last.pt")["step"]
    assert 40 <= stopped_at < 150 and metric_steps(tmp_path / "split") == stopped_at

    returncode, _, err = finish(charrnn("train", "--out", tmp_path / "split", "--resume"))
    assert returncode == 0, err
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    whole, split = load(tmp_path / "whole" / "last.pt"), load(tmp_path / "split" / "last.pt")
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, split.model.state_dict()[name]), name
    evals = [finish(charrnn("eval", tmp_path / run, "--json"))[1] for run in ("whole", "split")]
    assert evals[0] == evals[1] and json.loads(evals[0])["chars"] > 0


SAVE_FOREVER = """
import sys, torch
from charrnn.storage import checkpoint
path = sys.argv[1]
contents = [{"step": n, "model": {"w": torch.full((1_000_000,), float(n))}} for n in (1, 2)]
n = 0
while True:
    checkpoint.save(path, contents[n % 2])
    n += 1
    print(n, flush=True)
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_while_saving_never_breaks_a_checkpoint(tmp_path):
    target = tmp_path / "last.pt"
    rng = random.Random(0)
    mid_save = 0
    for _ in range(20):
        process = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(target)], env=ENV, stdout=subprocess.PIPE)
        process.stdout.readline()  # one whole save done: the file exists from here on
        time.sleep(rng.uniform(0.0, 0.2))
        process.kill()
        process.wait()
        mid_save += bool(list(tmp_path.glob(".*.tmp-*")))
        content = checkpoint.load(target)
        assert content["model"]["w"][0] == content["step"]
    # The kills must have hit saves in flight, or this test proved nothing.
    assert mid_save >= 5, f"only {mid_save} of 20 kills landed mid-save"
    checkpoint.remove_stale_temps(tmp_path)
    assert not list(tmp_path.glob(".*.tmp-*"))


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_an_error_and_keeps_the_old_checkpoint(tmp_path, data):
    run_dir = tmp_path / "run"
    assert (
        finish(charrnn("train", "--data", data, *TINY, "--max-steps", 10, "--eval-every", 10, "--out", run_dir))[0] == 0
    )
    before = (run_dir / "last.pt").read_bytes()
    process = charrnn(
        "train", "--out", run_dir, "--resume", "--max-steps", 20, preexec_fn=_limit_file_size(len(before) // 2)
    )
    returncode, _, err = finish(process)
    assert returncode == 1, err
    assert "\nerror: could not write" in err and "File too large" in err and "Traceback" not in err
    assert (run_dir / "last.pt").read_bytes() == before
    assert checkpoint.load(run_dir / "last.pt")["step"] == 10
    assert not list(run_dir.glob(".*.tmp-*"))


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path, data):
    options = {"data": str(data), **TINY_TRAIN}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from charrnn.training.launch import open_training; "
            f"open_training({str(tmp_path / 'run')!r}, { ({**options, **TINY_MODEL})!r}); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        env=ENV,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout.readline().strip() == b"locked"
    holder.kill()
    holder.wait()
    open_training(tmp_path / "run", {**options, **TINY_MODEL}, force=True).close()


def test_stale_temporary_files_are_swept_when_a_run_is_opened(tmp_path, data):
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / ".last.pt.tmp-99999"
    stale.write_bytes(b"half a checkpoint")
    open_training(tmp_path / "run", {"data": str(data), **TINY_TRAIN, **TINY_MODEL}).close()
    assert not stale.exists()
