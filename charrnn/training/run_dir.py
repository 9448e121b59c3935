"""A run directory: its files, and the lock that keeps a second training out of it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.settings import config_file as configfile
from charrnn.storage import checkpoint
from charrnn.storage.checkpoint import BEST, LAST, remove_stale_temps
from charrnn.training import staging
from charrnn.training.staging import LOCK

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
RUN_FILES = (BEST, LAST, METRICS, SUMMARY)
# What a run writes into its folder; the rest is a user's, and outlives a run replaced by a new one.
OWN_FILES = (*RUN_FILES, configfile.CONFIG, LOCK)


class RunDir:
    """Read and checked first (`saved_run`), changed only when training begins (`begin`), so that a
    mistake in the options never costs the run that was there. A new run over an old one writes into a
    folder beside it (`path`) and takes the old one's place (`target`) at its first good checkpoint
    (`commit`); until then the old run is as it was (`staging.py`)."""

    def __init__(self, path: Path | str):
        if not str(path).strip():
            # An unset variable in a script; the current directory is never meant.
            raise CharRNNError("--out is empty. Pass the run directory, e.g. --out runs/alice")
        self.target = self.path = Path(path)
        self._lock_file = self._target_lock = None

    @property
    def replacing(self) -> bool:
        """Whether this run trains beside a previous run that it has not replaced yet."""
        return self._target_lock is not None

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_FILES)

    def saved_run(self, resume: bool, force: bool) -> dict | None:
        """The last.pt a resume continues from, checked to belong to this run; None for a new run."""
        staging.recover(self.path, OWN_FILES)
        self._check_config_is_ours()
        if not resume:
            if self.holds_run() and not force:
                raise CharRNNError(
                    f"{self.path} already holds a run. Pass --resume to continue it, "
                    "--force to start it over (it is replaced at the new run's first checkpoint), or another --out"
                )
            return None
        last = self.path / LAST
        if not last.is_file():
            raise CharRNNError(f"there is no run to resume in {self.path} (no {LAST}). Leave out --resume to start one")
        saved = checkpoint.load(last)
        self._check_belongs(saved)
        return saved

    def _check_config_is_ours(self) -> None:
        config = self.path / configfile.CONFIG
        if config.is_file() and not self.holds_run() and not configfile.written_by_charrnn(config):
            raise CharRNNError(
                f"{config} exists and was not written by charrnn, which would overwrite it. "
                "Pass another --out, or move the file"
            )

    def _check_belongs(self, saved: dict) -> None:
        """A last.pt copied in from another run must not be continued, nor overwrite this run's files."""
        recorded = None
        if (self.path / BEST).is_file():
            recorded = checkpoint.load(self.path / BEST)["model_config"]
        elif (self.path / configfile.CONFIG).is_file():
            recorded = configfile.read(self.path / configfile.CONFIG)[1]
        if recorded is None:
            return
        mismatched = [k for k, v in saved["model_config"].items() if k in recorded and recorded[k] != v]
        if mismatched:
            name = mismatched[0]
            raise CharRNNError(
                f"{self.path / LAST} is not this run's: its model has {name} = {saved['model_config'][name]!r}, "
                f"the run's has {recorded[name]!r}. Put back this run's {LAST}, or start a new run with --force"
            )

    def begin(self, fresh: bool) -> None:
        """Create and lock the directory. A fresh run over a previous one trains beside it until `commit`."""
        self.create()
        self.lock()
        if not (fresh and self.holds_run()):
            return
        target = staging.real(self.target)
        staging.check_replaceable(target)
        staged = staging.staged_path(target)
        shutil.rmtree(staged, ignore_errors=True)  # a leftover `recover` could not tell was dead
        self._target_lock, self._lock_file, self.path = self._lock_file, None, staged
        self.create()
        self.lock()

    def commit(self) -> None:
        """The new run has a good checkpoint: it takes the previous run's place, which is removed."""
        if not self.replacing:
            return
        staging.swap(staging.real(self.target), self.path, OWN_FILES)
        self._back_to_target()

    def _back_to_target(self) -> None:
        """The staged folder is the run now, or gone: the target's own lock is no longer needed."""
        self._target_lock.close()
        self._target_lock, self.path = None, self.target

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise CharRNNError(
                f"cannot write to the run directory {self.path} ({e.strerror or e}). Pass a writable --out"
            ) from None

    def lock(self) -> None:
        """Exclusive while this process lives; the kernel drops it when the process dies, however it dies."""
        self._lock_file = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "another process"
            self._lock_file.close()
            self._lock_file = None
            raise CharRNNError(
                f"another training (pid {holder}) is writing into {self.path}. "
                "Wait for it to finish, or pass another --out"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        remove_stale_temps(self.path)

    def unlock(self) -> None:
        """Release the directory; a new run that never earned its place goes, and the previous run stays."""
        if self.replacing:
            shutil.rmtree(self.path, ignore_errors=True)
            self._back_to_target()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def truncate_metrics(self, last_step: int) -> None:
        """Drop metric lines past the checkpoint a resume starts from; those steps run again. Lines that are
        not a step's record (cut short by a kill mid-write, or garbled) go too."""
        path = self.path / METRICS
        if not path.is_file():
            return
        kept = [line for line, record in _records(path) if record["step"] <= last_step]
        path.write_bytes(b"".join(line + b"\n" for line in kept))

    def write_summary(self, summary: dict) -> None:
        (self.path / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl, in order; a line that is not one is left out."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise CharRNNError(f"no {METRICS} in {run_dir}. Pass a run directory written by `charrnn train`")
    return [record for _, record in _records(path)]


# What every line of metrics.jsonl holds (a `Progress`), and what may be null in it.
RECORD_FIELDS = ("step", "elapsed_s", "lr", "train_loss", "grad_norm")
OPTIONAL_FIELDS = ("val_loss", "val_bpc")


def _records(path: Path) -> list[tuple[bytes, dict]]:
    """Each line of `path` that is a step's record, as its bytes and its values. A kill mid-write cuts the
    last line short; a file edited or damaged by hand may hold anything else, which is passed over."""
    records = []
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # not UTF-8 (UnicodeDecodeError is a ValueError), not JSON, too deep
            continue
        if isinstance(record, dict) and _is_record(record):
            records.append((line, record))
    return records


def _is_record(record: dict) -> bool:
    def number(value) -> bool:
        # Bools are ints to Python; an int beyond the largest float cannot be charted.
        if isinstance(value, int) and not isinstance(value, bool):
            return abs(value) <= sys.float_info.max
        return isinstance(value, float)

    return all(number(record.get(name)) for name in RECORD_FIELDS) and all(
        record.get(name) is None or number(record[name]) for name in OPTIONAL_FIELDS
    )
