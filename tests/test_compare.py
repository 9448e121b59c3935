import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import CharRNNError
from charrnn.storage import checkpoint
from charrnn.studies.compare import COLUMNS, Comparison, validation_curve
from charrnn.studies.compare_configs import DEFAULT_SET, Entry, select
from charrnn.training.run_dir import read_metrics
from tests.conftest import make_text

runner = CliRunner()
TINY = ("--hidden-size", 16, "--embed-size", 4, "--seq-len", 16, "--batch-size", 4, "--max-steps", 6, "--eval-every", 2)
ONLY = "rnn-tanh,lstm,rnn-no-clip"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One small comparison of three configurations, its JSON report and its run directories."""
    root = tmp_path_factory.mktemp("compare")
    data = root / "text.txt"
    data.write_text(make_text(20_000))
    result = run("compare", "--data", data, "--only", ONLY, *TINY, "--out", root / "runs", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), root


def test_the_default_set_tells_the_notes_story():
    assert [e.name for e in select(None)] == [
        "rnn-tanh",
        "rnn-identity",
        "rnn-relu-identity",
        "gru",
        "lstm",
        "lstm-no-dropout",
        "rnn-no-clip",
    ]
    assert all(e.name in run("compare", "--help").stdout for e in DEFAULT_SET)


def test_only_keeps_the_order_given():
    assert [e.name for e in select("lstm, rnn-tanh,lstm")] == ["lstm", "rnn-tanh"]


@pytest.mark.parametrize("only", ["lstm,transformer", ","])
def test_only_refuses_unknown_names(only):
    with pytest.raises(CharRNNError, match="Use names from: rnn-tanh"):
        select(only)


def test_json_rows_in_order_with_every_key(compared):
    report, _ = compared
    assert [row["name"] for row in report["rows"]] == ONLY.split(",")
    keys = {
        "name", "description", "run_dir", "parameters", "steps", "elapsed_s", "train_chars_per_s", "best_val_bpc",
        "test_bpc", "time_to_best_s", "clipped_fraction", "median_grad_norm", "error",
    }  # fmt: skip
    for row in report["rows"]:
        assert set(row) == keys
        assert row["steps"] == 6 and row["error"] is None
        assert row["best_val_bpc"] > 0 and row["test_bpc"] > 0 and row["train_chars_per_s"] > 0
    assert report["shape"]["num_layers"] == 1 and report["shape"]["hidden_size"] == 16


def test_rows_agree_with_each_runs_metrics(compared):
    report, _ = compared
    for row in report["rows"]:
        metrics = read_metrics(row["run_dir"])
        evaluated = [m for m in metrics if m["val_bpc"] is not None]
        best = min(evaluated, key=lambda m: m["val_bpc"])
        assert row["best_val_bpc"] == best["val_bpc"]
        assert row["time_to_best_s"] == best["elapsed_s"]
        assert validation_curve(row["run_dir"]) == [(m["elapsed_s"], m["val_bpc"]) for m in evaluated]
        if row["name"] == "rnn-no-clip":
            assert row["clipped_fraction"] is None
        else:
            assert row["clipped_fraction"] == sum(m["clipped"] for m in metrics) / len(metrics)


def test_the_configurations_differ_as_named(compared):
    report, _ = compared
    saved = {row["name"]: checkpoint.load(Path(row["run_dir"])) for row in report["rows"]}
    assert saved["rnn-tanh"]["model_config"]["cell"] == "rnn" and saved["lstm"]["model_config"]["cell"] == "lstm"
    assert saved["rnn-tanh"]["train_config"]["clip_norm"] == 1.0
    assert saved["rnn-no-clip"]["train_config"]["clip_norm"] == 0.0


def test_markdown_table(compared, tmp_path):
    _, root = compared
    result = run("compare", "--data", root / "text.txt", "--only", "gru,rnn-no-clip", *TINY, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    header, rule, *rows = result.stdout.strip().splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == list(COLUMNS)
    assert rule.count("|") == len(COLUMNS) + 1
    assert [r.split("|")[1].strip() for r in rows] == ["gru", "rnn-no-clip"]
    assert rows[1].split("|")[8].strip() == "off"
    assert "gru: 6 steps" in result.stderr


def test_refuses_to_overwrite_runs_without_force(compared):
    report, root = compared
    again = ("compare", "--data", root / "text.txt", "--only", "lstm", *TINY, "--out", root / "runs")
    result = run(*again)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "already holds runs for lstm" in result.stderr
    assert "--force" in result.stderr
    assert run(*again, "--force").exit_code == 0


def test_a_diverging_configuration_is_a_result(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(make_text(20_000))
    boom = Entry("boom", "", {"cell": "rnn", "nonlinearity": "relu", "init": "identity"}, {"clip_norm": 0.0, "lr": 1e9})
    fine = Entry("fine", "", {"cell": "gru"})
    train = {"data": str(data), "seq_len": 16, "batch_size": 4, "max_steps": 4, "eval_every": 2, "warmup_steps": 0}
    comparison = Comparison([boom, fine], tmp_path / "runs", train, {"hidden_size": 16, "embed_size": 4})
    for _ in comparison.run():
        pass
    diverged, finished = comparison.rows
    assert re.search(r"(diverged|became non-finite) at step", diverged.error) and diverged.steps < 4
    assert finished.error is None and finished.steps == 4


def test_plot_of_validation_curves(compared, tmp_path):
    pytest.importorskip("matplotlib")
    _, root = compared
    plot = tmp_path / "c.png"
    result = run(
        "compare", "--data", root / "text.txt", "--only", "gru", *TINY, "--out", tmp_path / "r", "--plot", plot
    )
    assert result.exit_code == 0, result.output
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the extra looks like
    result = run("compare", "--out", tmp_path / "runs", "--plot", tmp_path / "c.png")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --plot needs matplotlib")
    assert "pip install 'charrnn-lm[plot]'" in result.stderr
    assert not (tmp_path / "runs").exists()
