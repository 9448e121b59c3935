"""What charrnn tells its user: the one exception a user can cause (the CLI turns it into `error: ...` and exit 1),
and notes, things worth knowing that do not stop the work.

Notes go through this module's own channel rather than Python's warnings, so that no warnings filter
(`PYTHONWARNINGS=ignore`, `-W`, a library's `simplefilter`) can hide them. The CLI listens and prints
`note: ...`; with nobody listening (charrnn used as a library) a note goes to the `charrnn` logger at WARNING,
which Python prints to stderr unless the program configured logging otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator


class CharRNNError(Exception):
    """A problem the user can fix. The message reads `what happened. how to fix it`."""


_listeners: list[Callable[[str], None]] = []
_lock = threading.Lock()
logger = logging.getLogger("charrnn")


def note(message: str) -> None:
    """Tell the user `message`, which reads like an error's: what happened, and what to do about it."""
    with _lock:
        listeners = list(_listeners)
    if not listeners:
        logger.warning(message)
    for listener in listeners:
        listener(message)


@contextlib.contextmanager
def notes_to(listener: Callable[[str], None]) -> Iterator[None]:
    """Every note made inside the block goes to `listener` (and to nobody else's logger)."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
