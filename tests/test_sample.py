import pytest
import torch

from charrnn.api import load
from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.generation.drawing import UNIFORM_CHUNK, RowOptions, Uniforms, pick
from charrnn.generation.sampling import Stepper, choose, column_major, draw, generate
from charrnn.model.network import CharRNN
from charrnn.settings.config import ModelConfig, SampleConfig


def text_of(loaded, prime="", **options):
    config = SampleConfig(**{"length": 80, **options})
    samples = ["" for _ in range(config.num_samples)]
    for chars in generate(loaded.model, loaded.vocab, config, prime, config.seed or 0):
        samples = [s + c for s, c in zip(samples, chars)]
    return samples


def test_same_seed_same_text(tiny_run):
    loaded = load(tiny_run)
    assert text_of(loaded, seed=7) == text_of(loaded, seed=7)
    assert text_of(loaded, seed=7) != text_of(loaded, seed=8)


def test_length_counts_new_characters_only(tiny_run):
    loaded = load(tiny_run)
    assert [len(s) for s in text_of(loaded, prime="The ", length=33, num_samples=3, seed=1)] == [33, 33, 33]


def test_greedy_ignores_the_seed_and_equals_top_k_1(tiny_run):
    loaded = load(tiny_run)
    greedy = text_of(loaded, temperature=0, seed=1)
    assert greedy == text_of(loaded, temperature=0, seed=2)
    assert greedy == text_of(loaded, top_k=1, seed=3)
    assert greedy == text_of(loaded, top_p=1e-6, seed=4)


def test_samples_in_a_batch_differ(tiny_run):
    loaded = load(tiny_run)
    samples = text_of(loaded, num_samples=4, seed=1, temperature=1.0)
    assert len(set(samples)) == 4


def test_unknown_prime_characters_are_named(tiny_run):
    loaded = load(tiny_run)
    with pytest.raises(CharRNNError, match=r"'€' \(1x\).*--prime"):
        text_of(loaded, prime="tea €")


def test_no_newline_in_vocabulary_starts_from_a_random_character():
    model = CharRNN(ModelConfig(vocab_size=3, hidden_size=4, embed_size=2))
    vocab = Vocabulary(["a", "b", "c"])
    out = list(generate(model, vocab, SampleConfig(length=5, seed=0), "", 0))
    assert len(out) == 6 and out[0][0] in "abc"


def test_top_k_and_top_p_keep_only_likely_characters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    draws = lambda config: {  # noqa: E731
        int(choose(logits, config, torch.Generator().manual_seed(s))) for s in range(300)
    }
    assert draws(SampleConfig(temperature=1, top_k=2)) == {0, 1}
    assert draws(SampleConfig(temperature=1, top_p=0.75)) == {0, 1}
    assert draws(SampleConfig(temperature=1, top_p=0.85)) == {0, 1, 2}
    assert draws(SampleConfig(temperature=1)) == {0, 1, 2, 3}


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draws_follow_the_softmax_at_the_temperature(temperature):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = torch.log(probs).repeat(20_000, 1)
    picks = choose(logits, SampleConfig(temperature=temperature), torch.Generator().manual_seed(0))
    expected = probs ** (1 / temperature) / (probs ** (1 / temperature)).sum()
    counts = torch.bincount(picks, minlength=5).double()
    # Within 4 standard deviations of a binomial count; a character of probability 0 never comes.
    assert torch.all((counts - 20_000 * expected).abs() <= 4 * (20_000 * expected * (1 - expected)).sqrt())
    assert counts[4] == 0


def test_a_zero_from_the_exponential_draw_does_not_pick_an_impossible_character(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "exponential_", lambda self, generator=None: self.zero_())
    assert int(draw(torch.tensor([[0.0, 1.0, 0.0]]), torch.Generator())[0]) == 1


def test_a_seed_draws_what_torch_multinomial_draws():
    probs = torch.softmax(torch.randn(32, 75, generator=torch.Generator().manual_seed(0)), -1)
    for seed in range(5):
        expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed)).squeeze(1)
        assert torch.equal(draw(probs, torch.Generator().manual_seed(seed)), expected)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("prime", ["T", "The q"])
@pytest.mark.parametrize("num_samples", [1, 3])
def test_greedy_text_is_what_the_fused_model_ranks_first_at_every_step(cell, prime, num_samples):
    vocab = Vocabulary(list("Tabcdehiklnoqrstu .\n"))
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, num_layers=2, hidden_size=24, embed_size=6))
    config = SampleConfig(length=30, temperature=0, num_samples=num_samples)
    samples = ["".join(chars) for chars in zip(*generate(model, vocab, config, prime, 0))]
    assert len(set(samples)) == 1
    ids = vocab.encode(prime + samples[0]).long().unsqueeze(0)
    with torch.inference_mode():
        logits, _ = model(ids)
    assert torch.equal(logits[0, len(prime) - 1 : -1].argmax(-1), ids[0, len(prime) :])


def test_column_major_holds_the_same_matrix_with_a_contiguous_transpose():
    matrix = torch.randn(300, 7)
    stored = column_major(matrix)
    assert torch.equal(stored, matrix) and stored.t().is_contiguous()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_step_from_the_zero_state_is_the_fused_models_first_step(cell, batch_size):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=7, cell=cell, num_layers=2, hidden_size=12, embed_size=5)).eval()
    ids = torch.randint(7, (batch_size, 1))
    stepper = Stepper(model, batch_size)
    with torch.inference_mode():
        fused_logits, fused_state = model(ids)
        logits, layers = stepper.step(ids[:, 0], stepper.zero_state())
    torch.testing.assert_close(logits, fused_logits[:, 0])
    torch.testing.assert_close(stepper.join_state(layers), fused_state)


def test_a_row_draws_the_same_character_in_a_batch_as_alone():
    torch.manual_seed(0)
    logits = torch.randn(6, 75) * 3
    configs = [
        SampleConfig(temperature=1.0),
        SampleConfig(temperature=0),
        SampleConfig(temperature=0.5, top_k=4),
        SampleConfig(temperature=1.5, top_p=0.7),
        SampleConfig(temperature=0.8, top_k=10, top_p=0.9),
        SampleConfig(temperature=1e-300),
    ]
    uniforms = torch.rand(6)
    options = RowOptions.cat([RowOptions.of(c, 1, 75, torch.device("cpu")) for c in configs])
    together = pick(logits, options, uniforms)
    for row, config in enumerate(configs):
        one = RowOptions.of(config, 1, 75, torch.device("cpu"))
        assert int(pick(logits[row : row + 1], one, uniforms[row : row + 1])) == int(together[row])


@pytest.mark.parametrize("uniform", [0.0, 1 - 2**-24])
def test_the_ends_of_the_uniform_range_pick_only_allowed_characters(uniform):
    logits = torch.tensor([[float("-inf"), 2.0, float("-inf"), 1.0, -200.0, 0.5]])
    for config, allowed in [
        (SampleConfig(temperature=1), {1, 3, 4, 5}),
        (SampleConfig(temperature=1, top_k=2), {1, 3}),
        (SampleConfig(temperature=1, top_p=0.5), {1}),
    ]:
        options = RowOptions.of(config, 1, 6, torch.device("cpu"))
        assert int(pick(logits, options, torch.tensor([uniform]))) in allowed


def test_uniforms_come_from_the_generator_a_chunk_at_a_time():
    uniforms = Uniforms(torch.Generator().manual_seed(3), 2)
    steps = torch.stack([uniforms.next() for _ in range(UNIFORM_CHUNK + 5)])
    expected = torch.Generator().manual_seed(3)
    first, second = (torch.rand((UNIFORM_CHUNK, 2), generator=expected) for _ in range(2))
    assert torch.equal(steps, torch.cat([first, second[:5]]))
