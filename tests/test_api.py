import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import make_text
from typer.testing import CliRunner

import charrnn
from charrnn.api import train
from charrnn.cli import app
from charrnn.settings.config import DynamicEvalConfig
from charrnn.settings.options import OptionError

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- api-example"


def api_example(readme: str) -> str:
    """The python block that follows the README's api-example marker."""
    found = re.search(re.escape(MARKER) + r".*?-->\s*```python\n(.*?)```", readme, re.DOTALL)
    assert found, f"README.md has no ```python block after {MARKER!r}"
    return found.group(1)


def test_the_readme_python_example_runs(tiny_run, tmp_path, monkeypatch):
    code = api_example(README.read_text(encoding="utf-8"))
    shutil.copytree(tiny_run, tmp_path / "runs" / "alice")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("Alice ")
    bpc, chars = re.fullmatch(r"(\d+\.\d{3}) bits per character over (\d+) characters", lines[-1]).groups()
    assert 0 < float(bpc) < 8 and int(chars) > 10


def test_an_example_that_fails_fails_the_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = api_example(f"{MARKER} -->\n```python\nimport charrnn\ncharrnn.load('runs/none')\n```\n")
    with pytest.raises(Exception, match="no checkpoint at runs/none"):
        exec(compile(code, "README.md", "exec"), {})


def test_score_with_dynamic_evaluation_matches_the_cli(tiny_run, tmp_path):
    text = make_text(2000, seed=9)
    (tmp_path / "other.txt").write_text(text)
    loaded = charrnn.load(tiny_run)
    dynamic, plain = loaded.score(text, dynamic=True), loaded.score(text)
    assert dynamic.chars == plain.chars and dynamic.nats != plain.nats
    result = CliRunner().invoke(
        app, ["eval", str(tiny_run), "--data", str(tmp_path / "other.txt"), "--dynamic", "--json"]
    )
    assert json.loads(result.stdout)["bpc"] == pytest.approx(dynamic.bpc, rel=1e-9)
    faster = loaded.score(text, dynamic=DynamicEvalConfig(lr=0.01, decay=0.0))
    assert faster.nats != dynamic.nats
    result = CliRunner().invoke(
        app,
        ["eval", str(tiny_run), "--data", str(tmp_path / "other.txt"), "--dynamic", "--dynamic-lr", "0.01"]
        + ["--dynamic-decay", "0", "--json"],
    )
    assert json.loads(result.stdout)["bpc"] == pytest.approx(faster.bpc, rel=1e-9)


def test_the_fill_objective_implies_bidirectional_in_the_api_as_on_the_command_line(tmp_path, text_file):
    options = {"data": str(text_file), "hidden_size": 16, "embed_size": 4, "num_layers": 1, "seq_len": 16}
    outcome = train(tmp_path / "api", objective="fill", max_steps=2, batch_size=4, **options)
    assert outcome.finished
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(text_file), "--objective", "fill", "--hidden-size", "16", "--embed-size", "4"]
        + ["--layers", "1", "--seq-len", "16", "--batch-size", "4", "--max-steps", "2", "--out", str(tmp_path / "cli")],
    )
    assert result.exit_code == 0, result.output
    for run_dir in ("api", "cli"):
        assert charrnn.load(tmp_path / run_dir / "best.pt").model.config.bidirectional
    api_config = (tmp_path / "api" / "config.toml").read_text().replace(str(tmp_path / "api"), "")
    assert api_config == (tmp_path / "cli" / "config.toml").read_text().replace(str(tmp_path / "cli"), "")


def test_api_errors_name_the_field_not_the_flag(tmp_path, text_file):
    with pytest.raises(OptionError, match="^num_layers must be at least 1"):
        train(tmp_path / "run", data=str(text_file), num_layers=0)
    assert not (tmp_path / "run").exists()


def test_generate_defaults_are_the_cli_sample_defaults(tiny_run):
    """Same checkpoint, same seed, nothing else given: the Python API and `charrnn sample` write the same text."""
    result = CliRunner().invoke(app, ["sample", str(tiny_run), "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert charrnn.load(tiny_run).generate(seed=5) == result.stdout.removesuffix("\n")


def test_generate_without_a_seed_is_random_as_the_cli_is(tiny_run):
    model = charrnn.load(tiny_run)
    assert len({model.generate(length=40) for _ in range(3)}) > 1
