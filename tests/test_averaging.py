import json
import math

import pytest
import torch
from torch import nn

from charrnn.api import load
from charrnn.data.splits import splits
from charrnn.evaluation.score import evaluate
from charrnn.training.averaging import WeightAverage
from tests.conftest import TINY_MODEL, TINY_TRAIN, interrupt_and_resume, train_run


def losses(run_dir):
    return [json.loads(line)["train_loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def val_bpcs(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["val_bpc"] for line in lines if line["val_bpc"] is not None]


def test_average_follows_the_exponential_moving_average_formula():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.9)
    expected = 0.0
    for step, value in enumerate([4.0, -2.0, 7.0, 1.0, 3.0] * 20, start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update()
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * value
        assert torch.allclose(average.averaged[0], torch.tensor([[expected]]))
    assert average.current_decay() == 0.9


def test_applied_swaps_the_average_in_and_the_own_weights_back():
    model = nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.99)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    own = [p.detach().clone() for p in model.parameters()]
    average.update()
    with average.applied():
        for p, a in zip(model.parameters(), average.averaged):
            assert torch.equal(p, a)
    for p, o in zip(model.parameters(), own):
        assert torch.equal(p, o)
    state = average.model_state()
    assert set(state) == set(model.state_dict()) and torch.equal(state["weight"], average.averaged[0])


def test_state_dict_round_trip():
    model = nn.Linear(2, 2)
    average = WeightAverage(model, decay=0.5)
    average.update()
    copy = WeightAverage(model, decay=0.5)
    copy.load_state_dict(average.state_dict())
    assert copy.updates == 1 and all(torch.equal(a, b) for a, b in zip(copy.averaged, average.averaged))


@pytest.mark.parametrize("tied", [False, True], ids=["own-output-layer", "tied-embedding"])
def test_best_checkpoint_holds_the_average_that_validation_scored(tmp_path, text_file, tied):
    tie = {"tie_embedding": True, "embed_size": TINY_MODEL["hidden_size"]} if tied else {}
    outcome = train_run(tmp_path / "run", text_file, model=tie, ema_decay=0.9)
    best, last = load(tmp_path / "run" / "best.pt"), load(tmp_path / "run" / "last.pt")
    ids = best.vocab.encode(text_file.read_text())
    val = splits(len(ids))["val"]
    scored = evaluate(best.model, ids, val.start, val.end)
    assert math.isclose(scored.bpc, outcome.best_val_bpc, rel_tol=1e-6)
    # last.pt keeps the weights training goes on from, which differ from their average
    assert not torch.equal(best.model.head.weight, last.model.head.weight)
    assert last.content["average"]["updates"] == TINY_TRAIN["max_steps"]


def test_averaging_changes_what_is_validated_not_how_it_trains(tmp_path, text_file):
    train_run(tmp_path / "plain", text_file, ema_decay=0.0)
    train_run(tmp_path / "averaged", text_file, ema_decay=0.9)
    assert losses(tmp_path / "plain") == losses(tmp_path / "averaged")
    assert val_bpcs(tmp_path / "plain") != val_bpcs(tmp_path / "averaged")


def test_resume_with_averaging_is_exact(tmp_path, text_file):
    train_run(tmp_path / "whole", text_file, ema_decay=0.9)
    options = {"data": str(text_file), **TINY_TRAIN, "ema_decay": 0.9}
    interrupt_and_resume(tmp_path / "split", options, dict(TINY_MODEL), stop_at=15)
    assert val_bpcs(tmp_path / "split") == val_bpcs(tmp_path / "whole")
    whole, split = load(tmp_path / "whole" / "best.pt"), load(tmp_path / "split" / "best.pt")
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, split.model.state_dict()[name]), name
