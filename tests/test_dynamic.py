import math

import pytest
import torch

from charrnn.errors import CharRNNError
from charrnn.evaluation import dynamic
from charrnn.evaluation.dynamic import dynamic_evaluate
from charrnn.evaluation.score import evaluate
from charrnn.model.network import CharRNN
from charrnn.settings.config import DynamicEvalConfig, ModelConfig


def untrained(cell="lstm", vocab_size=6):
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=vocab_size, cell=cell, hidden_size=32, embed_size=8, num_layers=2)).eval()


def repeated_pattern(n):
    return torch.tensor([0, 1, 2, 3, 4, 5, 1, 3] * (n // 8), dtype=torch.uint8)


@pytest.mark.parametrize(("cell", "start", "warmup"), [("rnn", 200, 1000), ("lstm", 200, 1000), ("gru", 300, 50)])
def test_the_first_segment_is_scored_before_anything_is_learned_from_it(cell, start, warmup):
    model, ids = untrained(cell), repeated_pattern(400)
    end = start + dynamic.SEGMENT_LEN
    dynamic_score = dynamic_evaluate(model, ids, start, end, warmup=warmup).nats
    assert math.isclose(dynamic_score, evaluate(model, ids, start, end, warmup=warmup).nats, rel_tol=1e-5)


def test_no_segment_is_scored_with_weights_that_read_a_later_one(monkeypatch):
    scored = []
    cross_entropy = dynamic.F.cross_entropy

    def recording(*args, **kwargs):
        loss = cross_entropy(*args, **kwargs)
        scored.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(dynamic.F, "cross_entropy", recording)
    model, text = untrained(), repeated_pattern(2000)
    length, start = dynamic.SEGMENT_LEN, 1200
    changed = text.clone()
    changed[start + 2 * length : start + 3 * length] = (text[start + 2 * length : start + 3 * length] + 1) % 6
    dynamic_evaluate(model, text, start, start + 3 * length, DynamicEvalConfig(lr=1e-2), warmup=50)
    as_read, scored[:] = scored[:], []
    dynamic_evaluate(model, changed, start, start + 3 * length, DynamicEvalConfig(lr=1e-2), warmup=50)
    assert len(as_read) == len(scored) == 3
    assert as_read[:2] == scored[:2] and as_read[2] != scored[2]


def test_it_learns_a_pattern_the_model_never_saw_while_reading_it():
    model, ids = untrained(), repeated_pattern(3000)
    static = evaluate(model, ids, 1, len(ids))
    adapted = dynamic_evaluate(model, ids, 1, len(ids), DynamicEvalConfig(lr=1e-2))
    assert adapted.chars == static.chars == len(ids) - 1
    assert static.bpc > 2.0
    assert adapted.bpc < 0.5 * static.bpc
    assert adapted.accuracy > static.accuracy


def test_decay_pulls_the_weights_back_to_the_trained_ones():
    model, ids = untrained(), repeated_pattern(1000)
    static = evaluate(model, ids, 1, len(ids)).bpc
    free = dynamic_evaluate(model, ids, 1, len(ids), DynamicEvalConfig(lr=1e-2, decay=0.0)).bpc
    held = dynamic_evaluate(model, ids, 1, len(ids), DynamicEvalConfig(lr=1e-2, decay=0.999)).bpc
    assert abs(held - static) < 0.01 * static
    assert free < 0.8 * static


def test_the_callers_model_is_untouched_and_a_second_run_gives_the_same_score():
    model, ids = untrained(), repeated_pattern(504)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    scored = []
    first = dynamic_evaluate(model, ids, 100, 504, on_progress=scored.append)
    assert sum(scored) == 404 and max(scored) == dynamic.SEGMENT_LEN
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not model.training
    assert dynamic_evaluate(model, ids, 100, 504).nats == first.nats


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": 0.0}, "lr must be above 0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"decay": 1.0}, "decay must be at least 0 and below 1"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(CharRNNError, match=message.replace("[", r"\[").replace(")", r"\)")):
        DynamicEvalConfig(**options)


def test_an_empty_span_is_refused():
    with pytest.raises(CharRNNError, match="nothing to score"):
        dynamic_evaluate(untrained(), repeated_pattern(100), 50, 50)
