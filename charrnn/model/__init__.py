"""The model: ids and a state in, logits and a state out (embedding -> fused RNN/LSTM/GRU -> dropout -> linear),
the one-step cells that share its weights, its sizes, where it runs and in what precision, and the bounded context
that restarts its state.

May import `settings` and `errors`; knows nothing of files, corpora or training.
"""
