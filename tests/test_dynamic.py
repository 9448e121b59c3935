import math

import pytest
import torch

from charrnn import dynamic
from charrnn.config import ModelConfig
from charrnn.dynamic import dynamic_evaluate
from charrnn.errors import CharRNNError
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN


def untrained(cell="lstm", vocab_size=6):
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=vocab_size, cell=cell, hidden_size=32, embed_size=8, num_layers=2)).eval()


def repeated_pattern(n):
    return torch.tensor([0, 1, 2, 3, 4, 5, 1, 3] * (n // 8), dtype=torch.uint8)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_first_segment_is_scored_before_anything_is_learned_from_it(cell):
    model, ids = untrained(cell), repeated_pattern(400)
    start = 200
    end = start + dynamic.SEGMENT_LEN
    assert math.isclose(
        dynamic_evaluate(model, ids, start, end).nats, evaluate(model, ids, start, end).nats, rel_tol=1e-5
    )


def test_it_learns_a_pattern_the_model_never_saw_while_reading_it():
    model, ids = untrained(), repeated_pattern(3000)
    static = evaluate(model, ids, 1, len(ids))
    adapted = dynamic_evaluate(model, ids, 1, len(ids), lr=1e-2)
    assert adapted.chars == static.chars == len(ids) - 1
    assert static.bpc > 2.0
    assert adapted.bpc < 0.5 * static.bpc
    assert adapted.accuracy > static.accuracy


def test_decay_pulls_the_weights_back_to_the_trained_ones():
    model, ids = untrained(), repeated_pattern(1000)
    static = evaluate(model, ids, 1, len(ids)).bpc
    free = dynamic_evaluate(model, ids, 1, len(ids), lr=1e-2, decay=0.0).bpc
    held = dynamic_evaluate(model, ids, 1, len(ids), lr=1e-2, decay=0.999).bpc
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
    [({"lr": 0.0}, "--dynamic-lr must be positive"), ({"decay": 1.0}, "--dynamic-decay must be in [0, 1)")],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(CharRNNError, match=message.replace("[", r"\[").replace(")", r"\)")):
        dynamic_evaluate(untrained(), repeated_pattern(100), 1, 100, **options)


def test_an_empty_span_is_refused():
    with pytest.raises(CharRNNError, match="nothing to score"):
        dynamic_evaluate(untrained(), repeated_pattern(100), 50, 50)
