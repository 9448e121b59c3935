"""How many sample rows a server may generate at once: requests take rows before they start, and give them back
when they end, so that one over the limit is refused at once (a 429) instead of waiting."""

from __future__ import annotations

import threading


class Capacity:
    """A count of rows in use, at most `limit`, shared by the event loop and the stepping thread."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0
        self._lock = threading.Lock()
        self._closed = False

    def reserve(self, rows: int) -> bool:
        """Take `rows`, or none when that many are not free or the server is closing."""
        with self._lock:
            if self._closed or self.in_use + rows > self.limit:
                return False
            self.in_use += rows
            return True

    def release(self, rows: int) -> None:
        with self._lock:
            self.in_use -= rows

    def close(self) -> None:
        """Refuse every reservation from now on."""
        with self._lock:
            self._closed = True
