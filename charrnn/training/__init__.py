"""Training: a resolved configuration -> a run directory of checkpoints and metrics. The trainer and its steps, the
objectives, the recipe that sizes a model for a text and budget, weight averaging, torchrun and the run directory's
lock.

May import `settings`, `data`, `model`, `storage`, `evaluation` and `generation`; yields progress and prints
nothing.
"""
