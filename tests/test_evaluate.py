import math

import pytest
import torch
import torch.nn.functional as F

from charrnn import evaluate as evaluate_module
from charrnn.config import ModelConfig
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN


def full_context_nats(model, ids, start, end):
    """One forward pass from the first character: every prediction sees all of its left context."""
    with torch.no_grad():
        logits, _ = model(ids[None, : end - 1].long())
    nats = F.cross_entropy(logits[0], ids[1:end].long(), reduction="none")
    return float(nats[start - 1 :].sum())


def test_scores_every_character_with_its_left_context(monkeypatch):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=13, cell="gru", hidden_size=16, embed_size=4, num_layers=2))
    model.eval()
    ids = torch.randint(0, 13, (3000,), dtype=torch.uint8)
    # Chunks far shorter than the warm-up, so every chunk's context reaches back to the start.
    monkeypatch.setattr(evaluate_module, "CHUNK_LEN", 300)
    monkeypatch.setattr(evaluate_module, "TIME_WINDOW", 128)
    result = evaluate(model, ids, 500, 2000, warmup=3000)
    assert result.chars == 1500
    assert math.isclose(result.nats, full_context_nats(model, ids, 500, 2000), rel_tol=1e-5)


def test_the_first_character_has_no_context_and_is_not_scored():
    model = CharRNN(ModelConfig(vocab_size=5, hidden_size=8, embed_size=2, num_layers=1))
    model.eval()
    ids = torch.randint(0, 5, (100,), dtype=torch.uint8)
    result = evaluate(model, ids, 0, 100)
    assert result.chars == 99
    assert math.isclose(result.nats, full_context_nats(model, ids, 1, 100), rel_tol=1e-5)
    assert math.isclose(result.bpc, result.loss / math.log(2))
    assert math.isclose(result.perplexity, math.exp(result.loss))


def test_evaluation_leaves_training_mode_as_it_was():
    model = CharRNN(ModelConfig(vocab_size=5, hidden_size=8, embed_size=2))
    model.train()
    evaluate(model, torch.randint(0, 5, (50,)), 1, 50)
    assert model.training


def _scores_by_thread_count(cell, monkeypatch, autocast=False):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=13, cell=cell, hidden_size=32, embed_size=4)).eval()
    ids = torch.randint(0, 13, (5000,), dtype=torch.uint8)
    monkeypatch.setattr(evaluate_module, "CHUNK_LEN", 300)
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            results[threads] = evaluate(model, ids, 1, 5000)
        assert torch.get_num_threads() == threads
    return results


def test_threads_scoring_streams_side_by_side_give_the_same_score(monkeypatch):
    for cell in ("rnn", "gru", "lstm"):
        one, two = _scores_by_thread_count(cell, monkeypatch).values()
        assert (one.chars, one.correct) == (two.chars, two.correct)
        assert math.isclose(one.nats, two.nats, rel_tol=1e-9)


def test_threads_scoring_side_by_side_keep_the_callers_autocast(monkeypatch):
    full = _scores_by_thread_count("gru", monkeypatch)[2]
    one, two = _scores_by_thread_count("gru", monkeypatch, autocast=True).values()
    assert math.isclose(one.nats, two.nats, rel_tol=1e-9)
    assert not math.isclose(full.nats, two.nats, rel_tol=1e-9)


def test_an_error_in_one_scoring_thread_stops_the_others_and_restores_the_thread_count():
    torch.set_num_threads(2)
    finished = []

    def score(share, stop):
        if share == "fails":
            raise RuntimeError("out of memory")
        stop.wait(timeout=10)
        finished.append(stop.is_set())
        return torch.zeros(2)

    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate_module._side_by_side(score, ["fails", "waits"])
    assert finished == [True]
    assert torch.get_num_threads() == 2
