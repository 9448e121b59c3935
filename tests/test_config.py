import pytest

from charrnn.config import ModelConfig, SampleConfig, TrainConfig, parse_duration
from charrnn.errors import CharRNNError


@pytest.mark.parametrize(
    "text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5m", 90)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "m10", "1h 30m"])
def test_parse_duration_rejects(text):
    with pytest.raises(CharRNNError, match="90s, 10m"):
        parse_duration(text)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"hidden_size": 0}, "--hidden-size must be at least 1"),
        ({"num_layers": 0}, "--num-layers must be at least 1"),
        ({"dropout": 1.0}, "--dropout must be in"),
        ({"dropout": -0.1}, "--dropout must be in"),
        ({"cell": "transformer"}, "unknown cell"),
        ({"cell": "lstm", "init": "identity"}, "vanilla rnn cell only"),
    ],
)
def test_model_config_rejects(options, message):
    with pytest.raises(CharRNNError, match=message):
        ModelConfig(vocab_size=10, **options)


def test_train_config_needs_a_budget():
    with pytest.raises(CharRNNError, match="--max-steps N or --max-time"):
        TrainConfig()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": -1}, "--temperature must be 0 or more"),
        ({"top_p": 0}, r"--top-p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"--top-p must be in \(0, 1\]"),
        ({"top_k": 0}, "--top-k must be at least 1"),
        ({"num_samples": 0}, "--num-samples must be at least 1"),
    ],
)
def test_sample_config_rejects(options, message):
    with pytest.raises(CharRNNError, match=message):
        SampleConfig(**options)
