"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it.

A crash at any moment leaves the old file or the new one, never a part of either. The temporary file is
`.<name>.tmp-<pid>` in the target's directory (a rename is atomic only within one file system); one
left by a killed process matches `.*<TEMP_MARK>*`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to; on a clean exit it is synced and renamed over `path`.

    On an exception the temporary file is removed and `path` is untouched. Errors from the file system
    (OSError) reach the caller, who knows what to tell the user.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        # The rename would put a regular file where a FIFO or a device (/dev/null, for root) was.
        raise FileExistsError(errno.EEXIST, "it is not a regular file, which a write would replace", str(path))
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def fsync_directory(directory: Path) -> None:
    """Make the rename itself durable. Not every platform can open a directory (Windows cannot); there the
    rename is as durable as the platform makes it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
