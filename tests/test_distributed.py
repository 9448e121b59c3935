import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from charrnn.data.streams import StreamBatcher
from charrnn.distributed import Group
from charrnn.errors import CharRNNError
from charrnn.storage import checkpoint
from charrnn.training.launch import open_training
from tests.conftest import make_text

# No dropout of any kind: each process draws its own masks, so only a model without them can match one process.
SHAPE = {
    "cell": "lstm",
    "num_layers": 2,
    "hidden_size": 24,
    "embed_size": 8,
    "dropout": 0.0,
    "embed_dropout": 0.0,
    "weight_drop": 0.0,
}
# Within the warm-up the learning rate does not depend on the budget, so a run cut at step 6 and
# resumed to step 12 follows the same schedule as one that ran 12 steps straight.
TRAIN = {"seq_len": 16, "batch_size": 8, "eval_every": 6, "warmup_steps": 100, "lr": 1e-2}


def test_the_shares_of_the_processes_make_up_the_whole_batch():
    ids = torch.arange(5000) % 251
    whole = StreamBatcher(ids, 8, 16, seed=3)
    shares = [StreamBatcher(ids, 8, 16, seed=3, first=first, count=4) for first in (0, 4)]
    for _ in range(whole.windows_per_epoch + 3):  # across an epoch boundary, where the layout moves
        inputs, targets, fresh = whole.next_batch()
        parts = [share.next_batch() for share in shares]
        assert torch.equal(inputs, torch.cat([p[0] for p in parts]))
        assert torch.equal(targets, torch.cat([p[1] for p in parts]))
        assert all(p[2] == fresh for p in parts)


def test_a_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(CharRNNError, match="--batch-size 10 does not split evenly over 4 processes"):
        Group(rank=1, world_size=4).streams(10)
    assert Group(rank=2, world_size=4).streams(12) == (6, 3)


def single_process(out_dir, data, max_steps):
    trainer = open_training(out_dir, {"data": str(data), **TRAIN, "max_steps": max_steps, **SHAPE})
    try:
        for _ in trainer.run():
            pass
    finally:
        trainer.close()
    return out_dir


def torchrun(out_dir, data, max_steps, *extra):
    options = {**SHAPE, **TRAIN, "max_steps": max_steps}
    options["layers"] = options.pop("num_layers")
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + ["-m", "charrnn", "train", "--data", str(data), "--out", str(out_dir), "--device", "cpu", *argv, *extra],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def losses(run_dir):
    return [json.loads(line)["train_loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(run_dir, reference):
    assert losses(run_dir) == pytest.approx(losses(reference), rel=1e-5)
    got, want = checkpoint.load(run_dir / "last.pt"), checkpoint.load(reference / "last.pt")
    assert got["step"] == want["step"]
    for name, weight in want["model"].items():
        torch.testing.assert_close(got["model"][name], weight, rtol=1e-4, atol=1e-5)
    for part, whole in zip(got["hidden"], want["hidden"]):
        torch.testing.assert_close(part, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_with_the_same_global_batch(tmp_path, text_file):
    reference = single_process(tmp_path / "one", text_file, 12)

    result = torchrun(tmp_path / "two", text_file, 12)
    assert_same_run(tmp_path / "two", reference)
    assert "2 processes of 4 streams" in result.stderr
    assert result.stderr.count("best validation") == 1  # only rank 0 speaks

    # Cut at step 6: last.pt gathers both processes' hidden states. Resume it on two processes
    # (each takes its share back) and on one (which takes them all); both end where one run ends.
    torchrun(tmp_path / "cut", text_file, 6)
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["hidden"][0].shape[1] == TRAIN["batch_size"]
    shutil.copytree(tmp_path / "cut", tmp_path / "cut-one")
    torchrun(tmp_path / "cut", text_file, 12, "--resume")
    assert_same_run(tmp_path / "cut", reference)
    resumed = open_training(tmp_path / "cut-one", {"max_steps": 12}, resume=True)
    try:
        for _ in resumed.run():
            pass
    finally:
        resumed.close()
    assert_same_run(tmp_path / "cut-one", reference)


@pytest.mark.slow
def test_weight_drop_trains_under_two_processes(tmp_path, text_file):
    torchrun(tmp_path / "two", text_file, 3, "--weight-drop=0.25")
    # Two processes without weight drop match one process (above); with it, the masks change the losses.
    assert losses(tmp_path / "two") != pytest.approx(losses(single_process(tmp_path / "one", text_file, 3)), rel=1e-5)
    assert checkpoint.load(tmp_path / "two" / "last.pt")["model_config"]["weight_drop"] == 0.25


@pytest.mark.slow
def test_two_processes_share_the_validation_windows_and_score_like_one(tmp_path):
    data = tmp_path / "long.txt"
    data.write_text(make_text(200_000, seed=4))
    # 9,000 of the 10,000 validation characters: two windows, one for each process.
    reference = open_training(
        tmp_path / "one", {"data": str(data), **TRAIN, "max_steps": 6, "val_chars": 9000, **SHAPE}
    )
    with reference:
        for _ in reference.run():
            pass
    torchrun(tmp_path / "two", data, 6, "--val-chars=9000")

    def validations(run_dir):
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [(line["val_bpc"], line["val_chars"]) for line in lines if line["val_bpc"] is not None]

    (one_bpc, one_chars), (two_bpc, two_chars) = validations(tmp_path / "one")[-1], validations(tmp_path / "two")[-1]
    assert one_chars == two_chars == 9000
    assert two_bpc == pytest.approx(one_bpc, rel=1e-5)


@pytest.mark.slow
def test_eval_under_torchrun_shares_the_chunks_and_matches_one_process(tiny_run, tmp_path):
    text = tmp_path / "other.txt"
    text.write_text(make_text(40_000, seed=5))  # five chunks of up to 8,192 characters
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    command = ["-m", "charrnn", "eval", str(tiny_run), "--data", str(text), "--device", "cpu", "--json"]
    one = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env, timeout=120)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *command],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    (line,) = two.stdout.splitlines()  # only rank 0 reports
    alone, shared = json.loads(one.stdout), json.loads(line)
    assert shared["chars"] == alone["chars"] == 40_000 - 1
    assert shared["bpc"] == pytest.approx(alone["bpc"], rel=1e-6)
