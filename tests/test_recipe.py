"""The recipe: what `charrnn train --data FILE` chooses for a text and a budget, and that given options win."""

import dataclasses
import json
import re
import tomllib

import pytest

from charrnn.errors import CharRNNError
from charrnn.settings.config import ModelConfig, TrainConfig
from charrnn.settings.presets import CELL_LR, DEFAULT_MAX_STEPS
from charrnn.settings.resolve import Sources, resolve
from charrnn.training import recipe, sizing
from charrnn.training.launch import open_training
from charrnn.training.step_timing import Overhead
from tests.conftest import make_text, run

ALICE_TRAIN_CHARS, ALICE_VOCAB = 130_140, 75


def chosen(train_chars: int, vocab: int = 75, step_seconds=None, overhead=None, **given) -> dict:
    """The options a fresh run ends with, recipe applied, for a text of `train_chars` training characters."""
    first = resolve(Sources(given=given))
    picked = recipe.choose(first.train, first.model, first.origin, train_chars, vocab, step_seconds, overhead=overhead)
    final = resolve(Sources(given=given, recipe=picked.values))
    model = dataclasses.asdict(ModelConfig(vocab_size=vocab, **final.model))
    del model["vocab_size"]
    return {**dataclasses.asdict(final.train), **model}


def chosen_reason(train_chars: int, step_seconds, overhead=None, **given) -> str:
    """The line the recipe prints for a fresh run on a text of `train_chars` training characters."""
    first = resolve(Sources(given=given))
    return recipe.choose(
        first.train, first.model, first.origin, train_chars, ALICE_VOCAB, step_seconds, overhead=overhead
    ).reason


def test_alice_without_options_trains_the_model_it_was_tuned_with():
    """`make train` must not change: Alice's recipe is the configuration the published 1.983 bpc came from."""
    tuned = {
        **{f.name: f.default for f in dataclasses.fields(TrainConfig)},
        **{f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size"},
        "max_steps": DEFAULT_MAX_STEPS,
    }
    alice = chosen(ALICE_TRAIN_CHARS)
    assert alice == tuned
    stated = {"cell": "lstm", "num_layers": 2, "hidden_size": 384, "embed_size": 64, "max_steps": 1350}
    assert {k: alice[k] for k in stated} == stated
    assert (alice["dropout"], alice["embed_dropout"], alice["weight_drop"], alice["ema_decay"]) == (
        0.3,
        0.1,
        0.25,
        0.995,
    )


def test_a_larger_text_gets_a_larger_model_and_less_regularisation():
    tiny, large = chosen(18_000), chosen(4_500_000)
    assert tiny["hidden_size"] < large["hidden_size"]
    assert tiny["dropout"] > large["dropout"] and tiny["weight_drop"] >= large["weight_drop"]
    # A large text does not make the default run longer than Alice's.
    assert large["max_steps"] == DEFAULT_MAX_STEPS and tiny["max_steps"] < DEFAULT_MAX_STEPS


def test_every_option_given_wins_over_the_recipe():
    picked = chosen(18_000, hidden_size=200, dropout=0.05, max_steps=40, ema_decay=0.9)
    assert (picked["hidden_size"], picked["dropout"], picked["max_steps"], picked["ema_decay"]) == (200, 0.05, 40, 0.9)


def test_fewer_steps_choose_a_smaller_model():
    assert chosen(ALICE_TRAIN_CHARS, max_steps=200)["hidden_size"] < chosen(ALICE_TRAIN_CHARS)["hidden_size"]


def test_a_longer_time_budget_affords_a_larger_model():
    def seconds(shape, batch_size):  # a device whose step costs grow with the model, as every device's do
        return 0.01 + 1e-7 * sizing.recurrent_parameters(shape, shape.hidden_size)

    short = chosen(ALICE_TRAIN_CHARS, step_seconds=seconds, max_time=60.0)
    long = chosen(ALICE_TRAIN_CHARS, step_seconds=seconds, max_time=3600.0)
    assert short["hidden_size"] < long["hidden_size"]
    assert short["max_steps"] is None and long["max_time"] == 3600.0  # the time, not a step count, ends the run


def test_a_text_the_budget_reads_only_a_few_times_gets_a_smaller_faster_model():
    """In a time budget, a text read many times is sized by what the model sees; one read only a few times is
    short of steps, not of text, and gets a smaller model that takes more of them."""

    def seconds(shape, batch_size):
        return 0.01 + 1e-7 * sizing.recurrent_parameters(shape, shape.hidden_size)

    many_passes = chosen(ALICE_TRAIN_CHARS, step_seconds=seconds, max_time=60.0, cell="gru", batch_size=32)
    few_passes = chosen(4_500_000, step_seconds=seconds, max_time=60.0, cell="gru", batch_size=32)
    assert few_passes["hidden_size"] < many_passes["hidden_size"]
    # A budget long enough to read the large text many times sizes it as the small one again.
    assert (
        chosen(4_500_000, step_seconds=seconds, max_time=36_000.0, cell="gru", batch_size=32)["hidden_size"]
        > (many_passes["hidden_size"])
    )


def test_a_time_budget_too_short_for_many_updates_trains_on_fewer_streams():
    """Where a step's time follows its batch, as on a CPU, halving the streams doubles the updates of the same
    characters: a budget of few updates takes them, down to the smallest batch, and a long one keeps 32."""

    def seconds(shape, batch_size):
        return batch_size * (2e-3 + 1e-9 * sizing.recurrent_parameters(shape, shape.hidden_size))

    reason = chosen_reason(4_500_000, seconds, max_time=30.0)
    short = chosen(4_500_000, step_seconds=seconds, max_time=30.0)
    assert short["batch_size"] < 32 and f"batches of {short['batch_size']}" in reason
    steps = int(re.search(r"about ([\d,]+) steps", reason).group(1).replace(",", ""))
    assert steps >= recipe.MIN_TIMED_UPDATES or short["batch_size"] == recipe.MIN_TIMED_BATCH_SIZE
    assert chosen(4_500_000, step_seconds=seconds, max_time=36_000.0)["batch_size"] == 32
    assert chosen(4_500_000, step_seconds=seconds, max_time=30.0, batch_size=32)["batch_size"] == 32


def test_a_time_budget_that_halved_the_streams_keeps_the_lstm():
    """The batch rule buys the LSTM its updates; a GRU, slower a step on a CPU, would take still fewer. With the
    batch given, the same short budget trains a GRU."""

    def seconds(shape, batch_size):
        return batch_size * (8e-3 if shape.cell == "lstm" else 1.2e-2)

    halved = chosen(4_500_000, step_seconds=seconds, max_time=30.0)
    assert (halved["batch_size"], halved["cell"]) == (recipe.MIN_TIMED_BATCH_SIZE, "lstm")
    reason = chosen_reason(4_500_000, seconds, max_time=30.0)
    assert int(re.search(r"about ([\d,]+) steps", reason).group(1).replace(",", "")) < recipe.MIN_LSTM_STEPS
    assert chosen(4_500_000, step_seconds=seconds, max_time=30.0, batch_size=32)["cell"] == "gru"


def test_a_vocabulary_of_thousands_does_not_count_as_capacity():
    """The embedding and output layer of a Chinese text are large but do not hold what the model learns. (Tied,
    the embedding grows to the hidden state's width, and the first layer's wider input does count.)"""
    own_output_layer = {"tie_embedding": False}
    assert chosen(800_000, vocab=6000, **own_output_layer)["hidden_size"] == chosen(800_000, vocab=75)["hidden_size"]


def test_a_vocabulary_of_thousands_reads_its_output_layer_off_the_embedding():
    """Where the output layer holds most of the weights, rare characters learn from being read as well as
    predicted; a small alphabet keeps its own output layer, and a choice given wins."""
    assert chosen(800_000, vocab=6000)["tie_embedding"] is True
    assert chosen(800_000, vocab=recipe.TIED_VOCABULARY)["tie_embedding"] is False
    assert chosen(800_000, vocab=6000, tie_embedding=False)["tie_embedding"] is False
    reason = recipe.choose(*_first(max_steps=500), 800_000, 6000).reason
    assert "output layer tied to the embedding" in reason


def _first(**given):
    first = resolve(Sources(given=given))
    return first.train, first.model, first.origin


def test_train_prints_its_choice_and_records_it(tmp_path):
    data = tmp_path / "small.txt"
    data.write_text(make_text(20_000))
    result = run("train", "--data", data, "--out", tmp_path / "run", "--max-steps", "3")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stderr.splitlines() if line.startswith("recipe: "))
    written = (tmp_path / "run" / "config.toml").read_text()
    model = tomllib.loads(written)["model"]
    # Three steps are far too few for the LSTM, and 3 x 32 x 128 characters are 0.683 passes over the 18,000
    # training characters: the smallest GRU, with an embedding of 192 and no regularisation.
    assert (model["cell"], model["hidden_size"], model["embed_size"], model["dropout"]) == ("gru", 64, 192, 0.0)
    assert line.startswith("recipe: gru 2 x 64, embedding 192; 0.683 passes over 18,000 training characters; no ")
    assert (
        line.endswith("Options you give win over it")
        and f"# {line.removesuffix('. Options you give win over it')}" in written
    )


@pytest.mark.slow
def test_a_20_kb_and_a_5_mb_text_get_different_models(tmp_path):
    sizes = {}
    for name, chars in (("small", 20_000), ("large", 5_000_000)):
        data = tmp_path / f"{name}.txt"
        data.write_text(make_text(chars))
        with open_training(tmp_path / name, {"data": str(data)}) as trainer:
            trainer.stop.set()  # built and recorded, not trained
            for _ in trainer.run():
                pass
        sizes[name] = tomllib.loads((tmp_path / name / "config.toml").read_text())["model"]["hidden_size"]
    assert sizes["small"] < sizes["large"]


def test_a_time_budget_pays_for_timing_steps(tmp_path):
    data = tmp_path / "small.txt"
    data.write_text(make_text(20_000))
    with open_training(tmp_path / "run", {"data": str(data), "max_time": 30.0}) as trainer:
        assert trainer.recipe is not None and " s a step" in trainer.recipe.reason
        assert 0 < trainer.spent_s < 30 and trainer.elapsed_s == trainer.spent_s


@pytest.mark.parametrize(
    "how", [{"preset": "quick"}, {"options": {"objective": "fill"}}], ids=["preset", "fill objective"]
)
def test_no_recipe_where_something_else_defines_the_run(tmp_path, how):
    data = tmp_path / "small.txt"
    data.write_text(make_text(20_000))
    options = {"data": str(data), "max_steps": 2, **how.get("options", {})}
    with open_training(tmp_path / "run", options, preset=how.get("preset")) as trainer:
        assert trainer.recipe is None


def test_a_budget_too_short_for_the_lstm_trains_a_gru_at_its_own_learning_rate():
    short = chosen(ALICE_TRAIN_CHARS, max_steps=500)
    assert (short["cell"], short["lr"], short["embed_size"]) == ("gru", CELL_LR["gru"], recipe.GRU_EMBED_SIZE)
    assert chosen(ALICE_TRAIN_CHARS, max_steps=500, embed_size=32)["embed_size"] == 32
    assert chosen(ALICE_TRAIN_CHARS, max_steps=500, cell="lstm")["cell"] == "lstm"
    assert chosen(ALICE_TRAIN_CHARS, max_steps=recipe.MIN_LSTM_STEPS)["cell"] == "lstm"


def test_dry_run_prints_each_value_and_its_source_and_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.txt").write_text(make_text(20_000))
    result = run("train", "--data", "small.txt", "--max-steps", "3", "--seq-len", "32", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # A 3-step budget is too short for the LSTM: the recipe picks a GRU, and the directory says so.
    assert lines[0] == "run directory: runs/small-gru"
    assert {"--cell gru  (recipe)", "--max-steps 3  (command line)", "--seq-len 32  (command line)"} <= set(lines)
    assert "--lr 0.005  (gru cell)" in lines and "--clip-norm 1.0  (default)" in lines
    assert not (tmp_path / "runs").exists()


def test_the_default_run_directory_is_named_after_the_model_the_recipe_chose(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.txt").write_text(make_text(20_000))
    result = run("train", "--data", "small.txt", "--max-steps", "2", "--seq-len", "16", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "small-gru" / "last.pt").is_file() and not (tmp_path / "runs" / "small-lstm").exists()


def test_dry_run_names_the_preset_and_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "opts.toml").write_text("[train]\nbatch_size = 4\n")
    result = run("train", "--preset", "tiny", "--config", "opts.toml", "--dry-run", "--data", "x.txt")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "--hidden-size 64  (preset tiny)" in lines and "--batch-size 4  (config file opts.toml)" in lines
    assert lines[0] == "run directory: runs/x-lstm"


def schedule_seconds(steps: int, every: int, step_s: float, overhead: Overhead, averaging: bool) -> float:
    """What a run of `steps` spends: its steps, a validation every `every` steps and one at the end."""
    return steps * (step_s + (overhead.average_s if averaging else 0.0)) + (steps // every + 1) * overhead.validation_s


@pytest.mark.parametrize("budget", [60.0, 600.0], ids=["without averaging", "with averaging"])
def test_the_steps_of_a_time_budget_pay_for_validation_and_averaging(budget):
    overhead = Overhead(validation_s=2.0, average_s=0.05)
    picked = chosen(ALICE_TRAIN_CHARS, step_seconds=lambda shape, batch_size: 0.1, overhead=lambda shape: overhead,
                    max_time=budget)  # fmt: skip
    steps = int(re.search(r"about ([\d,]+) steps", picked_reason(budget, overhead)).group(1).replace(",", ""))
    spent = schedule_seconds(steps, picked["eval_every"], 0.1, overhead, picked["ema_decay"] > 0)
    assert 0.9 * budget <= spent <= budget


def picked_reason(budget: float, overhead: Overhead) -> str:
    return chosen_reason(
        ALICE_TRAIN_CHARS, lambda shape, batch_size: 0.1, overhead=lambda shape: overhead, max_time=budget
    )


def test_a_budget_too_short_for_any_model_names_the_shortest_that_works():
    overhead = Overhead(validation_s=1.0, average_s=0.0)
    with pytest.raises(CharRNNError) as refused:
        chosen(
            ALICE_TRAIN_CHARS, step_seconds=lambda shape, batch_size: 0.5, overhead=lambda shape: overhead, max_time=5.0
        )
    shortest = int(re.search(r"Give --max-time (\d+)s or more", str(refused.value)).group(1))
    assert "trains no model" in str(refused.value)
    picked = chosen(ALICE_TRAIN_CHARS, step_seconds=lambda shape, batch_size: 0.5, overhead=lambda shape: overhead,
                    max_time=float(shortest))  # fmt: skip
    assert picked["max_time"] == shortest


def test_a_budget_too_short_for_32_streams_trains_on_fewer_before_it_is_refused():
    def seconds(shape, batch_size):
        return 0.01 * batch_size

    def overhead(shape):
        return Overhead(validation_s=0.5, average_s=0.0)

    with pytest.raises(CharRNNError, match="trains no model"):
        chosen(ALICE_TRAIN_CHARS, step_seconds=seconds, overhead=overhead, max_time=3.0, batch_size=32)
    assert chosen(ALICE_TRAIN_CHARS, step_seconds=seconds, overhead=overhead, max_time=3.0)["batch_size"] == 4
    with pytest.raises(CharRNNError, match="trains no model"):
        chosen(ALICE_TRAIN_CHARS, step_seconds=seconds, overhead=overhead, max_time=0.5)


def test_a_too_short_budget_is_an_error_on_the_command_line(tmp_path):
    data = tmp_path / "small.txt"
    data.write_text(make_text(20_000))
    result = run("train", "--data", data, "--out", tmp_path / "run", "--max-time", "0.01")
    assert result.exit_code == 1 and re.search(r"error: .*Give --max-time \d+s or more", result.output)


@pytest.mark.slow
def test_a_time_budget_ends_with_its_last_validation_and_save_within_it(tmp_path):
    """The recorded schedule, not a stopwatch: the summary's elapsed time counts timing, steps, validations
    and checkpoints, and the last validation is the last line of metrics.jsonl."""
    data = tmp_path / "small.txt"
    data.write_text(make_text(200_000))
    budget = 40.0
    result = run("train", "--data", data, "--out", tmp_path / "run", "--max-time", f"{budget:g}")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["val_bpc"] is not None and lines[-1]["step"] == summary["step"]
    assert summary["elapsed_s"] <= 1.05 * budget
