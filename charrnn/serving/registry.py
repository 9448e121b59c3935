"""The models one server holds, each under a name (its run directory's) and with its own Batcher; a request
names one in its `model` field, or gets the first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charrnn.api import Loaded
from charrnn.serving.error_handlers import Refused
from charrnn.serving.request_batching import Batcher
from charrnn.storage import checkpoint


@dataclass
class Served:
    name: str
    loaded: Loaded
    batcher: Batcher
    report: dict
    created: int

    @classmethod
    def open(cls, name: str, loaded: Loaded, path: Path, capacity: int) -> Served:
        """`loaded` ready to serve; a model that cannot generate left to right (a fill model) is refused."""
        loaded.require("lm")
        resolved = checkpoint.resolve(path)
        report = checkpoint.report(resolved, loaded.content)
        return cls(name, loaded, Batcher(loaded.model, loaded.vocab, capacity), report, int(resolved.stat().st_mtime))


def names_for(paths: list[Path]) -> list[str]:
    """Each run directory's name (a checkpoint file's, without .pt); a name met again gets -2, -3, ..."""
    names: list[str] = []
    for path in paths:
        resolved = path.resolve()
        base = resolved.name if resolved.is_dir() else resolved.stem
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base}-{count}"
        names.append(name)
    return names


class Registry:
    def __init__(self, served: list[Served]):
        self.served = {s.name: s for s in served}
        self.default = served[0]

    def get(self, name: str | None) -> Served:
        if name is None:
            return self.default
        found = self.served.get(name)
        if found is None:
            known = ", ".join(repr(n) for n in self.served)
            raise Refused(404, f"no model named {name!r} is served here. Send a `model` of {known}, or leave it out")
        return found

    def close(self) -> None:
        for served in self.served.values():
            served.batcher.close()
