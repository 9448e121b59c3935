import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from charrnn.data import corpus
from charrnn.data.corpus import CorpusEntry, decode_text, fetch, sha256_hex
from charrnn.errors import CharRNNError

BODY = "Alice was beginning to get very tired\nof sitting by her sister on the bank."


def entry(url="http://127.0.0.1:9/pg.txt", sha=None):
    return {
        "tiny": CorpusEntry(
            name="tiny",
            title="t",
            url=url,
            file="tiny.txt",
            sha256=sha or sha256_hex(BODY.encode()),
            bytes=len(BODY),
            characters=len(BODY),
            licence="public domain",
        )
    }


def test_the_registry_knows_alice():
    alice = corpus.registry()["alice"]
    assert alice.url == "https://www.gutenberg.org/cache/epub/11/pg11.txt"
    assert len(alice.sha256) == 64 and alice.characters == 144_600


def test_fetch_from_a_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.txt").write_text(BODY)
    path, origin = fetch("tiny", mirror=mirror, corpora_dir=tmp_path / "corpora", entries=entry())
    assert path.read_text() == BODY
    assert origin == str(mirror / "tiny.txt")


def test_mirror_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "tiny.txt").write_text(BODY)
    monkeypatch.setenv(corpus.MIRROR_VARIABLE, str(tmp_path))
    path, _ = fetch("tiny", corpora_dir=tmp_path / "corpora", entries=entry())
    assert path.read_text() == BODY


def test_wrong_hash_shows_both_and_writes_nothing(tmp_path):
    (tmp_path / "tiny.txt").write_text(BODY + "!")
    with pytest.raises(CharRNNError) as caught:
        fetch("tiny", mirror=tmp_path, corpora_dir=tmp_path / "corpora", entries=entry())
    message = str(caught.value)
    assert sha256_hex((BODY + "!").encode()) in message and sha256_hex(BODY.encode()) in message
    assert "--no-verify" in message
    assert not (tmp_path / "corpora" / "tiny.txt").exists()
    path, _ = fetch("tiny", mirror=tmp_path, verify=False, corpora_dir=tmp_path / "corpora", entries=entry())
    assert path.read_text() == BODY + "!"


def test_no_mirror_and_no_network(tmp_path):
    with pytest.raises(CharRNNError, match="could not download .*--mirror"):
        fetch("tiny", mirror=tmp_path, corpora_dir=tmp_path / "corpora", entries=entry())


def test_download_keeps_the_body_between_gutenberg_markers(tmp_path):
    page = (
        "The Project Gutenberg eBook\r\n\r\n*** START OF THE PROJECT GUTENBERG EBOOK TINY ***\r\n\r\n"
        + BODY.replace("\n", "\r\n")
        + "\r\n\r\n\r\n*** END OF THE PROJECT GUTENBERG EBOOK TINY ***\r\nLicence text\r\n"
    )
    (tmp_path / "pg.txt").write_bytes(page.encode())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/pg.txt"
        empty = tmp_path / "empty"
        empty.mkdir()
        path, origin = fetch("tiny", mirror=empty, corpora_dir=tmp_path / "corpora", entries=entry(url))
    finally:
        server.shutdown()
    assert origin == url
    assert path.read_text() == BODY


def test_unknown_corpus_lists_the_known_ones(tmp_path):
    with pytest.raises(CharRNNError, match="unknown corpus 'bob'. Known corpora: tiny"):
        fetch("bob", corpora_dir=tmp_path, entries=entry())


def test_decoding_drops_bom_and_crlf():
    assert decode_text("\ufeffa\r\nb".encode(), "f") == "a\nb"


def test_invalid_utf8_gives_the_byte_offset():
    with pytest.raises(CharRNNError, match="bad byte at offset 3"):
        decode_text(b"abc\xff", "f.txt")


def test_binary_files_are_refused():
    with pytest.raises(CharRNNError, match="binary file"):
        decode_text(b"\x7fELF\x00\x01", "a.out")


def test_an_installed_package_keeps_its_corpora_in_the_users_data_directory(tmp_path):
    """Installed from a wheel, charrnn has no checkout around it: the registry travels inside the package, and
    fetched corpora go to $XDG_DATA_HOME/charrnn/corpora instead of a corpora/ folder beside site-packages."""
    site = tmp_path / "site-packages"
    shutil.copytree(Path(corpus.__file__).parents[1], site / "charrnn", ignore=shutil.ignore_patterns("__pycache__"))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "alice.txt").write_text(BODY)
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("CHARRNN_CORPUS_MIRROR", None)

    def charrnn(*args):
        command = [sys.executable, "-m", "charrnn", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    listed = charrnn("corpus")
    assert listed.returncode == 0 and "alice" in listed.stdout, listed.stderr
    fetched = charrnn("corpus", "alice", "--mirror", str(mirror), "--no-verify")
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(tmp_path / "data" / "charrnn" / "corpora" / "alice.txt")
    assert (tmp_path / "data" / "charrnn" / "corpora" / "alice.txt").read_text() == BODY
    # The XDG spec: a relative $XDG_DATA_HOME is ignored in favour of ~/.local/share.
    env.update(XDG_DATA_HOME="relative/data", HOME=str(tmp_path / "home"))
    fetched = charrnn("corpus", "alice", "--mirror", str(mirror), "--no-verify")
    assert fetched.stdout.strip() == str(tmp_path / "home" / ".local" / "share" / "charrnn" / "corpora" / "alice.txt")
