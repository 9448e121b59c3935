"""The side-by-side benchmark (benchmarks/, outside the package) runs a cell end to end and reports it."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_one_cell_reports_each_tools_test_score(tmp_path):
    """Slow: each tool trains for its budget, and a close cell trains again with a second seed."""
    text = tmp_path / "tiny.txt"
    text.write_text(make_text(30_000))
    out = tmp_path / "cell.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--text", str(text), "--budget", "10",
               "--tools", "charrnn,plain-gru", "--json", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    cell = json.loads(out.read_text())
    assert (cell["text"], cell["budget_s"]) == ("tiny", 10) and cell["cpu"]
    assert set(cell["bpc"]) == {"charrnn", "plain-gru", "spro", "nanogpt"}
    assert cell["bpc"]["spro"] is None and cell["bpc"]["nanogpt"] is None  # no checkout given
    for tool in ("charrnn", "plain-gru"):
        assert math.isfinite(cell["bpc"][tool]) and 0 < cell["bpc"][tool] < math.log2(len(set(text.read_text())))


def test_every_tool_reads_the_split_charrnn_trains_on(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run

    from charrnn.data import ids as corpus_ids
    from charrnn.data.splits import splits

    text = tmp_path / "text.txt"
    text.write_text(make_text(5_000) + "\u00e9\u4e2d\r\n" + make_text(2_000, seed=1))
    run.write_split(text, tmp_path)
    encoded = corpus_ids.load(str(text))
    decoded = "".join(encoded.chars[i] for i in encoded.ids.tolist())
    for name, part in splits(len(encoded.ids)).items():
        assert (tmp_path / f"{name}.txt").read_text(encoding="utf-8") == decoded[part.start : part.end]
