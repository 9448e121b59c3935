"""Settings: the option table (each field's flag, help, default and limits), the frozen configurations, presets, the
one pure function that resolves precedence, and config files.

May import nothing of charrnn but `errors`; every other area reads its configuration from here.
"""
