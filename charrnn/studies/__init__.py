"""Studies: tools about models rather than parts of one. Compare configurations, measure how far gradients reach,
benchmark speed against the machine's bounds, and plot.

May import every core package; nothing imports it but the CLI and the Python API.
"""
