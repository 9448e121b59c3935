"""Load a trained model and use it from Python: generate text, score text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charrnn import checkpoint
from charrnn.config import ModelConfig, SampleConfig
from charrnn.data import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.evaluate import EvalResult, evaluate
from charrnn.model import CharRNN
from charrnn.sample import generate


@dataclass
class Loaded:
    model: CharRNN
    vocab: Vocabulary
    content: dict

    def generate(self, prime: str = "", length: int = 200, temperature: float = 0.8, seed: int = 0, **options) -> str:
        config = SampleConfig(length=length, temperature=temperature, seed=seed, **options)
        return prime + "".join(chars[0] for chars in generate(self.model, self.vocab, config, prime, seed))

    def score(self, text: str, skip_unknown: bool = False) -> EvalResult:
        ids = self.vocab.encode(text, skip_unknown=skip_unknown)
        return evaluate(self.model, ids, 1, len(ids))


def load(path: str | Path) -> Loaded:
    """A checkpoint file or run directory (its best.pt), ready on the CPU in eval mode."""
    content = checkpoint.load(Path(path))
    try:
        config = ModelConfig(**content["model_config"])
        model = CharRNN(config)
        model.load_state_dict(content["model"])
        vocab = Vocabulary(content["vocab"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CharRNNError(
            f"{path} does not hold a model this charrnn can build ({type(e).__name__}: {str(e)[:120]}). "
            "Use a checkpoint written by this version of charrnn"
        ) from None
    model.eval()
    return Loaded(model, vocab, content)
