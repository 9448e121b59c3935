import math
import threading

import pytest
import torch
import torch.nn.functional as F

from charrnn.evaluation import score as evaluate_module
from charrnn.evaluation.score import evaluate
from charrnn.model.network import CharRNN
from charrnn.settings.config import ModelConfig


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


def _model_that_records_its_threads(cell):
    """A model, and a list that gets, per forward call: its thread, inference mode, CPU autocast and
    PyTorch's thread count in that thread."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=13, cell=cell, hidden_size=32, embed_size=4)).eval()
    calls = []

    def record(module, inputs, output):
        calls.append(
            (
                threading.get_ident(),
                torch.is_inference_mode_enabled(),
                torch.is_autocast_enabled("cpu"),
                torch.get_num_threads(),
            )
        )

    model.register_forward_hook(record)
    return model, calls


def _score_with(threads, model, monkeypatch, autocast=False, length=5000):
    monkeypatch.setattr(evaluate_module, "CHUNK_LEN", 300)
    ids = torch.randint(0, 13, (length,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(threads)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        return evaluate(model, ids, 1, length)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_the_rnn_and_the_gru_score_their_streams_in_threads_to_the_same_result(cell, monkeypatch):
    model, calls = _model_that_records_its_threads(cell)
    one = _score_with(1, model, monkeypatch)
    assert {thread for thread, *_ in calls} == {threading.get_ident()}
    calls.clear()
    two = _score_with(2, model, monkeypatch)
    workers = {thread for thread, *_ in calls}
    assert len(workers) == 2 and threading.get_ident() not in workers
    assert all(inference and threads == 1 for _, inference, _, threads in calls)
    assert (one.chars, one.correct) == (two.chars, two.correct)
    assert math.isclose(one.nats, two.nats, rel_tol=1e-9)


def test_the_lstm_scores_its_streams_in_the_callers_thread(monkeypatch):
    model, calls = _model_that_records_its_threads("lstm")
    # Short: two OpenMP threads on a busy CPU wait on each other at every step.
    _score_with(2, model, monkeypatch, length=700)
    assert {thread for thread, *_ in calls} == {threading.get_ident()}


def test_scoring_threads_keep_the_callers_autocast(monkeypatch):
    model, calls = _model_that_records_its_threads("gru")
    full = _score_with(2, model, monkeypatch)
    one = _score_with(1, model, monkeypatch, autocast=True)
    calls.clear()
    two = _score_with(2, model, monkeypatch, autocast=True)
    assert calls and all(autocast for _, _, autocast, _ in calls)
    assert math.isclose(one.nats, two.nats, rel_tol=1e-9)
    assert not math.isclose(full.nats, two.nats, rel_tol=1e-9)


def test_threads_started_after_scoring_get_the_thread_count_as_before(monkeypatch):
    model, calls = _model_that_records_its_threads("gru")
    _score_with(2, model, monkeypatch)
    assert len({thread for thread, *_ in calls}) == 2
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [2]


@pytest.mark.parametrize("shares", [["fails", "waits"], ["waits", "fails"]])
def test_an_error_in_one_scoring_thread_stops_the_others(shares):
    torch.set_num_threads(2)
    finished = []

    def score(share, stop):
        if share == "fails":
            raise RuntimeError("out of memory")
        finished.append(stop.wait(timeout=10))
        return torch.zeros(2)

    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate_module._side_by_side(score, shares)
    assert finished == [True]


def test_a_large_vocabulary_is_scored_in_shorter_windows_to_the_same_result(monkeypatch):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=13, cell="gru", hidden_size=16, embed_size=4, num_layers=2)).eval()
    ids = torch.randint(0, 13, (2000,), dtype=torch.uint8)
    window_logits = []
    model.register_forward_hook(lambda module, inputs, output: window_logits.append(output[0].numel()))
    monkeypatch.setattr(evaluate_module, "CHUNK_LEN", 300)
    # Five chunks of 13 logits a step: windows of 7 steps.
    monkeypatch.setattr(evaluate_module, "MAX_WINDOW_LOGITS", 5 * 13 * 7)
    result = evaluate(model, ids, 500, 2000, warmup=3000)
    assert max(window_logits) <= 5 * 13 * 7
    assert math.isclose(result.nats, full_context_nats(model, ids, 500, 2000), rel_tol=1e-5)


def test_a_short_span_is_scored_whole_whatever_the_bound():
    assert evaluate_module.spans(100, 9000, max_chars=10_000) == evaluate_module.spans(100, 9000)
    assert sum(e - s for s, e in evaluate_module.spans(100, 9000)) == 8900


@pytest.mark.parametrize("span, bound", [((1000, 200_000), 20_000), ((5, 50_000), 8192), ((0, 1_000_000), 100_000)])
def test_a_long_span_is_scored_in_windows_spread_evenly_over_it(span, bound):
    windows = evaluate_module.spans(*span, max_chars=bound)
    assert windows == evaluate_module.spans(*span, max_chars=bound)  # the same text at every validation
    assert bound - len(windows) < sum(e - s for s, e in windows) <= bound
    part = (span[1] - span[0]) / len(windows)
    assert span[0] <= windows[0][0] < span[0] + part and span[1] - part < windows[-1][1] <= span[1]
    assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:]))
    assert all(e - s <= evaluate_module.BOUNDED_WINDOW for s, e in windows)


def test_a_bounded_score_is_the_score_of_its_windows_each_warmed_on_the_text_before_it():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=11, hidden_size=16, embed_size=4, num_layers=1))
    ids = torch.randint(11, (60_000,))
    bounded = evaluate(model, ids, 5000, 60_000, max_chars=20_000)
    windows = [evaluate(model, ids, s, e) for s, e in evaluate_module.spans(5000, 60_000, max_chars=20_000)]
    assert bounded.chars == sum(w.chars for w in windows)
    assert bounded.nats == pytest.approx(sum(w.nats for w in windows), rel=1e-6)
