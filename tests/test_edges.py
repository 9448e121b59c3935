"""The long tail of bad input (issue 17): one test per class of defect, each of which failed before its fix."""

import json
import os
import shutil
import signal
import stat
import threading
import time

import pytest
import torch
from typer.testing import CliRunner

from charrnn.api import load
from charrnn.cli import app
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import EvalResult
from charrnn.storage import checkpoint
from charrnn.training.run_dir import METRICS, RunDir, read_metrics
from tests.conftest import TINY, TINY_MODEL, assert_error, make_text, run, train_run

TINY_FILL = {**TINY_MODEL, "num_layers": 1, "hidden_size": 16, "embed_size": 4, "bidirectional": True}


@pytest.fixture(scope="module")
def fill_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fill")
    data = root / "text.txt"
    data.write_text(make_text(20_000))
    train_run(root / "run", data, model=TINY_FILL, objective="fill", max_steps=4, eval_every=4)
    return root / "run"


def saved_with(tmp_path, run_dir, name, change):
    """A copy of a run's best.pt with `change` applied to its content, as a .pt file of its own."""
    content = checkpoint.load(run_dir / "best.pt")
    change(content)
    checkpoint.save(tmp_path / name, content)
    return tmp_path / name


def scaled_head(factor):
    def change(content):
        content["model"]["head.weight"].mul_(factor)

    return change


def nan_weight(content):
    content["model"]["head.weight"][0, 0] = float("nan")


def strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_loss_too_large_for_e_to_the_loss_has_an_infinite_perplexity(tiny_run, tmp_path):
    assert EvalResult(nats=1e6, chars=1, correct=0).perplexity == float("inf")
    huge = saved_with(tmp_path, tiny_run, "huge.pt", scaled_head(1e6))
    result = run("eval", huge)
    assert result.exit_code == 0, result.output
    assert "perplexity inf" in result.stdout
    report = strict_json(run("eval", huge, "--json").stdout)
    assert report["perplexity"] is None and report["loss"] > 1000


def test_dynamic_evaluation_that_diverges_to_a_finite_score_is_an_error(tiny_run):
    assert_error(run("eval", tiny_run, "--dynamic", "--dynamic-lr", "1e9"), "diverged", "--dynamic-lr")


def test_a_non_finite_score_is_an_error_and_never_json_nan(tiny_run, fill_run, tmp_path):
    result = run("eval", saved_with(tmp_path, tiny_run, "nan.pt", nan_weight), "--json")
    assert_error(result, "not finite")
    assert result.stdout == ""
    assert_error(run("eval", saved_with(tmp_path, fill_run, "fill-nan.pt", nan_weight)), "not finite")


def test_command_line_text_that_is_not_utf8_names_the_option_and_the_bytes(tiny_run, fill_run):
    # Python hands a byte that is not UTF-8 over as a lone surrogate, 0xff as U+DCFF.
    assert_error(run("sample", tiny_run, "--prime", "The \udcff\udcfe", "--seed", 1), "--prime", "\\xff\\xfe")
    assert_error(run("fill", fill_run, "The ___ \udcff"), "TEXT holds bytes that are not UTF-8", "\\xff")
    assert_error(run("fill", fill_run, "The ___", "--mask-char", "\udce9"), "--mask-char", "\\xe9")


def test_an_interactive_prime_that_is_not_utf8_is_refused_and_the_session_goes_on(tiny_run):
    session = b"The \xff\nThe \n"
    args = ["sample", str(tiny_run), "--interactive", "--length", "5", "--seed", "1"]
    result = CliRunner().invoke(app, args, input=session)
    assert result.exit_code == 0, result.output
    assert "error: the prime holds bytes that are not UTF-8 (\\xff at character 5)" in result.stderr
    assert [len(line) for line in result.stdout.splitlines()] == [4 + 5]


def test_interactive_seeds_run_on_within_64_bits(tiny_run):
    args = ["sample", str(tiny_run), "--interactive", "--length", "5", "--seed", str(2**64 - 1)]
    result = CliRunner().invoke(app, args, input="The \nThe \n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_an_empty_text_to_fill_is_an_error(fill_run, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert_error(run("fill", fill_run, ""), "the text to fill is empty")
    assert_error(run("fill", fill_run, "--file", tmp_path / "empty.txt"), "the text to fill is empty")


def test_a_tiny_temperature_chooses_as_greedy_does(tiny_run, fill_run):
    # fp32 rounds 1e-300 to 0, and the quotient of the likeliest logit by it was 0 / 0.
    greedy = run("sample", tiny_run, "--prime", "The ", "--length", 30, "--temperature", 0)
    tiny = run("sample", tiny_run, "--prime", "The ", "--length", 30, "--temperature", "1e-300", "--seed", 1)
    assert tiny.exit_code == 0, tiny.output
    assert tiny.stdout == greedy.stdout
    text = "The queen ____ tea."
    assert (
        run("fill", fill_run, text, "--temperature", "1e-300", "--seed", 1).stdout == run("fill", fill_run, text).stdout
    )


@pytest.mark.parametrize("command", ["info", "gradients"])
def test_every_command_prints_on_a_terminal_that_cannot_show_its_characters(command, tiny_run, tmp_path):
    def curly_vocabulary(content):
        content["vocab"][-1] = "“"

    curly = saved_with(tmp_path, tiny_run, "curly.pt", curly_vocabulary)
    args = {"info": [curly], "gradients": [tiny_run, "--steps", 2, "--windows", 1]}[command]
    result = CliRunner(charset="ascii").invoke(app, [command, *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0
    assert "?" in result.stdout


def test_an_image_format_matplotlib_cannot_write_is_refused_before_any_work(tiny_run, tmp_path):
    result = run("plot", tiny_run, "--out", tmp_path / "chart.txt")
    assert_error(result, "--out", "cannot write '.txt' images", ".png", ".svg", ".pdf")
    assert_error(run("gradients", tiny_run, "--plot", tmp_path / "g.txt"), "--plot", "'.txt'")
    assert not any(tmp_path.iterdir())


def test_plot_reports_the_file_it_wrote_and_names_its_own_flag(tiny_run, tmp_path):
    result = run("plot", tiny_run, "--out", tmp_path / "chart")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "file").write_text("")
    assert_error(run("plot", tiny_run, "--out", tmp_path / "file" / "chart.png"), "Pass a writable --out path")


def test_a_directory_fifo_or_device_is_named_for_what_it_is(tiny_run, fill_run, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    assert_error(run("sample", tiny_run, "--prime-file", tmp_path), "is a directory", "--prime-file")
    assert_error(run("sample", tiny_run, "--prime-file", tmp_path / "fifo"), "is a FIFO")
    assert_error(run("sample", tiny_run, "--prime-file", "/dev/null"), "is a character device")
    assert_error(run("fill", fill_run, "--file", tmp_path), "is a directory", "--file")
    assert_error(run("fill", fill_run, "--file", tmp_path / "none.txt"), "no such file")


GARBLED_LINES = [
    b"\xff\xfe not UTF-8",
    b"[1, 2, 3]",
    b"42",
    b'"a string"',
    b'{"step": "three", "elapsed_s": 1, "lr": 0.1, "train_loss": 2.0, "grad_norm": 1.0}',
    b'{"step": 1' + b"0" * 400 + b', "elapsed_s": 1, "lr": 0.1, "train_loss": 2.0, "grad_norm": 1.0}',
    b"[" * 100_000,
    b'{"step": 9, "elapsed_s": 1.0',
]


def test_garbled_metrics_lines_neither_break_plot_nor_block_a_resume(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(make_text(20_000))
    out = tmp_path / "run"
    train_run(out, data, max_steps=2, eval_every=2)
    with open(out / METRICS, "ab") as f:
        f.write(b"\n".join(GARBLED_LINES) + b"\n")
    assert [m["step"] for m in read_metrics(out)] == [1, 2]
    plotted = run("plot", out, "--out", tmp_path / "chart.png")
    assert plotted.exit_code == 0, plotted.output
    resumed = run("train", "--out", out, "--resume", "--max-steps", 3)
    assert resumed.exit_code == 0, resumed.output
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3]
    RunDir(out).truncate_metrics(1)
    assert [json.loads(line)["step"] for line in (out / METRICS).read_text().splitlines()] == [1]


def test_non_finite_weights_are_refused_by_gradients(tiny_run, tmp_path):
    nan = saved_with(tmp_path, tiny_run, "nan.pt", nan_weight)
    assert_error(run("gradients", nan, "--steps", 2, "--windows", 1), "non-finite weights")
    (tmp_path / "text.txt").write_text(make_text(20_000))
    fresh = ["gradients", "--model", "rnn::1e300", "--data", tmp_path / "text.txt", "--steps", 2, "--windows", 1]
    assert_error(run(*fresh, "--hidden-size", 8), "overflows W_hh", "smaller scale")


def test_more_samples_or_windows_than_the_machine_or_the_text_holds_are_refused(tiny_run):
    assert_error(run("sample", tiny_run, "--num-samples", 10**11, "--seed", 1), "GiB", "--num-samples")
    assert_error(run("gradients", tiny_run, "--steps", 2, "--windows", 10**9), "different windows", "--windows")


def test_threads_beyond_what_torch_takes_are_a_usage_error(tiny_run):
    result = run("sample", tiny_run, "--threads", 2**40, "--length", 1, "--seed", 1)
    assert result.exit_code == 2 and "--threads" in result.output
    assert torch.get_num_threads() < 2**31


def test_a_text_with_nothing_to_score_is_an_error_for_a_fill_model_too(fill_run, tmp_path):
    (tmp_path / "one.txt").write_text("T")
    assert_error(run("eval", fill_run, "--data", tmp_path / "one.txt"), "nothing to score")


def test_the_largest_seed_trains_a_fill_model(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(make_text(20_000))
    outcome = train_run(tmp_path / "run", data, model=TINY_FILL, objective="fill", max_steps=1, seed=2**64 - 1)
    assert outcome.step == 1


def test_a_seed_beyond_64_bits_is_refused_by_gradients_too(tmp_path):
    (tmp_path / "text.txt").write_text(make_text(20_000))
    fresh = ["gradients", "--data", tmp_path / "text.txt", "--hidden-size", 8, "--steps", 2, "--windows", 1]
    assert_error(run(*fresh, "--seed", -(2**63) - 1), "--seed must be at least 0")


# The defects below were fixed outside the files of the change that added this module.


def test_a_directory_fifo_device_or_nothing_given_as_data_is_named_for_what_it_is(tiny_run, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    assert_error(run("eval", tiny_run, "--data", tmp_path), "is a directory")
    assert_error(run("eval", tiny_run, "--data", tmp_path / "fifo"), "is a FIFO")
    assert_error(run("eval", tiny_run, "--data", "/dev/null"), "is a character device")
    assert_error(run("eval", tiny_run, "--data", ""), "--data is empty")
    assert_error(run("train", "--data", tmp_path, "--out", tmp_path / "run"), "is a directory")


def test_a_run_with_only_its_last_pt_is_named_for_it(tiny_run, tmp_path):
    (tmp_path / "run").mkdir()
    shutil.copy(tiny_run / "last.pt", tmp_path / "run" / "last.pt")
    assert_error(run("sample", tmp_path / "run"), "no best.pt yet", f"Pass {tmp_path / 'run' / 'last.pt'}")


def test_the_summary_of_a_run_stopped_before_its_first_validation_lists_only_last_pt(tmp_path):
    data, out = tmp_path / "text.txt", tmp_path / "run"
    data.write_text(make_text(20_000))

    def interrupt_after_the_first_step():
        while not (out / METRICS).is_file() or not (out / METRICS).read_text():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_the_first_step, daemon=True).start()
    result = run("train", "--data", data, *TINY, "--max-steps", 10**6, "--eval-every", 10**6, "--out", out)
    assert result.exit_code == 130, result.output
    assert f"checkpoints in {out}/ (last.pt)" in result.stderr
    assert not (out / "best.pt").exists()


def test_a_finite_loss_that_explodes_is_divergence(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(make_text(20_000))
    args = ["train", "--data", data, *TINY, "--max-steps", 4, "--eval-every", 2, "--lr", "1e9", "--out", tmp_path / "r"]
    result = run(*args)
    assert result.exit_code == 1, result.output
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: the training loss diverged at step"), error
    assert "guessing uniformly" in error and "--lr 1e+09" in error
    assert not (tmp_path / "r" / "best.pt").exists()


def test_float_options_beyond_32_bits_are_refused(tiny_run, tmp_path):
    train = ["train", "--data", tmp_path / "none.txt", "--out", tmp_path / "r"]
    assert_error(run(*train, "--clip-value", "3.5e38"), "--clip-value must be at most 3.403e+38")
    assert_error(run(*train, "--lr", "1e38"), "--lr 1e+38 with --weight-decay 0.05 overflows")
    assert_error(run("eval", tiny_run, "--dynamic", "--dynamic-lr", "3.5e38"), "--dynamic-lr must be at most")


def test_a_bidirectional_model_from_init_from_is_not_blamed_on_the_command_line(fill_run, tmp_path):
    args = ["train", "--data", fill_run.parent / "text.txt", "--init-from", fill_run / "best.pt"]
    result = run(*args, "--max-steps", 1, "--out", tmp_path / "r")
    assert_error(result, "The --init-from model is a fill model")
    assert "Leave out --bidirectional" not in result.stderr


def test_a_shape_beyond_memory_is_refused_at_once_with_the_options_that_take_it(tmp_path):
    (tmp_path / "text.txt").write_text(make_text(20_000))
    train = ["train", "--data", tmp_path / "text.txt", "--max-steps", 1, "--out", tmp_path / "r"]
    assert_error(run(*train, "--hidden-size", 10**7), "GiB", "Pass a smaller --hidden-size or --layers")
    assert_error(run(*train, "--layers", 10**12), "GiB", "--layers")
    assert_error(run(*train, "--batch-size", 10**10), "GiB", "Pass a smaller --batch-size, --seq-len")
    bench = ["bench", "--min-time", 0, "--hidden-size", 8, "--layers", 1]
    assert_error(run(*bench, "--batch-size", 10**10), "GiB", "Pass a smaller --batch-size, --seq-len")
    assert_error(run(*bench, "--num-samples", 10**10), "GiB", "--num-samples")
    assert_error(run("bench", "--min-time", "inf"), "--min-time must be a finite number")


def test_a_device_given_as_config_is_refused_and_a_write_never_replaces_a_fifo(tiny_run, tmp_path):
    assert_error(run("train", "--config", "/dev/zero", "--out", tmp_path / "r"), "/dev/zero is a device")
    os.mkfifo(tmp_path / "fifo")
    assert_error(run("export", tiny_run, "--out", tmp_path / "fifo"), "not a regular file")
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)


def test_a_checkpoint_with_a_damaged_zip_version_is_refused(tiny_run, tmp_path):
    data = bytearray((tiny_run / "best.pt").read_bytes())
    data[data.index(b"PK\x01\x02") + 6] = 0xFF  # the version needed to extract, of the first entry
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    assert_error(run("info", tmp_path / "bad.pt"), "not a charrnn checkpoint")


def test_a_text_file_name_that_is_not_utf8_is_refused_before_a_run_starts(tmp_path):
    (tmp_path / "\udcff.txt").write_text(make_text(20_000))
    result = run("train", "--data", tmp_path / "\udcff.txt", *TINY, "--max-steps", 1, "--out", tmp_path / "r")
    assert_error(result, "--data", "holds bytes that are not UTF-8 (\\xff", "rename it")
    assert not (tmp_path / "r").exists()


def test_the_python_api_refuses_text_that_is_not_utf8(tiny_run):
    with pytest.raises(CharRNNError, match="never saw"):
        load(tiny_run).generate(prime="The \udcff", length=2)


def test_the_largest_seed_trains_a_language_model(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(make_text(20_000))
    result = run("train", "--data", data, *TINY, "--max-steps", 1, "--seed", 2**64 - 1, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
