import json

import pytest
import torch
from typer.testing import CliRunner

from charrnn.api import load
from charrnn.cli import app
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import evaluate
from charrnn.generation.fill import IGNORE, MaskedWindows, hide_spans, predict, score_left_to_right
from charrnn.model.network import CharRNN
from charrnn.settings.config import ModelConfig, TrainConfig
from tests.conftest import TINY_MODEL, TINY_TRAIN, interrupt_and_resume, make_text, train_run

FILL_MODEL = {**TINY_MODEL, "bidirectional": True}
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def fill_run(out_dir, data, **train):
    return train_run(out_dir, data, model=FILL_MODEL, objective="fill", **train)


@pytest.fixture(scope="module")
def fill_model_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fill")
    data = root / "text.txt"
    data.write_text(make_text(20_000))
    fill_run(root / "run", data)
    return root / "run"


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_only_a_bidirectional_model_sees_the_right_context(cell):
    ids = torch.randint(0, 10, (1, 30))
    changed = ids.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 10
    for bidirectional, depends in ((True, True), (False, False)):
        torch.manual_seed(0)
        config = ModelConfig(vocab_size=10, cell=cell, num_layers=2, hidden_size=8, embed_size=4, dropout=0.0)
        model = CharRNN(ModelConfig(**{**config.__dict__, "bidirectional": bidirectional})).eval()
        before, after = model(ids)[0][0, 10], model(changed)[0][0, 10]
        assert (not torch.allclose(before, after)) is depends


def test_hidden_spans_follow_the_rate_and_span_and_the_seed():
    hidden = hide_spans((64, 256), 0.15, 5, torch.Generator().manual_seed(1))
    assert 0.10 < hidden.float().mean() < 0.17
    assert hidden.any(dim=1).all()
    assert torch.equal(hidden, hide_spans((64, 256), 0.15, 5, torch.Generator().manual_seed(1)))
    runs = torch.cat([torch.zeros(64, 1, dtype=torch.bool), hidden, torch.zeros(64, 1, dtype=torch.bool)], 1)
    edges = torch.diff(runs.int(), dim=1)
    starts, ends = (edges == 1).nonzero()[:, 1], (edges == -1).nonzero()[:, 1]
    assert (ends - starts).min() >= 1
    # Spans that touch merge into longer runs; a single span is at most 5 long.
    assert (ends - starts).float().mean() < 6


def test_masked_windows_hide_inputs_score_only_hidden_targets_and_resume_exactly():
    ids = torch.arange(1000) % 7
    config = TrainConfig(objective="fill", seq_len=16, batch_size=4, max_steps=1, mask_span=3)
    windows = MaskedWindows(ids, config, mask_id=7)
    inputs, targets, fresh = windows.next_batch()
    assert fresh and inputs.shape == targets.shape == (4, 16)
    hidden = inputs == 7
    assert hidden.any() and (targets[~hidden] == IGNORE).all() and (targets[hidden] < 7).all()
    state = windows.state_dict()
    expected = windows.next_batch()
    resumed = MaskedWindows(ids, config, mask_id=7)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(resumed.next_batch()[:2], expected[:2]))
    share = MaskedWindows(ids, config, mask_id=7, first=2, count=2)
    share.load_state_dict(state)
    assert torch.equal(share.next_batch()[0], expected[0][2:])


def test_a_long_text_is_read_in_windows_each_position_from_the_one_it_sits_nearest_the_middle_of():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=10, num_layers=1, hidden_size=8, embed_size=4, bidirectional=True)).eval()
    inputs = torch.randint(0, 11, (40,))
    logits = predict(model, inputs, 8, torch.tensor([1, 13, 38]))
    # Windows start every 4 characters; 13 sits nearest the middle of the window 8..15, 38 in the last one.
    for row, (start, position) in enumerate([(0, 1), (8, 13), (32, 38)]):
        expected = model(inputs[None, start : start + 8])[0][0, position - start]
        assert torch.allclose(logits[row], expected, atol=1e-6)


def test_a_tiny_model_learns_to_fill_a_repeated_text(tmp_path):
    data = tmp_path / "cat.txt"
    data.write_text("the cat sat on the mat. " * 300)
    fill_run(tmp_path / "run", data, max_steps=150, seq_len=24, batch_size=8, lr=1e-2, mask_span=4)
    filled = load(tmp_path / "run").fill("the c_t sat on the m__. the ___ sat")
    assert filled.text == "the cat sat on the mat. the cat sat"
    assert [gap.start for gap in filled.gaps] == [5, 20, 28]


def test_fill_replaces_only_the_mask_and_a_literal_mask_character_stays(fill_model_run):
    loaded = load(fill_model_run)
    text = "The queen ____ a cup of tea, and the ___ grin."
    filled = loaded.fill(text)
    assert len(filled.text) == len(text)
    assert all(a == b for a, b in zip(filled.text, text) if b != "_")
    assert [len(gap.text) for gap in filled.gaps] == [4, 3]
    long_gap = loaded.fill("The queen " + "_" * 40 + " tea.")
    assert len(long_gap.gaps[0].text) == 40 and "_" not in long_gap.text[10:50]
    other = loaded.fill("The queen #### tea.", mask_char="#")
    assert other.text.startswith("The queen ") and other.text.endswith(" tea.") and "#" not in other.text
    sampled = [loaded.fill(text, temperature=1.0, seed=seed).text for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1]


def test_fill_refuses_a_text_without_a_gap_and_unknown_characters(fill_model_run):
    loaded = load(fill_model_run)
    with pytest.raises(CharRNNError, match="no '_' to fill"):
        loaded.fill("no gap here")
    with pytest.raises(CharRNNError, match="never saw"):
        loaded.fill("caf\u00e9 __")


def test_fill_resume_is_exact(tmp_path, text_file):
    fill_run(tmp_path / "whole", text_file)
    options = {"data": str(text_file), **TINY_TRAIN, "objective": "fill"}
    interrupt_and_resume(tmp_path / "split", options, FILL_MODEL, stop_at=13)
    whole, split = load(tmp_path / "whole" / "last.pt"), load(tmp_path / "split" / "last.pt")
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, split.model.state_dict()[name]), name


def test_left_to_right_scoring_of_every_position_is_plain_evaluation(tiny_run):
    loaded = load(tiny_run)
    ids = loaded.vocab.encode(make_text(3000, seed=5))
    every = score_left_to_right(loaded.model, ids, 1000, torch.ones(2000, dtype=torch.bool))
    plain = evaluate(loaded.model, ids, 1000, 3000)
    assert every.chars == plain.chars and abs(every.nats - plain.nats) < 1e-6 * plain.nats
    some = score_left_to_right(loaded.model, ids, 1000, torch.arange(2000) % 3 == 0)
    assert some.chars == 667 and 0 <= some.correct <= some.chars


def test_cli_fill_eval_and_compare(fill_model_run, tiny_run):
    filled = run("fill", fill_model_run, "The queen ____ tea.")
    assert filled.exit_code == 0, filled.output
    assert filled.stdout.startswith("The queen ") and filled.stdout.endswith(" tea.")
    first = run("eval", fill_model_run, "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert set(report) == {"accuracy", "loss", "bpc", "chars"} and report["chars"] > 0
    assert run("eval", fill_model_run, "--json").stdout == first.stdout
    compared = run("eval", fill_model_run, "--compare", tiny_run, "--json")
    assert compared.exit_code == 0, compared.output
    both = json.loads(compared.stdout)
    assert both["bpc"] == report["bpc"] and set(both["compare"]) == {"accuracy", "loss", "bpc"}
    text = run("eval", fill_model_run, "--split", "val", "--compare", tiny_run)
    assert "hidden characters" in text.stdout and "left-to-right language model" in text.stdout


def assert_error(result, *fragments, code=1):
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr.replace("\n", " "), result.stderr


def test_cli_errors(tmp_path, text_file, fill_model_run, tiny_run):
    assert_error(
        run("train", "--data", text_file, "--bidirectional", "--max-steps", 1, "--out", tmp_path / "r"),
        "cannot be a language model",
        "--objective fill",
    )
    assert not (tmp_path / "r" / "last.pt").exists()
    assert_error(run("train", "--data", text_file, "--mask-rate", 0.2, "--out", tmp_path / "r"), "--objective fill")
    assert_error(
        run("train", "--data", text_file, "--objective", "fill", "--tie-embedding", "--max-steps", 1),
        "--tie-embedding is for a one-directional model",
        "Leave out --tie-embedding",
    )
    assert_error(run("sample", fill_model_run, "--seed", 1), "fill model", "charrnn fill")
    assert_error(run("fill", tiny_run, "a __"), "language model", "--objective fill")
    assert_error(run("fill", fill_model_run, "no gap"), "no '_' to fill")
    assert_error(run("fill", fill_model_run), "pass the text", code=2)
    assert_error(run("eval", tiny_run, "--compare", fill_model_run), "Pass the fill model first")
    assert_error(run("eval", fill_model_run, "--compare", fill_model_run), "not a language model")
    assert_error(run("eval", fill_model_run, "--dynamic"), "fill model", "--objective lm")
    assert_error(run("eval", fill_model_run, "--dynamic", "--compare", tiny_run), "--dynamic does not apply", code=2)


def test_val_chars_bounds_the_fill_validation_as_it_bounds_a_language_models(tmp_path):
    """--val-chars means the same for both objectives: at most that many characters of the validation split."""
    data = tmp_path / "text.txt"
    data.write_text(make_text(40_000))  # a validation split of 2,000 characters
    scored = {}
    for val_chars in (None, 256):
        out = tmp_path / f"run-{val_chars}"
        fill_run(out, data, max_steps=2, eval_every=2, val_chars=val_chars)
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        scored[val_chars] = lines[-1]["val_chars"]
    # About 15% of the characters are hidden: of the whole split, and of the 256 characters read.
    assert 150 < scored[None] < 450 and 0 < scored[256] < 100
