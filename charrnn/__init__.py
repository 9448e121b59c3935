"""charrnn: character-level recurrent language models (RNN, LSTM, GRU) in PyTorch."""

__version__ = "0.1.0"
