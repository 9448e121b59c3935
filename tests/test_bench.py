import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.model.network import CharRNN
from charrnn.studies import bench, bench_sampling
from charrnn.studies.bench import BenchShape

TINY_SHAPE = BenchShape(hidden_size=16, embed_size=4, vocab_size=20, batch_size=4, seq_len=8, num_samples=3)
TINY_OPTIONS = ["--hidden-size", "16", "--batch-size", "4", "--seq-len", "8", "--num-samples", "3", "--min-time", "0"]


@pytest.fixture(scope="module")
def report():
    return bench.run(TINY_SHAPE, min_time_s=0.0, eval_chars=500)


def test_every_rate_is_positive_and_finite(report):
    values = report.as_dict()
    assert values["corpus"] is None
    rates = [v for k, v in values.items() if k not in ("shape", "ratios", "corpus")] + list(values["ratios"].values())
    assert all(isinstance(v, (int, float)) and 0 < v < float("inf") for v in rates), values


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_peak_memory_is_the_kernels_high_water_mark_in_mb(report):
    status = Path("/proc/self/status").read_text()
    high_water_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert bench.peak_rss_mb() == pytest.approx(high_water_kib / 1024, rel=0.05)
    assert report.threads == torch.get_num_threads()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_flops_and_streamed_bytes_count_every_weight_matrix_of_the_real_model(cell):
    shape = BenchShape(cell=cell, num_layers=2, hidden_size=8, embed_size=3, vocab_size=5)
    model = CharRNN(shape.model_config())
    recurrent = sum(p.numel() for name, p in model.rnn.named_parameters() if name.startswith("weight"))
    head = model.head.weight.numel()
    # Two flops (multiply, add) per weight and character, three times over for forward and backward.
    assert shape.cell_flops_per_char() == 3 * 2 * recurrent
    assert shape.model_flops_per_char() == 3 * 2 * (recurrent + head)
    # Sampling reads every weight matrix once per step but the first layer's W_ih, whose product with a
    # one-hot character is a table row.
    streamed = recurrent + head - model.rnn.weight_ih_l0.numel()
    assert shape.streamed_bytes_per_step() == 4 * streamed
    assert shape.step_flops_per_char() == 2 * streamed


def test_each_sampling_bound_comes_from_the_faster_storage_order_of_its_own_products(monkeypatch):
    # Seconds per call for: sampling and the cell loop at batch 1 and at the batch, then the matrix-vector
    # passes and the batch's products, each in the stored and the transposed order.
    seconds = [0.1, 0.2, 0.3, 0.4, 0.05, 0.04, 0.02, 0.03]
    monkeypatch.setattr(bench_sampling, "alternating_seconds_per_call", lambda fns, min_time_s: seconds)
    model = CharRNN(TINY_SHAPE.model_config())
    rates = bench_sampling.sampling_rates(model, TINY_SHAPE, 0.0)
    n, length = TINY_SHAPE.num_samples, bench_sampling.SAMPLE_LENGTH
    # The transposed matrix-vector pass (0.04 s) was the faster, and the stored batch products (0.02 s).
    assert rates.matvec_gb_per_s == pytest.approx(length * TINY_SHAPE.streamed_bytes_per_step() / 0.04 / 1e9)
    assert rates.batch_product_gflops == pytest.approx(n * length * TINY_SHAPE.step_flops_per_char() / 0.02 / 1e9)


def test_synthetic_text_holds_exactly_the_vocabulary():
    text = bench.synthetic_text(300, 5000)
    assert len(text) == 5000 and len(set(text)) == 300 and "\n" in text
    assert not any(0xD800 <= ord(c) < 0xE000 for c in bench.alphabet(60000))


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_cli_json_for_other_cells(cell):
    result = CliRunner().invoke(
        app, ["bench", "--cell", cell, "--layers", "1", "--threads", "1", "--json", *TINY_OPTIONS]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["shape"]["cell"] == cell and report["threads"] == 1
    assert report["cell_chars_per_s"] > 0 and report["ratios"]["sample_vs_cell_loop"] > 0


def test_cli_table():
    result = CliRunner().invoke(app, ["bench", "--layers", "1", *TINY_OPTIONS])
    assert result.exit_code == 0, result.output
    for row in ("matrix", "training", "evaluation", "sampling", "streaming", "arithmetic", "peak"):
        assert row in result.stdout


def test_cli_rejects_an_unknown_cell_as_a_usage_error():
    result = CliRunner().invoke(app, ["bench", "--cell", "transformer", *TINY_OPTIONS])
    assert result.exit_code == 2 and "Invalid value for '--cell'" in result.stderr


def test_bench_on_a_corpus_times_its_encoding_and_takes_its_vocabulary(text_file):
    result = CliRunner().invoke(app, ["bench", "--data", str(text_file), "--layers", "1", "--json", *TINY_OPTIONS])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    text = text_file.read_text(encoding="utf-8")
    assert report["corpus"]["chars"] == len(text) and report["corpus"]["encode_mb_per_s"] > 0
    assert report["shape"]["vocab_size"] == report["corpus"]["vocab_size"] == len(set(text))
    key = hashlib.sha256(text_file.read_bytes()).hexdigest()[:16]
    # The timed encoding goes to a scratch directory, the training step's to the user's cache: none beside the text.
    assert list(text_file.parent.glob("*.ids")) == []
    assert (Path(os.environ["CHARRNN_CACHE_DIR"]) / f"{key}.ids").is_file()


def test_bench_on_a_missing_corpus_is_a_user_error(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--data", str(tmp_path / "nope.txt"), *TINY_OPTIONS])
    assert result.exit_code == 1 and "error: no such file" in result.stderr and "Traceback" not in result.output
