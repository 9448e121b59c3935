import json
import subprocess
import sys

import pytest

from charrnn.cli import COMMANDS
from charrnn.settings.config import DynamicEvalConfig
from charrnn.storage import checkpoint
from tests.conftest import TINY, assert_error, make_text, run


def test_help_lists_every_command():
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"│ {command} " in result.stdout


def test_version():
    assert run("--version").stdout.startswith("charrnn ")


def test_corpus_lists_known_corpora():
    result = run("corpus")
    assert result.exit_code == 0 and "alice" in result.stdout


def test_corpus_unknown_name():
    assert_error(run("corpus", "bob"), "unknown corpus 'bob'")


def test_train_sample_eval_end_to_end(tmp_path, text_file):
    out = tmp_path / "run"
    result = run("train", "--data", text_file, *TINY, "--max-steps", 12, "--eval-every", 6, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "best validation" in result.stderr and f"charrnn sample {out}" in result.stderr
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "summary.json").is_file()

    sampled = run("sample", out, "--prime", "Alice ", "--length", 40, "--seed", 3)
    assert sampled.exit_code == 0, sampled.output
    assert sampled.stdout.startswith("Alice ") and len(sampled.stdout) == 46
    assert sampled.stdout == run("sample", out / "best.pt", "--prime", "Alice ", "--length", 40, "--seed", 3).stdout

    many = run("sample", out, "--length", 20, "--num-samples", 3, "--seed", 1)
    assert many.stdout.count("\n\n---\n\n") == 2

    scored = run("eval", out, "--json")
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert set(report) == {"loss", "bpc", "perplexity", "chars"}
    assert report["chars"] == 20_000 - int(20_000 * 0.95)
    assert "bits/char" in run("eval", out, "--split", "val").stdout


def test_sample_without_seed_prints_the_seed(tiny_run):
    result = run("sample", tiny_run, "--length", 10)
    assert result.exit_code == 0 and result.stderr.startswith("seed: ")
    seed = int(result.stderr.split()[1])
    assert run("sample", tiny_run, "--length", 10, "--seed", seed).stdout == result.stdout


def test_sample_prime_file(tiny_run, tmp_path):
    (tmp_path / "prime.txt").write_text("The queen ")
    result = run("sample", tiny_run, "--prime-file", tmp_path / "prime.txt", "--length", 5, "--seed", 1)
    assert result.stdout.startswith("The queen ")


def test_eval_other_text_and_unknown_characters(tiny_run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(make_text(3000, seed=5) + "€€")
    assert_error(
        run("eval", tiny_run, "--data", other), "2 characters the model never saw", "'€' (2x)", "--skip-unknown"
    )
    result = run("eval", tiny_run, "--data", other, "--skip-unknown", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["skipped"] == 2


def test_eval_dynamic(tiny_run):
    static = json.loads(run("eval", tiny_run, "--split", "val", "--json").stdout)
    result = run("eval", tiny_run, "--split", "val", "--dynamic", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dynamic"] == {"lr": DynamicEvalConfig.lr, "decay": DynamicEvalConfig.decay}
    assert report["chars"] == static["chars"] and report["bpc"] != static["bpc"]
    faster = json.loads(run("eval", tiny_run, "--split", "val", "--dynamic", "--dynamic-lr", 0.01, "--json").stdout)
    assert faster["dynamic"]["lr"] == 0.01 and faster["bpc"] != report["bpc"]
    text = run("eval", tiny_run, "--split", "val", "--dynamic").stdout
    assert "(dynamic evaluation)" in text and f"{report['bpc']:.4f} bits/char" in text


def test_import_without_typer_or_rich():
    code = (
        "import sys; sys.modules['typer'] = None; sys.modules['rich'] = None\n"
        "import charrnn.api, charrnn.training.trainer, charrnn.generation.sampling, charrnn.evaluation.score\n"
        "import charrnn.data.corpus, charrnn.storage.checkpoint"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_command_starts_without_importing_torch():
    """Importing torch takes a second or more: `--help`, `corpus` and shell completion (which runs the program on
    every Tab) must not wait for it. Commands that compute import it when they run."""
    code = "import sys, charrnn.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "charrnn", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout


# Every error a user can cause, through the CLI: exit code and message, never a traceback.


def test_train_missing_data_file(tmp_path):
    assert_error(
        run("train", "--data", tmp_path / "nope.txt", "--out", tmp_path / "r"), "no such file", "UTF-8 text file"
    )


def test_train_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert_error(run("train", "--data", tmp_path / "empty.txt", "--out", tmp_path / "r"), "is empty")


def test_train_corpus_too_short(tmp_path):
    (tmp_path / "short.txt").write_text("hello world\n" * 20)
    assert_error(
        run("train", "--data", tmp_path / "short.txt", "--out", tmp_path / "r"),
        "--batch-size 32 and --seq-len 128 need at least 4,097",
        "smaller --batch-size or --seq-len",
    )


def test_train_not_utf8(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1") * 100)
    assert_error(
        run("train", "--data", tmp_path / "latin1.txt", "--out", tmp_path / "r"), "not valid UTF-8", "offset 3"
    )


def test_train_binary_file(tmp_path):
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 10)
    assert_error(run("train", "--data", tmp_path / "blob.bin", "--out", tmp_path / "r"), "binary file")


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--hidden-size", 0, "--hidden-size must be at least 1"),
        ("--layers", 0, "--layers must be at least 1, got 0"),
        ("--embed-size", 0, "--embed-size must be at least 1"),
        ("--seq-len", 0, "--seq-len must be at least 1"),
        ("--batch-size", 0, "--batch-size must be at least 1"),
        ("--dropout", 1.0, "--dropout must be at least 0 and below 1"),
        ("--dropout", -0.5, "--dropout must be at least 0 and below 1"),
        ("--dropout", "nan", "--dropout must be a finite number"),
        ("--seed", 2**64, "--seed must be at least 0 and at most"),
        ("--embed-dropout", 1.0, "--embed-dropout must be at least 0 and below 1"),
        ("--weight-drop", 1.0, "--weight-drop must be at least 0 and below 1"),
        ("--ema-decay", 1.0, "--ema-decay must be at least 0 and below 1"),
        ("--lr", 0, "--lr must be above 0"),
        ("--lr", "inf", "--lr must be a finite number"),
        ("--max-time", "soon", "cannot read the duration"),
    ],
)
def test_train_option_out_of_range(tmp_path, text_file, option, value, message):
    assert_error(run("train", "--data", text_file, option, value, "--out", tmp_path / "r"), message)
    assert not (tmp_path / "r" / "last.pt").exists()


def test_a_tied_embedding_follows_the_hidden_size_unless_given_another(tmp_path, text_file):
    result = run("train", "--data", text_file, "--tie-embedding", "--hidden-size", 48, "--max-steps", 2, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "--embed-size 48  (tied embedding)" in result.stdout.splitlines()
    preset = run("train", "--data", text_file, "--preset", "tiny", "--tie-embedding", "--dry-run")
    assert preset.exit_code == 0, preset.output
    assert "--embed-size 64  (tied embedding)" in preset.stdout.splitlines()
    assert_error(
        run("train", "--data", text_file, "--tie-embedding", "--embed-size", 8, "--hidden-size", 32, "--max-steps", 2),
        "--tie-embedding scores the hidden state with the embedding, which needs --embed-size 8 to equal "
        "--hidden-size 32",
    )


@pytest.mark.parametrize("option, value", [("--hidden-size", "big"), ("--cell", "tcn"), ("--precision", "fp8")])
def test_train_option_of_the_wrong_type_or_choice_is_a_usage_error(text_file, option, value):
    result = run("train", "--data", text_file, option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.stderr


def test_train_unwritable_output_directory(tmp_path, text_file):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert_error(
        run("train", "--data", text_file, *TINY, "--max-steps", 1, "--out", blocker / "run"),
        "cannot write to the run directory",
    )


def test_train_refuses_an_existing_run(tiny_run, text_file):
    assert_error(run("train", "--data", text_file, "--out", tiny_run), "already holds a run", "--resume", "--force")


def test_train_resume_without_a_run(tmp_path):
    assert_error(run("train", "--out", tmp_path, "--resume"), "no run to resume")


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--temperature", -0.5, "--temperature must be at least 0"),
        ("--temperature", "nan", "--temperature must be a finite number"),
        ("--top-p", 0, "--top-p must be above 0 and at most 1"),
        ("--top-p", 1.5, "--top-p must be above 0 and at most 1"),
        ("--top-k", 0, "--top-k must be at least 1"),
        ("--length", -1, "--length must be at least 0"),
    ],
)
def test_sample_option_out_of_range(tiny_run, option, value, message):
    assert_error(run("sample", tiny_run, option, value), message)


def test_sample_missing_checkpoint(tmp_path):
    assert_error(run("sample", tmp_path / "nope.pt"), "no checkpoint at")


def test_sample_truncated_checkpoint(tiny_run, tmp_path):
    data = (tiny_run / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) - 100])
    assert_error(run("sample", tmp_path / "cut.pt"), "not a charrnn checkpoint")


def test_sample_foreign_file(tmp_path):
    (tmp_path / "x.pt").write_text("just text")
    assert_error(run("sample", tmp_path / "x.pt"), "not a charrnn checkpoint")


def test_sample_unknown_prime_characters(tiny_run):
    assert_error(run("sample", tiny_run, "--prime", "Zebra ☃"), "characters the model never saw", "'☃' (1x)")


def test_sample_missing_prime_file(tiny_run, tmp_path):
    assert_error(run("sample", tiny_run, "--prime-file", tmp_path / "nope.txt"), "no such file")


def test_eval_unknown_split(tiny_run):
    result = run("eval", tiny_run, "--split", "dev")
    assert result.exit_code == 2 and "Invalid value for '--split'" in result.stderr


def test_eval_dynamic_settings(tiny_run):
    assert_error(run("eval", tiny_run, "--dynamic-lr", 0.01), "Add --dynamic", code=2)
    assert_error(run("eval", tiny_run, "--dynamic-decay", 0.1), "Add --dynamic", code=2)
    assert_error(run("eval", tiny_run, "--dynamic", "--dynamic-lr", 0), "--dynamic-lr must be above 0")
    assert_error(run("eval", tiny_run, "--dynamic", "--dynamic-lr", "nan"), "--dynamic-lr must be a finite number")
    assert_error(
        run("eval", tiny_run, "--dynamic", "--dynamic-decay", 1), "--dynamic-decay must be at least 0 and below 1"
    )


def test_a_checkpoint_with_non_finite_weights_is_refused_by_sample_and_eval(tiny_run, tmp_path):
    content = checkpoint.load(tiny_run / "best.pt")
    content["model"]["head.weight"][0, 0] = float("nan")
    checkpoint.save(tmp_path / "nan.pt", content)
    assert_error(run("sample", tmp_path / "nan.pt", "--seed", 1), "non-finite weights", "earlier checkpoint")
    assert_error(run("eval", tmp_path / "nan.pt"), "not finite", "non-finite weights")
    assert_error(run("eval", tmp_path / "nan.pt", "--dynamic"), "not finite", "--dynamic-lr")


def test_eval_missing_checkpoint(tmp_path):
    assert_error(run("eval", tmp_path), "no checkpoint at")


def test_eval_after_the_corpus_changed(tmp_path, text_file):
    out = tmp_path / "run"
    assert run("train", "--data", text_file, *TINY, "--max-steps", 2, "--out", out).exit_code == 0
    text_file.write_text(text_file.read_text() + "more")
    assert_error(run("eval", out), "changed since the model was trained")


def test_sample_on_an_ascii_terminal_does_not_crash(tmp_path):
    data = tmp_path / "curly.txt"
    data.write_text(make_text(6000).replace("a", "“"))
    out = tmp_path / "run"
    assert run("train", "--data", data, *TINY, "--max-steps", 2, "--out", out).exit_code == 0
    result = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", str(out), "--prime", "“", "--length", "50", "--seed", "1"],
        capture_output=True,
        env={"PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"?")


def test_fine_tuning_through_the_cli(tiny_run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(make_text(12_000, seed=4) + "€€€")
    start = ["train", "--data", other, "--init-from", tiny_run / "best.pt", "--max-steps", 2, "--seq-len", 16]
    assert_error(run(*start, "--out", tmp_path / "a"), "3 characters the model never saw", "--skip-unknown")
    result = run(*start, "--skip-unknown", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "left out 3 characters the model never saw" in result.stderr
    assert_error(run(*start, *TINY, "--out", tmp_path / "c"), "differs from the model given to --init-from")
