"""The one exception a user can cause; the CLI turns it into `error: ...` and exit 1."""


class CharRNNError(Exception):
    """A problem the user can fix. The message reads `what happened. how to fix it`."""


class Notice(UserWarning):
    """Something the user should know that does not stop the work; the core warns, the CLI prints `note: ...`."""
