"""charrnn from Python: train a model as `charrnn train` does, then load it to generate text, score text, fill gaps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError
from charrnn.evaluation.dynamic import dynamic_evaluate
from charrnn.evaluation.score import EvalResult, evaluate
from charrnn.generation.fill import Filled, fill
from charrnn.generation.sampling import generate, seeded
from charrnn.model.network import CharRNN
from charrnn.settings.config import DynamicEvalConfig, ModelConfig, SampleConfig
from charrnn.storage import checkpoint


@dataclass
class Loaded:
    model: CharRNN
    vocab: Vocabulary
    content: dict

    @property
    def objective(self) -> str:
        """lm for a language model, fill for a model that fills gaps (`charrnn train --objective fill`)."""
        return self.content["train_config"].get("objective", "lm")

    def require(self, objective: str) -> None:
        if objective == "lm" and self.objective == "fill":
            raise CharRNNError(
                "this checkpoint holds a fill model, which reads text in both directions and so cannot generate "
                "or score it left to right. Fill gaps with `charrnn fill CHECKPOINT TEXT`, or use a model "
                "trained with --objective lm"
            )
        if objective == "fill" and self.objective != "fill":
            raise CharRNNError(
                "this checkpoint holds a language model, which sees only the text before a gap. "
                "Train a fill model with `charrnn train --objective fill` and pass that"
            )

    def require_carried_state(self, what: str) -> None:
        """Refuse `what`, which carries each state on for ever, for a model whose state restarts (context.py)."""
        bound = self.model.config.context
        if bound is not None:
            raise CharRNNError(
                f"{what} carries each state on for ever, and this model (a ReLU rnn) restarts its state every "
                f"{bound} characters, as it was trained. Use `charrnn sample` and `charrnn eval`, which read it so"
            )

    def generate(
        self,
        prime: str = "",
        length: int = SampleConfig.length,
        temperature: float = SampleConfig.temperature,
        seed: int | None = SampleConfig.seed,
        **options,
    ) -> str:
        """The prime and `length` new characters, sampled as `charrnn sample` samples, with its defaults;
        `options` are SampleConfig's others (top_k, top_p). Without a seed the text is random; the same seed
        gives the same text."""
        self.require("lm")
        config = seeded(SampleConfig(length=length, temperature=temperature, seed=seed, **options))
        return prime + "".join(chars[0] for chars in generate(self.model, self.vocab, config, prime, config.seed))

    def score(self, text: str, skip_unknown: bool = False, dynamic: bool | DynamicEvalConfig = False) -> EvalResult:
        """Loss, bits per character and perplexity of `text`, each character predicted from those before it.

        `dynamic`: a copy of the model learns from the text as it reads it (`charrnn eval --dynamic`), with
        the default settings when True, or with those of a `DynamicEvalConfig`."""
        self.require("lm")
        ids = self.vocab.encode(text, skip_unknown=skip_unknown)
        if not dynamic:
            return evaluate(self.model, ids, 1, len(ids))
        settings = dynamic if isinstance(dynamic, DynamicEvalConfig) else DynamicEvalConfig()
        return dynamic_evaluate(self.model, ids, 1, len(ids), settings)

    def fill(self, text: str, mask_char: str = "_", temperature: float = 0.0, seed: int = 0) -> Filled:
        """`text` with each run of `mask_char` replaced by the fill model's characters, and a report per gap."""
        self.require("fill")
        window = self.content["train_config"]["seq_len"]
        return fill(self.model, self.vocab, text, window, mask_char, temperature, seed)


def train(out_dir: str | Path, *, config_file=None, preset=None, resume=False, force=False, **options):
    """Train into `out_dir` as `charrnn train` does, with its options by field name (`num_layers=1`,
    `max_steps=100`); the same rules decide what is left out. Returns the run's `Outcome`."""
    from charrnn.training.launch import open_training

    with open_training(out_dir, options, config_file=config_file, preset=preset, resume=resume, force=force) as trainer:
        for _ in trainer.run():
            pass
        return trainer.outcome()


def load(path: str | Path, device: str = "cpu") -> Loaded:
    """A checkpoint file or run directory (its best.pt), in eval mode on `device` (cpu, cuda, mps or auto).

    A checkpoint written on a GPU loads on any device.
    """
    from charrnn.model.device import resolve

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
    model.to(resolve(device)).eval()
    return Loaded(model, vocab, content)
