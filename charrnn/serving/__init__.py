"""Serving: a loaded model behind an ASGI app (schemas, routes, request batching, the playground) and exported as
files that run without PyTorch.

May import every core package below `studies`; calls `generation` and never re-implements it.
"""
