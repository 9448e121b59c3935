"""charrnn: character-level recurrent language models (RNN, LSTM, GRU) in PyTorch."""

__version__ = "1.0.0"
__all__ = ["__version__", "load"]


def __getattr__(name: str):
    # `charrnn.load` imports torch on first use, so `import charrnn` (and the CLI's start) stays light.
    if name == "load":
        from charrnn.api import load

        return load
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
