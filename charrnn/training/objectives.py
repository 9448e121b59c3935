"""What training minimises: the next character (`lm`) or characters hidden behind a mask (`fill`).

An objective supplies the training batches and the validation score; the Trainer keeps the rest
(budget, schedule, clipping, checkpoints, metrics, resume). Every batcher yields (inputs, targets,
fresh) and has `streams`, `state_dict` and `load_state_dict`; `fresh` says that the hidden state
starts over.
"""

from __future__ import annotations

from charrnn.data.splits import Split
from charrnn.data.streams import StreamBatcher
from charrnn.distributed import Group
from charrnn.errors import CharRNNError
from charrnn.evaluation.score import evaluate
from charrnn.generation.fill import Fill
from charrnn.settings.config import ModelConfig, TrainConfig

BIDIRECTIONAL_LM = (
    "a bidirectional model cannot be a language model: its backward direction reads the text from the right, "
    "so it would see each character it is asked to predict, and it cannot generate text left to right"
)


class LanguageModel:
    """Predict each character from the ones before it, over contiguous streams that carry the state."""

    def __init__(self, config: TrainConfig):
        self.config = config

    def batcher(self, ids, first: int = 0, count: int | None = None) -> StreamBatcher:
        c = self.config
        return StreamBatcher(ids, c.batch_size, c.seq_len, c.seed, first, count)

    def validation_score(self, model, ids, split: Split, group: Group):
        """At most --val-chars characters of the split, shared among the processes of `group`."""
        return evaluate(model, ids, split.start, split.end, max_chars=self.config.val_chars, group=group)


def check_splits(splits: dict[str, Split]) -> None:
    """A validation split with nothing to score is found before training, not at the first validation."""
    val = splits["val"]
    if val.end - max(val.start, 1) < 1:
        raise CharRNNError(
            f"the text is too short: its validation split (the 5% after the training split) holds "
            f"{val.end - val.start} characters, nothing to score. Train on a longer text"
        )


def objective_for(config: TrainConfig, model_config: ModelConfig, origin: dict | None = None):
    """The objective of `config`; `origin` (field name -> where its value came from) makes the advice true."""
    if config.objective == "fill":
        if not model_config.bidirectional:
            raise CharRNNError(
                "the fill objective trains a bidirectional model, to use the context on both sides of a gap. "
                "Pass --bidirectional (bidirectional=True)"
            )
        return Fill(config, model_config)
    if model_config.bidirectional:
        source = (origin or {}).get("bidirectional", "command line")
        if source == "command line":
            fix = "Leave out --bidirectional, or pass --objective fill to train a model that fills gaps"
        elif source == "--init-from model":
            fix = "The --init-from model is a fill model: pass --objective fill, or --init-from a language model"
        else:
            fix = f"The {source} makes it bidirectional: pass --no-bidirectional, or --objective fill"
        raise CharRNNError(f"{BIDIRECTIONAL_LM}. {fix}")
    return LanguageModel(config)
