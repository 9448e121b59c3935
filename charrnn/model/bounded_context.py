"""Reading a text with a bounded context: how a model whose state restarts (`ModelConfig.context`) is scored,
adapted and sampled.

Such a model trained on windows of `context` characters, each read from a zero state. It is read the same
way: the text goes in pieces of `context // 2` characters, and before each piece the state restarts from
zero on the `context - context // 2` characters before it. Every character is then predicted from at
least half the context, and the state never runs longer than it did in training.
"""

from __future__ import annotations


def piece_length(context: int) -> int:
    return context // 2


def reread_length(context: int) -> int:
    return context - context // 2


def pieces(start: int, end: int, context: int) -> list[tuple[int, int]]:
    """[start, end) cut into pieces of at most `piece_length(context)` characters."""
    step = piece_length(context)
    return [(s, min(s + step, end)) for s in range(start, end, step)]
