"""A run that diverged stops with advice true for it: which option to lower or clip, and which checkpoint is
still good. Divergence is a value that is not finite, or a finite loss far worse than guessing uniformly
(`evaluation.score.diverged`)."""

from __future__ import annotations

import math

from charrnn.errors import CharRNNError
from charrnn.evaluation.score import DIVERGED_FACTOR, diverged
from charrnn.settings.resolve import Resolved
from charrnn.storage import checkpoint
from charrnn.training.run_dir import RunDir


def check_training_step(resolved: Resolved, run_dir: RunDir, vocab_size: int, step: int, loss, grad_norm, scaled):
    """Raise if step `step` diverged. Under fp16 (`scaled`) an overflowing gradient is expected now and then:
    the scaler skips that step."""
    if not (math.isfinite(loss) and (math.isfinite(grad_norm) or scaled)):
        raise non_finite(resolved, run_dir, vocab_size, step)
    if diverged(loss, vocab_size):
        raise non_finite(resolved, run_dir, vocab_size, step, "the training loss", loss)


def check_validation(resolved: Resolved, run_dir: RunDir, vocab_size: int, step: int, loss, finite_weights: bool):
    if not math.isfinite(loss) or not finite_weights:
        raise non_finite(resolved, run_dir, vocab_size, step, "the validation loss or the weights")
    if diverged(loss, vocab_size):
        raise non_finite(resolved, run_dir, vocab_size, step, "the validation loss", loss)


def non_finite(
    resolved: Resolved,
    run_dir: RunDir,
    vocab_size: int,
    step: int,
    what: str = "the loss or gradient",
    loss: float | None = None,
) -> CharRNNError:
    """The error for a run that diverged at `step`; `loss` is the finite loss it diverged to, if any."""
    config = resolved.train
    advice = [f"lower {resolved.named('lr', f'{config.lr:g}')}"]
    if not config.clip_norm or config.clip_norm > 1:
        advice.append("clip gradients with --clip-norm 1")
    elif config.clip_norm > 0.25:
        advice.append(f"clip harder than {resolved.named('clip_norm', config.clip_norm)}, e.g. 0.25")
    last = run_dir.path / checkpoint.LAST
    if run_dir.replacing:
        saved = f"; the run that was in {run_dir.target} is kept as it was"
    elif last.is_file():
        saved = f"; the last good checkpoint is {last}"
    else:
        saved = "; no checkpoint was written yet"
    happened = f"{what} became non-finite at step {step}"
    if loss is not None:
        happened = (
            f"{what} diverged at step {step}: {loss / math.log(2):.4g} bits per character, over "
            f"{DIVERGED_FACTOR} times the {math.log2(vocab_size):.2f} of guessing uniformly"
        )
    return CharRNNError(f"{happened}. {' or '.join(advice).capitalize()}{saved}")
