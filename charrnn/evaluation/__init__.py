"""Evaluation: a model and ids -> total nats and characters scored, plain or with dynamic evaluation.

May import `settings`, `data`, `model` and `errors`.
"""
