"""The next character of many rows at once, each row with its own temperature, top-k, top-p and random stream.

A row's character is drawn by inverse CDF from one uniform number: its logits, divided by its temperature, are
sorted (stably, so that ties keep the order of the vocabulary), cut to its top-k and top-p, and the uniform picks
a place in their running sum. Every operation works along a row and gives the same bits whatever the other rows
are, so a row drawn in a batch of others gets the character it gets drawn alone, as `generate` draws it.

Each sample's uniforms come from its own seeded torch.Generator, `UNIFORM_CHUNK` steps at a time (`Uniforms`):
a batch of many streams then reads one column of a table per step instead of calling every stream's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.settings.config import SampleConfig

# Steps of uniforms drawn from a sample's generator at once: the same in `generate` and in a server's batch.
UNIFORM_CHUNK = 256

# The smallest temperature logits are divided by. It already chooses the likeliest character, but between
# logits closer than about 1e-28 (a gap of 1e-28 weighs e^-100); fp32 logits up to 3e8 divided by it stay
# finite, where a temperature of 1e-300 is 0 in fp32 and makes the likeliest logit's quotient 0 / 0.
MIN_TEMPERATURE = 1e-30


@dataclass(frozen=True)
class RowOptions:
    """Per-row sampling options as (rows, 1) tensors: greedy rows are top-k 1, unset top-k is the vocabulary
    size and unset top-p is infinite, so that every row goes through the same operations."""

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    any_top_k: bool
    any_top_p: bool

    @classmethod
    def of(cls, config: SampleConfig, rows: int, vocab_size: int, device: torch.device) -> RowOptions:
        greedy = config.temperature == 0
        temperature = 1.0 if greedy else max(config.temperature, MIN_TEMPERATURE)
        top_k = 1 if greedy else min(config.top_k or vocab_size, vocab_size)
        top_p = config.top_p if config.top_p is not None and config.top_p < 1 and not greedy else float("inf")

        def column(value, dtype):
            return torch.full((rows, 1), value, dtype=dtype, device=device)

        return cls(
            column(temperature, torch.float32),
            column(top_k, torch.long),
            column(top_p, torch.float32),
            top_k < vocab_size,
            top_p != float("inf"),
        )

    @classmethod
    def cat(cls, parts: list[RowOptions]) -> RowOptions:
        return cls(
            torch.cat([p.temperature for p in parts]),
            torch.cat([p.top_k for p in parts]),
            torch.cat([p.top_p for p in parts]),
            any(p.any_top_k for p in parts),
            any(p.any_top_p for p in parts),
        )

    def select(self, rows: torch.Tensor) -> RowOptions:
        """The options of `rows`; the flags stay set, which costs a no-op at most."""
        return RowOptions(self.temperature[rows], self.top_k[rows], self.top_p[rows], self.any_top_k, self.any_top_p)


def pick(logits: torch.Tensor, options: RowOptions, uniforms: torch.Tensor) -> torch.Tensor:
    """Next ids (rows,) from logits (rows, vocab) and one uniform number in [0, 1) per row."""
    ordered, order = torch.sort(logits.float() / options.temperature, dim=-1, descending=True, stable=True)
    # Cuts that no row asks for are left out: they would leave every value as it is.
    if options.any_top_k:
        ranks = torch.arange(ordered.shape[-1], device=ordered.device)
        ordered = ordered.masked_fill(ranks >= options.top_k, float("-inf"))
    probs = F.softmax(ordered, dim=-1)
    below = probs.cumsum(-1)
    if options.any_top_p:
        # Drop a character when those ranked above it already cover top_p; the first always stays.
        probs = probs.masked_fill(below - probs >= options.top_p, 0.0)
        below = probs.cumsum(-1)
    # Sorted, the characters a row may draw come first: the rest have probability 0 (cut, or too small for fp32).
    kept = (probs > 0).sum(-1, keepdim=True)
    rank = (below <= uniforms[:, None] * below[:, -1:]).sum(-1, keepdim=True)
    return order.gather(-1, torch.minimum(rank, kept - 1)).squeeze(-1)


class Uniforms:
    """One sample's, or one request's samples', uniform numbers, drawn from its generator a chunk at a time."""

    def __init__(self, generator: torch.Generator, rows: int):
        self.generator = generator
        self.rows = rows
        self.used = 0
        self.chunk = self.next_chunk()

    def next_chunk(self) -> torch.Tensor:
        """The next UNIFORM_CHUNK steps' numbers, (rows, UNIFORM_CHUNK)."""
        shape = (UNIFORM_CHUNK, self.rows)
        return torch.rand(shape, generator=self.generator, device=self.generator.device).t()

    def next(self) -> torch.Tensor:
        """The next step's numbers, one per row."""
        if self.used == UNIFORM_CHUNK:
            self.chunk, self.used = self.next_chunk(), 0
        self.used += 1
        return self.chunk[:, self.used - 1]
