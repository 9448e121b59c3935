import pytest

from charrnn.errors import CharRNNError
from charrnn.settings.config import DynamicEvalConfig, ModelConfig, SampleConfig, TrainConfig, parse_duration
from charrnn.settings.options import OptionError


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
    "options, field, flag, problem",
    [
        ({"hidden_size": 0}, "hidden_size", "--hidden-size", "must be at least 1, got 0"),
        ({"num_layers": 0}, "num_layers", "--layers", "must be at least 1, got 0"),
        ({"dropout": 1.0}, "dropout", "--dropout", "must be at least 0 and below 1, got 1.0"),
        ({"dropout": -0.1}, "dropout", "--dropout", "must be at least 0 and below 1, got -0.1"),
        ({"dropout": float("nan")}, "dropout", "--dropout", "must be a finite number, got nan"),
        ({"cell": "transformer"}, "cell", "--cell", "must be one of rnn, lstm, gru, got 'transformer'"),
        ({"cell": "lstm", "init": "identity"}, "init", "--init", "applies to the vanilla rnn cell only"),
    ],
)
def test_model_config_errors_name_the_field_and_the_cli_names_the_flag(options, field, flag, problem):
    with pytest.raises(OptionError) as caught:
        ModelConfig(vocab_size=10, **options)
    assert str(caught.value).startswith(f"{field} {problem}")
    assert caught.value.for_flags().startswith(f"{flag} {problem}")


def test_train_config_needs_a_budget():
    with pytest.raises(CharRNNError, match="--max-steps N or --max-time"):
        TrainConfig()


@pytest.mark.parametrize(
    "options, flag, problem",
    [
        ({"temperature": -1}, "--temperature", "must be at least 0, got -1"),
        ({"temperature": float("inf")}, "--temperature", "must be a finite number"),
        ({"top_p": 0}, "--top-p", "must be above 0 and at most 1, got 0"),
        ({"top_p": 1.5}, "--top-p", "must be above 0 and at most 1, got 1.5"),
        ({"top_k": 0}, "--top-k", "must be at least 1, got 0"),
        ({"num_samples": 0}, "--num-samples", "must be at least 1, got 0"),
        ({"seed": 2**64}, "--seed", "must be at least 0 and at most 18446744073709551615"),
    ],
)
def test_sample_config_rejects(options, flag, problem):
    with pytest.raises(OptionError) as caught:
        SampleConfig(**options)
    assert caught.value.for_flags().startswith(f"{flag} {problem}")


def test_dynamic_settings_name_their_own_flags():
    with pytest.raises(OptionError) as caught:
        DynamicEvalConfig(lr=0)
    assert caught.value.for_flags().startswith("--dynamic-lr must be above 0")
