"""Dynamic evaluation: the model keeps learning from the text it has already scored.

The text is read once, left to right, in segments. Each segment is scored with the current weights
first and only then used for one gradient step, so no character is predicted by weights that have
seen it. A model adapted this way picks up the names and turns of phrase of the passage it is
reading (Krause et al., 2018, "Dynamic Evaluation of Neural Sequence Models").

The step divides each gradient element by its running root mean square (Adam without momentum),
so its size is about `lr` whatever the gradient's scale; plain SGD gained half as much on Alice's
validation split, and scaling by the gradients' size on the training text diverged at a rate a
third above its best. After each step the weights move a fraction `decay` of the way back to the
trained ones, so a long text cannot pull them arbitrarily far.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from charrnn.data.splits import WARMUP_CHARS
from charrnn.evaluation.score import EvalResult, scored_start
from charrnn.model import bounded_context as context
from charrnn.model.network import detach_state
from charrnn.settings.config import DynamicEvalConfig

SEGMENT_LEN = 32
GRAD_SQUARE_AVERAGING = 0.99


def dynamic_evaluate(
    model,
    ids: torch.Tensor,
    start: int,
    end: int,
    settings: DynamicEvalConfig = DynamicEvalConfig(),
    warmup: int = WARMUP_CHARS,
    on_progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Cross-entropy of ids[start:end], adapting a copy of `model` as it reads; `model` is left as it was.

    `settings` holds the step size and the pull back toward the trained weights. The state is first warmed on
    the `warmup` characters before `start`, as `evaluate` does; a model with a bounded context restarts it
    as `context.py` describes.
    `on_progress` receives the number of characters scored after each segment.
    """
    start = scored_start(start, end)
    bound = model.config.context
    segment = SEGMENT_LEN if bound is None else min(SEGMENT_LEN, context.piece_length(bound))
    if bound is not None:
        warmup = min(warmup, context.reread_length(bound))
    device = next(model.parameters()).device
    adapted = copy.deepcopy(model).eval()  # eval: no dropout while scoring, as in `evaluate`
    params = [p.requires_grad_(True) for p in adapted.parameters()]
    trained = [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=settings.lr, betas=(0.0, GRAD_SQUARE_AVERAGING))
    first = max(0, start - 1 - warmup)
    text = ids[first:end].long().to(device)  # text[i] is ids[first + i]
    nats = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        state = adapted(text[None, : start - 1 - first])[1] if first < start - 1 else None
    # cuDNN computes an RNN's gradient only in training mode; the native kernels have no such rule.
    with torch.backends.cudnn.flags(enabled=False):
        restarted = start - first
        for s in range(start - first, end - first, segment):
            e = min(s + segment, end - first)
            if bound is not None and s - restarted >= context.piece_length(bound):
                with torch.no_grad():
                    state = adapted(text[None, max(0, s - 1 - context.reread_length(bound)) : s - 1])[1]
                restarted = s
            logits, state = adapted(text[None, s - 1 : e - 1], state)
            logits, targets = logits.squeeze(0).float(), text[s:e]
            loss = F.cross_entropy(logits, targets, reduction="sum")
            nats += loss.detach().double()
            correct += (logits.detach().argmax(-1) == targets).sum()
            state = detach_state(state)
            optimizer.zero_grad(set_to_none=True)
            (loss / (e - s)).backward()
            optimizer.step()
            if settings.decay:
                with torch.no_grad():
                    for p, t in zip(params, trained):
                        p.lerp_(t, settings.decay)
            if on_progress is not None:
                on_progress(e - s)
    return EvalResult(nats=float(nats), chars=end - start, correct=int(correct))
