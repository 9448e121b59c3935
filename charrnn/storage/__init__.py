"""Storage: checkpoints as plain dicts with a format version and a digest of their contents, written atomically and
checked before they are loaded with `weights_only=True`, and the report that `charrnn info` and the server show.

May import `settings`, `data`, `model` and the top-level `atomic` and `errors`.
"""
