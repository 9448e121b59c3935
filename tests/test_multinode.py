"""Two torchrun launches that meet at a c10d rendezvous, as two machines would: docs/devices.md's recipe."""

import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from tests.test_distributed import SHAPE, TRAIN, assert_same_run, single_process

LAUNCH_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_node(endpoint, run_id, out_dir, data, cache_dir, max_steps):
    """One node of two with one process each; its own session, so that a timeout can end its workers too."""
    options = {**SHAPE, **TRAIN, "max_steps": max_steps}
    options["layers"] = options.pop("num_layers")
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    launcher += ["--rdzv-endpoint", endpoint, "--rdzv-id", run_id]
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *launcher]
        + ["-m", "charrnn", "train", "--data", str(data), "--out", str(out_dir), "--device", "cpu", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1", "CHARRNN_CACHE_DIR": str(cache_dir)},
        start_new_session=True,
    )


def finish(node):
    try:
        return node.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        _, stderr = node.communicate()
        pytest.fail(f"a node's launch ran past {LAUNCH_TIMEOUT_S} s:\n{stderr[-3000:]}")


@pytest.mark.slow
def test_two_nodes_at_a_c10d_rendezvous_train_like_one_process(tmp_path, text_file):
    reference = single_process(tmp_path / "one", text_file, 12)

    endpoint, run_id = f"127.0.0.1:{free_port()}", f"charrnn-{uuid.uuid4().hex[:8]}"
    nodes = [launch_node(endpoint, run_id, tmp_path / "two", text_file, tmp_path / "cache", 12) for _ in range(2)]
    outcomes = [(node, finish(node)) for node in nodes]
    for node, (_, stderr) in outcomes:
        assert node.returncode == 0, stderr[-3000:]

    assert_same_run(tmp_path / "two", reference)
    # The rendezvous makes one of the two nodes rank 0, whichever it sorts first; that one alone speaks.
    speakers = [stderr for _, (_, stderr) in outcomes if "best validation" in stderr]
    assert len(speakers) == 1
    assert "2 processes of 4 streams" in speakers[0]
