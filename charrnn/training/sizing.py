"""How large a model a run affords and how many steps it gets: for a step budget, the steps given; for a time
budget, as many as timed steps (`step_timing.py`) say fit in what is left of it once validations, weight
averaging and the timing itself are paid for. The recipe (`recipe.py`) asks; this answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from charrnn.errors import CharRNNError
from charrnn.model.device import parameter_count, recurrent_parameter_count
from charrnn.settings.config import ModelConfig, TrainConfig, format_duration
from charrnn.training.step_timing import Overhead

CHARS_PER_PARAMETER = 3.0
# A ceiling for a text the run reads many times. 17 admits a 2 x 128 LSTM (16.1) on a 16 kB text, which in 60 s
# validated 0.10 to 0.17 bpc better than the 2 x 64 that 15 left it (two seeds, 8 and 32 streams), and keeps 2 x 384
# (14.4 on Alice) the largest Alice gets at any budget: 2 x 448 (19.4) is unmeasured there.
PARAMETERS_PER_CHAR = 17.0
# Under a time budget, a text seen fewer than FEW_PASSES times at CHARS_PER_PARAMETER is sized at
# TIMED_CHARS_PER_PARAMETER: there steps, not the text, are short. In 60 s, 2 x 128 GRUs (about 12 characters a
# parameter) validated better than the 2 x 192 the denser rule chose on C (by 0.19), prose (0.08, 0.09), logs
# (0.06) and verse (0.05), and worse on Russian (0.05), Chinese (0.06, where 2 x 64 replaced 2 x 128) and Python
# (0.02); on Alice, seen 15 times, 2 x 192 stays (docs/results.md).
FEW_PASSES = 10.0
TIMED_CHARS_PER_PARAMETER = 12.0
HIDDEN_SIZES = tuple(range(64, 1025, 64))
# For a time budget the smallest size and this one are timed, and a larger choice is timed before it stands.
PROBE_HIDDEN = 256
# A time budget that trains fewer steps than this, a first validation's worth, trains no model worth keeping.
MIN_TIMED_STEPS = 10
MIN_EVAL_EVERY = 10
MIN_STEPS_TO_AVERAGE = 1000

StepSeconds = Callable[[ModelConfig, int], float]  # shape, batch size -> seconds a training step takes here
OverheadSeconds = Callable[[ModelConfig], Overhead]  # a model's shape -> its validation's and averaging's seconds


@dataclass
class Sizing:
    """Hidden sizes and the steps they get: a step budget is a number of steps; a time budget is as many as
    timed steps say fit (`step_seconds` times a shape once; it is cached)."""

    train: TrainConfig
    train_chars: int
    step_seconds: StepSeconds | None
    overhead: OverheadSeconds | None = None
    spent_s: Callable[[], float] = lambda: 0.0
    averages: bool | None = None  # whether the run averages weights: None for the recipe to choose by its steps

    def fit(self, shape: ModelConfig, choose_size: bool, steps: int | None) -> tuple[int, int, float | None]:
        """The hidden size (shape's own unless `choose_size`), the steps it trains for, and the seconds a step
        takes (None for a step budget)."""
        chars_per_step = self.train.batch_size * self.train.seq_len
        if not choose_size:
            if steps is not None:
                return shape.hidden_size, steps, None
            seconds = self._seconds(shape, shape.hidden_size, shape.hidden_size)
            return self._paid_for(shape, [shape.hidden_size], shape.hidden_size, seconds)
        cap = PARAMETERS_PER_CHAR * self.train_chars
        allowed = [h for h in HIDDEN_SIZES if recurrent_parameters(shape, h) <= cap] or [HIDDEN_SIZES[0]]
        if steps is not None:
            return _closest(shape, allowed, lambda h: steps * chars_per_step), steps, None
        seconds = self._seconds(shape, allowed[0], min(allowed[-1], PROBE_HIDDEN))
        hidden = self._timed_size(shape, allowed, seconds)
        if hidden > PROBE_HIDDEN:
            # Beyond the sizes timed: time this one too, and choose again from the fit through both.
            seconds = self._seconds(shape, PROBE_HIDDEN, hidden)
            hidden = self._timed_size(shape, allowed, seconds)
        return self._paid_for(shape, allowed, hidden, seconds)

    def _timed_size(self, shape: ModelConfig, allowed: list[int], seconds: Callable[[int], float]) -> int:
        """The size for a time budget: CHARS_PER_PARAMETER, or TIMED_CHARS_PER_PARAMETER when that size would
        see the text fewer than FEW_PASSES times."""

        def chars_seen(h: int) -> float:
            return self._steps(seconds(h)) * self.train.batch_size * self.train.seq_len

        hidden = _closest(shape, allowed, chars_seen)
        if chars_seen(hidden) < FEW_PASSES * self.train_chars:
            hidden = _closest(shape, allowed, chars_seen, TIMED_CHARS_PER_PARAMETER)
        return hidden

    def _paid_for(
        self, shape: ModelConfig, allowed: list[int], hidden: int, seconds: Callable[[int], float]
    ) -> tuple[int, int, float]:
        """`hidden`, or the smallest allowed size if `hidden` gets fewer than MIN_TIMED_STEPS steps, with the
        steps left once its validations and averaging are paid for."""
        steps = self._steps(seconds(hidden), self._overhead(shape, hidden))
        if steps < MIN_TIMED_STEPS and hidden != allowed[0]:
            hidden = allowed[0]
            steps = self._steps(seconds(hidden), self._overhead(shape, hidden))
        if steps < MIN_TIMED_STEPS:
            raise self._too_short(seconds(hidden), self._overhead(shape, hidden))
        return hidden, steps, seconds(hidden)

    def _overhead(self, shape: ModelConfig, hidden: int) -> Overhead:
        return Overhead(0.0, 0.0) if self.overhead is None else self.overhead(_sized(shape, hidden))

    def _too_short(self, step_s: float, overhead: Overhead) -> CharRNNError:
        every = max(MIN_EVAL_EVERY, min(self.train.eval_every, MIN_TIMED_STEPS))
        spent = self.spent_s()
        needed = spent + overhead.validation_s * (1 + MIN_TIMED_STEPS / every) + MIN_TIMED_STEPS * step_s
        return CharRNNError(
            f"a time budget of {format_duration(self.train.max_time)} trains no model: timing the device took "
            f"{spent:.1f}s, and the smallest model needs {step_s:.2f}s a step and {overhead.validation_s:.2f}s "
            f"a validation, {MIN_TIMED_STEPS} steps at least. Give --max-time {math.ceil(needed * 1.1)}s or more"
        )

    def _seconds(self, shape: ModelConfig, small: int, large: int) -> Callable[[int], float]:
        """Seconds a step takes at any hidden size, a + b * parameters through the times of `small` and `large`."""
        batch = self.train.batch_size
        t_small, t_large = (
            self.step_seconds(_sized(shape, small), batch),
            self.step_seconds(_sized(shape, large), batch),
        )
        p_small, p_large = parameter_count(_sized(shape, small)), parameter_count(_sized(shape, large))
        slope = max(0.0, (t_large - t_small) / (p_large - p_small)) if large != small else 0.0
        return lambda h: max(t_small, t_small + slope * (parameter_count(_sized(shape, h)) - p_small))

    def _steps(self, seconds_per_step: float, overhead: Overhead = Overhead(0.0, 0.0)) -> int:
        """The most steps that fit in what timing left of the budget, with a validation every eval_every steps
        (as the recipe sets it for those steps) and one at the end, and averaging if the run averages."""
        left = self.train.max_time - self.spent_s() - overhead.validation_s

        def seconds(steps: int) -> float:
            averaging = self.averages if self.averages is not None else steps >= MIN_STEPS_TO_AVERAGE
            per_step = seconds_per_step + (overhead.average_s if averaging else 0.0)
            return steps * per_step + steps // eval_every(self.train, steps) * overhead.validation_s

        low, high = 0, max(0, int(left / seconds_per_step))
        while low < high:  # the most steps whose schedule fits
            middle = (low + high + 1) // 2
            low, high = (middle, high) if seconds(middle) <= left else (low, middle - 1)
        return low


def eval_every(train: TrainConfig, steps: int) -> int:
    """The validation interval the recipe sets for a run of `steps`: ten validations, at most every --eval-every."""
    return max(MIN_EVAL_EVERY, min(train.eval_every, steps // 10))


def recurrent_parameters(shape: ModelConfig, hidden: int) -> int:
    """The parameters of the recurrent layers alone, which set what a model can learn from a text; the
    embedding and output layer grow with the vocabulary instead."""
    return recurrent_parameter_count(_sized(shape, hidden))


def _closest(
    shape: ModelConfig,
    allowed: list[int],
    chars_seen: Callable[[int], float],
    chars_per_parameter: float = CHARS_PER_PARAMETER,
) -> int:
    """The size whose recurrent parameters are closest, as a ratio, to the characters it would see divided
    by `chars_per_parameter`."""
    return min(
        allowed,
        key=lambda h: abs(math.log(recurrent_parameters(shape, h) * chars_per_parameter / max(chars_seen(h), 1))),
    )


def _sized(shape: ModelConfig, hidden: int) -> ModelConfig:
    # A tied embedding is as wide as the hidden state it scores.
    embed = {"embed_size": hidden} if shape.tie_embedding else {}
    return dataclasses.replace(shape, hidden_size=hidden, **embed)
