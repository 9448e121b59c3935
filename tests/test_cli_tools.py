import json
import math
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from charrnn.api import load
from charrnn.cli import app
from charrnn.storage import checkpoint
from tests.conftest import assert_error, run, train_run


def test_info_counts_a_tied_embedding_once(tmp_path, text_file):
    """best.pt holds an averaged tied matrix under both its names; the model has it once."""
    train_run(tmp_path / "run", text_file, model={"tie_embedding": True, "embed_size": 32}, ema_decay=0.9)
    result = run("info", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["parameters"] == load(tmp_path / "run").model.num_parameters()


def test_info_describes_a_checkpoint(tiny_run):
    content = checkpoint.load(tiny_run / "best.pt")
    result = run("info", tiny_run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["parameters"] == sum(t.numel() for t in content["model"].values())
    assert report["vocab"] == "".join(content["vocab"]) and report["vocab_size"] == len(content["vocab"])
    assert report["model"]["hidden_size"] == 32 and report["train"]["seq_len"] == 32
    assert report["step"] == content["step"] and report["charrnn_version"] == content["charrnn_version"]
    assert report["best_val_bpc"] == content["best_val_loss"] / math.log(2)
    assert report["resumable"] is False

    text = run("info", tiny_run / "last.pt").stdout
    assert "2-layer 32-unit lstm" in text and f"{report['parameters']:,} parameters" in text
    assert "resumable   yes" in text and "last " in text


def test_info_of_a_missing_checkpoint(tmp_path):
    assert_error(run("info", tmp_path / "none.pt"), "no checkpoint at")


def test_plot_draws_a_png(tiny_run, tmp_path):
    result = run("plot", tiny_run, "--out", tmp_path / "run.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install_it(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the extra looks like
    result = run("plot", tiny_run, "--out", tmp_path / "run.png")
    assert_error(result, "charrnn plot needs matplotlib", "pip install 'charrnn-lm[plot]'")
    assert not (tmp_path / "run.png").exists()


def test_plot_needs_a_run_directory(tmp_path):
    assert_error(run("plot", tmp_path), "no metrics.jsonl in")


def test_interactive_sampling_until_end_of_input(tiny_run, tmp_path):
    session = "Alice\n:t 0\nThe \n:t\n:t -1\nThe €\n:n 5\nThe \n"
    args = ["sample", str(tiny_run), "--interactive", "--length", "12", "--seed", "4"]
    result = CliRunner().invoke(app, args, input=session)
    assert result.exit_code == 0, result.output
    outputs = result.stdout.splitlines()
    assert [len(line) for line in outputs] == [5 + 12, 4 + 12, 4 + 5]
    assert outputs[0].startswith("Alice") and outputs[2] == outputs[1][:9]  # greedy: same start, shorter
    assert "a command needs a number" in result.stderr and "--temperature must be at least 0" in result.stderr
    assert "never saw: '€'" in result.stderr
    again = CliRunner().invoke(app, args, input=session)
    assert again.stdout == result.stdout


def test_load_is_exported_without_importing_torch():
    code = "import sys, charrnn; assert 'torch' not in sys.modules; assert callable(charrnn.load); print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "ok\n"


@pytest.mark.parametrize("command", ["train", "sample", "eval", "fill", "compare", "gradients", "bench"])
def test_every_computing_command_takes_threads(command, tiny_run):
    result = run(command, *([tiny_run] if command in ("sample", "eval", "fill") else []), "--threads", 0)
    assert result.exit_code == 2 and "--threads" in result.output


def test_threads_sets_pytorch_threads(tiny_run):
    wanted = 2 if torch.get_num_threads() == 1 else 1
    result = run("gradients", tiny_run, "--steps", 2, "--windows", 1, "--threads", wanted, "--json")
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == wanted
