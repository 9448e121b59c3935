import re
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from charrnn.data import cache, corpus
from charrnn.data import ids as corpus_ids
from charrnn.data.vocabulary import Vocabulary
from charrnn.errors import CharRNNError, notes_to
from tests.conftest import make_text, train_run

# Every test caches under a directory of its own (conftest's cache_dir), to count and clear entries.
pytestmark = pytest.mark.usefixtures("cache_dir")


MIXED = "Ça va?\r\nNaïve café — 東京 and 🙂 emoji.\r\n" * 50 + "\rlast line without newline"


def encoded_by_hand(path):
    text = corpus.decode_text(path.read_bytes(), str(path))
    vocab = Vocabulary.from_text(text)
    return vocab.chars, vocab.encode(text), corpus.sha256_hex(text.encode("utf-8"))


@pytest.mark.parametrize("piece_bytes", [1 << 20, 7, 2])
def test_ids_match_encoding_the_whole_text(tmp_path, monkeypatch, piece_bytes):
    monkeypatch.setattr(corpus_ids, "PIECE_BYTES", piece_bytes)
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"\xef\xbb\xbf" + MIXED.encode("utf-8"))
    loaded = corpus_ids.load(str(path))
    chars, ids, sha256 = encoded_by_hand(path)
    assert loaded.chars == chars and loaded.sha256 == sha256
    assert loaded.ids.dtype == ids.dtype and torch.equal(loaded.ids, ids)


def test_training_leaves_nothing_beside_the_text(tmp_path, cache_dir):
    data = tmp_path / "data"
    data.mkdir()
    path = data / "text.txt"
    path.write_text(make_text(5000))
    train_run(tmp_path / "run", path, max_steps=2, eval_every=2)
    assert [p.name for p in data.iterdir()] == ["text.txt"]
    [entry] = cache.entries(cache_dir)
    assert entry.source == str(path.resolve())


def test_second_load_maps_the_cache(tmp_path, cache_dir):
    path = tmp_path / "text.txt"
    path.write_text(make_text(5000))
    first = corpus_ids.load(str(path))
    [entry] = cache_dir.glob("*.ids")
    written = entry.stat()
    second = corpus_ids.load(str(path))
    assert (entry.stat().st_ino, entry.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert torch.equal(first.ids, second.ids) and first.sha256 == second.sha256


def test_the_same_text_in_two_places_shares_one_entry(tmp_path, cache_dir):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("the same words")
        corpus_ids.load(str(tmp_path / name))
    assert len(list(cache_dir.glob("*.ids"))) == 1


def test_a_changed_file_gets_a_new_entry(tmp_path, cache_dir):
    path = tmp_path / "text.txt"
    path.write_text("abc")
    corpus_ids.load(str(path))
    path.write_text("abcd")
    assert corpus_ids.load(str(path)).chars == ["a", "b", "c", "d"]
    assert len(list(cache_dir.glob("*.ids"))) == 2


def test_an_explicit_cache_dir_wins(tmp_path, cache_dir):
    path = tmp_path / "text.txt"
    path.write_text("hello")
    corpus_ids.load(str(path), cache_dir=tmp_path / "explicit")
    assert len(list((tmp_path / "explicit").glob("*.ids"))) == 1
    assert not cache_dir.exists()


def test_an_unwritable_cache_encodes_in_memory_with_a_note(tmp_path, monkeypatch):
    # A directory under a regular file cannot be made, even by root (for whom chmod 0o500 stops nothing).
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(cache.DIR_VARIABLE, str(blocker / "cache"))
    path = tmp_path / "mixed.txt"
    path.write_bytes(MIXED.encode("utf-8"))
    notes = []
    with notes_to(notes.append):
        loaded = corpus_ids.load(str(path))
    assert len(notes) == 1 and re.search(r"could not cache the encoded mixed\.txt in .*a-file/cache .*memory", notes[0])
    chars, ids, sha256 = encoded_by_hand(path)
    assert loaded.chars == chars and loaded.sha256 == sha256 and torch.equal(loaded.ids, ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "mixed.txt"]


def test_a_library_user_hears_notes_through_the_charrnn_logger(tmp_path, monkeypatch, caplog):
    """With no CLI listening, a note is a WARNING of the `charrnn` logger, which no warnings filter hides."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(cache.DIR_VARIABLE, str(blocker / "cache"))
    path = tmp_path / "text.txt"
    path.write_text("hello")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus_ids.load(str(path))
    [record] = [r for r in caplog.records if r.name == "charrnn"]
    assert record.levelname == "WARNING" and "could not cache the encoded text.txt" in record.getMessage()


def test_an_entry_that_cannot_be_replaced_also_falls_back(tmp_path, cache_dir):
    path = tmp_path / "text.txt"
    path.write_text("hello")
    (cache.entry_path(cache_dir, corpus_ids._file_sha256(path)[:16])).mkdir(parents=True)
    notes = []
    with notes_to(notes.append):
        assert corpus_ids.load(str(path)).chars == sorted(set("hello"))
    assert len(notes) == 1 and "encoded in memory" in notes[0]


def test_a_vocabulary_of_65536_characters(tmp_path):
    chars = [chr(c) for c in range(0x20, 0x110000) if not 0xD800 <= c < 0xE000][:65536]
    path = tmp_path / "wide.txt"
    path.write_text("".join(chars) + "".join(reversed(chars)))
    loaded = corpus_ids.load(str(path))
    assert len(loaded.chars) == 65536 and loaded.ids.dtype == torch.int32
    assert Vocabulary(loaded.chars).decode(loaded.ids[:65536].tolist()) == "".join(chars)


def test_ids_under_a_saved_vocabulary(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("abcab€")
    loaded = corpus_ids.load(str(path))
    saved = Vocabulary(["b", "a", "c", "z"])
    with pytest.raises(CharRNNError, match=r"1 characters the model never saw: '€' \(1x\)"):
        loaded.under(saved)
    ids, skipped = loaded.under(saved, skip_unknown=True)
    assert saved.decode(ids.tolist()) == "abcab" and skipped == 1
    assert loaded.under(Vocabulary(loaded.chars))[0] is loaded.ids


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"ok\x00no", "binary file"),
        (b"good text \xff bad", "not valid UTF-8 (bad byte at offset 10)"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CharRNNError, match=message.replace("(", r"\(").replace(")", r"\)")):
        corpus_ids.load(str(path))


@pytest.mark.slow
def test_a_200_mb_corpus_trains_in_under_1_5_gb(tmp_path, cache_dir):
    script = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        from charrnn.training.launch import open_training
        from tests.conftest import make_text, train_run

        path = Path({str(tmp_path)!r}) / "big.txt"
        block = (make_text(1_000_000) + "café “quoted” — naïve\\n").encode("utf-8")
        with open(path, "wb") as f:
            for _ in range(200_000_000 // len(block) + 1):
                f.write(block)
        trainer = open_training(
            Path({str(tmp_path)!r}) / "run",
            {{"data": str(path), "max_steps": 3, "eval_every": 1000, "seq_len": 32, "batch_size": 8,
              "hidden_size": 16, "embed_size": 4, "num_layers": 1}},
        )
        for _ in trainer.run():
            pass
        trainer.close()
        print(len(trainer.ids), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    chars, peak_mb = map(int, done.stdout.split())
    assert chars > 190_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "cache", "run"]
    assert peak_mb < 1536, f"peak resident memory {peak_mb} MB"
