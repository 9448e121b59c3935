import json
import math
import time

import pytest
import torch

from charrnn.api import load
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import EvalResult
from charrnn.storage import checkpoint
from charrnn.training.launch import open_training
from tests.conftest import TINY_MODEL, TINY_TRAIN, interrupt_and_resume, make_text, train_run


def losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines]


def test_a_tiny_model_learns_hello(tmp_path):
    """The RNN notes' example: after 'hell' a trained model says 'o'."""
    data = tmp_path / "hello.txt"
    data.write_text("hello\n" * 400)
    train_run(tmp_path / "run", data, model={"hidden_size": 16, "dropout": 0.0}, max_steps=80, seq_len=12, batch_size=4)
    loaded = load(tmp_path / "run")
    assert loaded.generate(prime="hell", length=8, temperature=0) == "hello\nhello\n"
    assert loaded.score("hello\n" * 20).bpc < 0.2


def test_same_seed_same_losses(tmp_path, text_file):
    train_run(tmp_path / "a", text_file)
    train_run(tmp_path / "b", text_file)
    train_run(tmp_path / "c", text_file, seed=2)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_the_last_progress_ends_the_budget_when_validation_ends_it(tmp_path, text_file, monkeypatch):
    """Validation time counts against --max-time: a validation that runs past it ends the run, and the
    progress it reports says so (a progress bar reaches its end; compare prints its summary line)."""
    trainer = open_training(
        tmp_path / "run",
        {"data": str(text_file), **TINY_TRAIN, "max_steps": None, "max_time": 1.0, "eval_every": 1, **TINY_MODEL},
    )
    monkeypatch.setattr(trainer, "validate", lambda: time.sleep(1.2) or EvalResult(nats=100.0, chars=100, correct=0))
    try:
        reported = list(trainer.run())
    finally:
        trainer.close()
    assert reported[-1].budget_fraction == 1.0
    assert reported[-1].val_bpc is not None
    assert trainer.outcome().finished


def test_a_time_budget_projects_its_steps_at_every_validation(tmp_path, text_file):
    """Under --max-time each validation says where the run's own pace will take it: halfway through, a projection
    near the steps the run then takes (within a factor of two, as a loaded machine's pace may change); the last
    one the step it ended at. A step budget has nothing to project."""
    options = {**TINY_TRAIN, "max_steps": None, "max_time": 2.0, "eval_every": 5}
    train_run(tmp_path / "timed", text_file, **options)
    records = [json.loads(line) for line in (tmp_path / "timed" / "metrics.jsonl").read_text().splitlines()]
    projected = [(r["step"], r["projected_steps"]) for r in records if r["val_bpc"] is not None]
    ran = records[-1]["step"]
    assert len(projected) > 2 and ran / 2 <= projected[len(projected) // 2][1] <= ran * 2
    assert projected[-1] == (ran, ran)
    train_run(tmp_path / "run", text_file)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["projected_steps"] is None for line in lines)


def test_a_step_budget_that_ends_first_is_the_projection(tmp_path, text_file):
    train_run(tmp_path / "run", text_file, max_steps=20, max_time=600.0, eval_every=5)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["projected_steps"] for r in records if r["val_bpc"] is not None] == [20, 20, 20, 20]


def test_metrics_lines_hold_the_documented_keys(tiny_run):
    lines = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 31))
    for key in ("step", "elapsed_s", "lr", "train_loss", "grad_norm", "chars_per_s", "clipped", "projected_steps"):
        assert key in lines[0]
    validations = [line for line in lines if line["val_bpc"] is not None]
    assert validations and all(line["val_chars"] > 0 for line in validations)
    evaluated = [line for line in lines if line["val_bpc"] is not None]
    assert [line["step"] for line in evaluated] == [10, 20, 30]
    assert math.isclose(evaluated[0]["val_bpc"], evaluated[0]["val_loss"] / math.log(2))


def test_loss_goes_down_and_best_is_kept(tiny_run):
    lines = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"] - 0.5
    best = load(tiny_run / "best.pt").content["best_val_loss"]
    assert best == min(line["val_loss"] for line in lines if line["val_loss"] is not None)


@pytest.mark.parametrize("stop_at, weight_drop", [(7, 0.0), (10, 0.0), (7, 0.25)])
def test_resume_is_exact(tmp_path, text_file, stop_at, weight_drop):
    model = {**TINY_MODEL, "weight_drop": weight_drop}
    train_run(tmp_path / "whole", text_file, model)
    interrupt_and_resume(tmp_path / "split", {"data": str(text_file), **TINY_TRAIN}, model, stop_at)
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    whole, split = load(tmp_path / "whole" / "last.pt"), load(tmp_path / "split" / "last.pt")
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, split.model.state_dict()[name]), name


def test_resume_refuses_a_changed_option(tiny_run):
    with pytest.raises(CharRNNError, match=r"--hidden-size 64 differs from the run being resumed \(32\)"):
        open_training(tiny_run, {"hidden_size": 64}, resume=True)


def test_a_run_saved_before_weight_drop_existed_resumes_without_it(tmp_path, text_file):
    train_run(tmp_path / "run", text_file, max_steps=4)
    for name in ("last.pt", "best.pt"):
        content = checkpoint.load(tmp_path / "run" / name)
        del content["model_config"]["weight_drop"]
        checkpoint.save(tmp_path / "run" / name, content)
    trainer = open_training(tmp_path / "run", {"max_steps": 6}, resume=True)
    try:
        assert trainer.model_config.weight_drop == 0.0
        list(trainer.run())
    finally:
        trainer.close()
    assert checkpoint.load(tmp_path / "run" / "last.pt")["model_config"]["weight_drop"] == 0.0


def test_resume_with_a_longer_budget_continues(tmp_path, text_file):
    train_run(tmp_path / "run", text_file, max_steps=10)
    trainer = open_training(tmp_path / "run", {"max_steps": 15}, resume=True)
    try:
        steps = [p.step for p in trainer.run()]
    finally:
        trainer.close()
    assert steps == [11, 12, 13, 14, 15]


def test_an_existing_run_is_not_overwritten(tiny_run):
    with pytest.raises(CharRNNError, match="already holds a run. Pass --resume"):
        open_training(tiny_run, {"data": "x", **TINY_TRAIN, **TINY_MODEL})


def test_force_starts_over(tmp_path, text_file):
    train_run(tmp_path / "run", text_file, max_steps=5)
    train_run(tmp_path / "run", text_file, max_steps=3, force=True)
    assert checkpoint.load(tmp_path / "run" / "last.pt")["step"] == 3


def test_a_second_training_in_the_same_directory_is_locked_out(tmp_path, text_file):
    first = open_training(tmp_path / "run", {"data": str(text_file), **TINY_TRAIN, **TINY_MODEL})
    try:
        with pytest.raises(CharRNNError, match="another training .* is writing into"):
            open_training(tmp_path / "run", {"data": str(text_file), **TINY_TRAIN, **TINY_MODEL}, force=True)
    finally:
        first.close()
    open_training(tmp_path / "run", {"data": str(text_file), **TINY_TRAIN, **TINY_MODEL}, force=True).close()


def test_an_exploding_loss_stops_with_advice_before_it_is_saved(tmp_path, text_file):
    # An unclipped ReLU RNN with identity init: 165 bits per character at step 2, 9e20 at the first save (step 3).
    match = r"training loss diverged at step 2: .* Lower --lr .* --clip-norm 1; no checkpoint was written yet"
    with pytest.raises(CharRNNError, match=match):
        train_run(
            tmp_path / "run",
            text_file,
            model={"cell": "rnn", "nonlinearity": "relu", "init": "identity", "dropout": 0.0},
            lr=0.03,
            clip_norm=0.0,
            warmup_steps=0,
            eval_every=3,
        )
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "best.pt").exists()


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path, text_file):
    with pytest.raises(CharRNNError, match=r"validation loss diverged at step 1: .* no checkpoint was written yet"):
        train_run(tmp_path / "run", text_file, lr=1e30, warmup_steps=0, eval_every=1, clip_norm=0.0)
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "best.pt").exists()


def test_fine_tuning_from_a_checkpoint(tiny_run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(make_text(12_000, seed=9) + "€")
    options = {"data": str(other), **TINY_TRAIN, "init_from": str(tiny_run / "best.pt"), "max_steps": 3}
    with pytest.raises(CharRNNError, match=r"1 characters the model never saw: '€' \(1x\).*--skip-unknown"):
        open_training(tmp_path / "a", options)
    with pytest.raises(CharRNNError, match="--hidden-size 8 differs from the model given to --init-from"):
        open_training(tmp_path / "b", {**options, "skip_unknown": True, "hidden_size": 8})
    regularised = {"dropout": 0.5, "embed_dropout": 0.2, "weight_drop": 0.3}
    retuned = open_training(tmp_path / "d", {**options, "skip_unknown": True, **regularised})
    retuned.close()
    assert {k: getattr(retuned.model_config, k) for k in regularised} == regularised
    trainer = open_training(tmp_path / "c", {**options, "skip_unknown": True})
    try:
        assert trainer.skipped_chars == 1
        assert trainer.vocab.chars == load(tiny_run).vocab.chars
        start = load(tiny_run).model.state_dict()
        assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in start.items())
        list(trainer.run())
    finally:
        trainer.close()


def test_clipping_by_norm_fires_and_is_logged(tmp_path, text_file):
    train_run(tmp_path / "run", text_file, clip_norm=0.01, max_steps=5)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(line["clipped"] and line["grad_norm"] > 0.01 for line in lines)


def test_weights_that_go_non_finite_after_a_save_leave_the_last_good_checkpoints(tmp_path, text_file):
    trainer = open_training(
        tmp_path / "run", {"data": str(text_file), **TINY_TRAIN, "max_steps": 6, "eval_every": 2, **TINY_MODEL}
    )
    with trainer, pytest.raises(CharRNNError, match="non-finite at step 3. .* the last good checkpoint is"):
        for progress in trainer.run():
            if progress.step == 2:
                with torch.no_grad():
                    next(trainer.model.parameters()).fill_(float("inf"))
    for name in ("last.pt", "best.pt"):
        saved = load(tmp_path / "run" / name)
        assert saved.content["step"] == 2
        assert all(torch.isfinite(p).all() for p in saved.model.parameters())
