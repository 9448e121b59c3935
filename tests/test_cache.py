import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.data import cache
from charrnn.data import ids as corpus_ids
from charrnn.errors import CharRNNError
from tests.conftest import make_text

runner = CliRunner()


# Every test caches under a directory of its own (conftest's cache_dir), to count and clear entries.
pytestmark = pytest.mark.usefixtures("cache_dir")


def texts(tmp_path, count, chars=20_000):
    paths = []
    for i in range(count):
        path = tmp_path / f"text{i}.txt"
        path.write_text(make_text(chars, seed=i))
        paths.append(path)
    return paths


def used_at(path: Path, seconds_ago: float) -> None:
    stamp = time.time() - seconds_ago
    os.utime(path, (stamp, stamp))


def test_the_directory_is_found_in_order_of_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.directory(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache.directory() == tmp_path / "cache"
    monkeypatch.delenv(cache.DIR_VARIABLE)
    assert cache.directory() == tmp_path / "xdg" / "charrnn"
    # The XDG spec: a relative $XDG_CACHE_HOME is ignored, as is an empty one.
    for ignored in ("relative/cache", ""):
        monkeypatch.setenv("XDG_CACHE_HOME", ignored)
        assert cache.directory() == tmp_path / "home" / ".cache" / "charrnn"
    monkeypatch.setenv(cache.DIR_VARIABLE, "")
    assert cache.directory() == tmp_path / "home" / ".cache" / "charrnn"


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf"])
def test_a_bad_size_bound_is_refused(monkeypatch, value):
    monkeypatch.setenv(cache.MAX_MB_VARIABLE, value)
    with pytest.raises(CharRNNError, match=f"CHARRNN_CACHE_MAX_MB is '{value}', not a size in megabytes"):
        cache.max_bytes()


def test_least_recently_used_entries_go_beyond_the_bound(tmp_path, cache_dir, monkeypatch):
    first, second, third = texts(tmp_path, 3)
    for path in (first, second):
        corpus_ids.load(str(path))
    entry_of = {e.source: e.path for e in cache.entries(cache_dir)}
    used_at(entry_of[str(second.resolve())], 200)
    used_at(entry_of[str(first.resolve())], 100)
    corpus_ids.load(str(first))  # a use makes the first text the most recent again
    size = entry_of[str(first.resolve())].stat().st_size
    monkeypatch.setenv(cache.MAX_MB_VARIABLE, str(2.5 * size / 1e6))
    corpus_ids.load(str(third))
    left = [e.source for e in cache.entries(cache_dir)]
    assert left == [str(third.resolve()), str(first.resolve())]


def test_the_entry_just_written_stays_even_beyond_the_bound(tmp_path, cache_dir, monkeypatch):
    first, second = texts(tmp_path, 2)
    corpus_ids.load(str(first))
    monkeypatch.setenv(cache.MAX_MB_VARIABLE, "0")
    loaded = corpus_ids.load(str(second))
    assert [e.source for e in cache.entries(cache_dir)] == [str(second.resolve())]
    assert len(loaded.ids) == 20_000


def test_clean_up_and_clear_touch_only_charrnns_files(tmp_path, cache_dir, monkeypatch):
    [path] = texts(tmp_path, 1)
    corpus_ids.load(str(path))
    stale, fresh = cache_dir / ".0123456789abcdef.ids.tmp-99", cache_dir / ".fedcba9876543210.ids.tmp-98"
    stale.write_bytes(b"killed mid-write")
    fresh.write_bytes(b"being written")
    used_at(stale, cache.STALE_TEMP_S + 60)
    foreign = [cache_dir / "notes.txt", cache_dir / "0123456789abcdef.ids"]
    for other in foreign:
        other.write_text("not charrnn's")
    monkeypatch.setenv(cache.MAX_MB_VARIABLE, "0")
    other = tmp_path / "other.txt"
    other.write_text("another text")
    corpus_ids.load(str(other))
    assert not stale.exists() and fresh.exists()
    assert len(cache.entries(cache_dir)) == 1
    cache.clear(cache_dir)
    assert sorted(cache_dir.iterdir()) == sorted(foreign)


def test_the_cache_command_lists_and_clears(tmp_path, cache_dir):
    paths = texts(tmp_path, 2)
    for path in paths:
        corpus_ids.load(str(path))
    listed = runner.invoke(app, ["cache", "--json"])
    assert listed.exit_code == 0, listed.output
    report = json.loads(listed.stdout)
    assert report["directory"] == str(cache_dir) and report["max_bytes"] == cache.DEFAULT_MAX_MB * 10**6
    assert {e["source"] for e in report["entries"]} == {str(p.resolve()) for p in paths}
    assert report["bytes"] == sum(e["bytes"] for e in report["entries"]) > 40_000
    assert all(Path(e["path"]).parent == cache_dir for e in report["entries"])

    table = runner.invoke(app, ["cache"])
    assert table.exit_code == 0 and all(Path(e["path"]).name in table.stdout for e in report["entries"])
    assert f"{cache_dir}: 2 entries" in table.stderr

    cleared = runner.invoke(app, ["cache", "--clear"])
    assert cleared.exit_code == 0
    assert cleared.stdout.strip() == f"removed 2 entries ({report['bytes'] / 1e3:.1f} kB) from {cache_dir}"
    assert json.loads(runner.invoke(app, ["cache", "--json"]).stdout)["entries"] == []


def test_the_cache_command_reports_a_bad_bound_as_an_error(monkeypatch):
    monkeypatch.setenv(cache.MAX_MB_VARIABLE, "lots")
    result = runner.invoke(app, ["cache"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: $CHARRNN_CACHE_MAX_MB is 'lots', not a size in megabytes. Set it")


def test_a_cache_that_cannot_be_written_is_one_note_and_training_goes_on(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(cache.DIR_VARIABLE, str(blocker / "cache"))
    (text,) = texts(tmp_path, 1)
    args = ["--hidden-size", "16", "--embed-size", "4", "--layers", "1", "--seq-len", "16", "--batch-size", "4"]
    result = runner.invoke(app, ["train", "--data", str(text), *args, "--max-steps", "2", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "in memory" in notes[0]
    assert "Warning" not in result.stderr
