"""Replacing a run without risking it: a new run over an old one (`train --force`) trains in a folder beside
it, and takes the old one's place only once it has written its first good checkpoint.

The swap is two renames in the parent directory, atomic each on one file system: the old run to
`.<name>.old`, then the new one from `.<name>.new` to `<name>`; what the old folder holds beside the run's
own files (a user's notes, an export) moves into the new one, and the old folder is removed. A process
killed anywhere in between leaves one of the states `recover` puts right before the next run starts:

- `.new` beside the old run: the new run never earned its place, and goes;
- `.old` and `.new` with no run: killed between the renames, after the new run's first checkpoint, so the
  swap is finished;
- `.old` beside a run: the swap was done, and the old folder is emptied as above.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from charrnn.atomic import fsync_directory
from charrnn.errors import CharRNNError

LOCK = ".lock"


def staged_path(target: Path) -> Path:
    return target.parent / f".{target.name}.new"


def retired_path(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def real(path: Path) -> Path:
    """The folder itself, so that a link to it is followed and `.` has a name to put a sibling beside."""
    return Path(os.path.realpath(path))


def check_replaceable(target: Path) -> None:
    """The swap renames the folder: it must not hold the process's working directory."""
    here = Path.cwd().resolve()
    if here == target or target in here.parents:
        raise CharRNNError(
            f"--out {target} holds the current directory, which replacing the run there would move. "
            "Run from outside it, or pass another --out"
        )


def recover(target: Path, run_files: tuple[str, ...]) -> None:
    """Put right what a process killed while replacing the run at `target` left behind (module docstring).
    Nothing is touched while another process still holds the folder it works in."""
    target = real(target)
    staged, retired = staged_path(target), retired_path(target)
    if not (staged.exists() or retired.exists()):
        return
    if _held(staged) or _held(target):
        return
    if not target.exists():
        os.rename(staged if staged.exists() else retired, target)
    if staged.exists():
        shutil.rmtree(staged)
    if retired.exists():
        _empty_into(retired, target, run_files)


def swap(target: Path, staged: Path, run_files: tuple[str, ...]) -> None:
    """Put the run in `staged` where the run at `target` is. The old run's `run_files` go with it; anything
    else in its folder moves to the new one."""
    retired = retired_path(target)
    try:
        os.rename(target, retired)
    except OSError as e:
        raise _not_replaced(target, e) from None
    try:
        os.rename(staged, target)
    except OSError as e:
        os.rename(retired, target)
        raise _not_replaced(target, e) from None
    fsync_directory(target.parent)
    _empty_into(retired, target, run_files)


def _not_replaced(target: Path, e: OSError) -> CharRNNError:
    return CharRNNError(
        f"could not put the new run in place of the one in {target} ({e.strerror or e}); that run is kept as "
        "it was. Make its parent folder writable, or pass another --out"
    )


def _empty_into(retired: Path, target: Path, run_files: tuple[str, ...]) -> None:
    for entry in retired.iterdir():
        if entry.name not in run_files and not (target / entry.name).exists():
            os.rename(entry, target / entry.name)
    shutil.rmtree(retired)


def _held(folder: Path) -> bool:
    """Whether a live process holds `folder`'s lock (the kernel drops a dead process's lock)."""
    path = folder / LOCK
    if not path.is_file():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False
