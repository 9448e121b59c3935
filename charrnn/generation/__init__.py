"""Generation: a model and a prime -> an iterator of characters (temperature, top-k, top-p, a seeded
torch.Generator), and filling gaps with a bidirectional model.

May import `settings`, `data`, `model`, `evaluation` and `errors`; yields characters and never writes to stdout.
"""
