import io
import zipfile

import pytest
import torch

from charrnn.api import load
from charrnn.errors import CharRNNError
from charrnn.storage import checkpoint


def test_round_trip_keeps_every_value(tmp_path):
    content = {
        "model": {"w": torch.randn(3, 4)},
        "step": 7,
        "vocab": ["a", "b"],
        "best_val_loss": None,
        "x": (1.5, "s"),
    }
    checkpoint.save(tmp_path / "c.pt", content)
    loaded = checkpoint.load(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], content["model"]["w"])
    assert loaded["step"] == 7 and loaded["vocab"] == ["a", "b"] and loaded["best_val_loss"] is None


def test_a_run_directory_means_its_best_checkpoint(tiny_run):
    loaded = load(tiny_run)
    assert loaded.content["step"] <= 30
    assert load(tiny_run / "last.pt").content["step"] == 30
    assert checkpoint.resolve(tiny_run) == tiny_run / "best.pt"


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CharRNNError, match="no checkpoint at .*Pass a run directory"):
        checkpoint.load(tmp_path / "nope.pt")


def test_truncated_checkpoint(tiny_run, tmp_path):
    data = (tiny_run / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CharRNNError, match="not a charrnn checkpoint|damaged"):
        checkpoint.load(tmp_path / "cut.pt")


def test_flipped_byte_is_caught_by_the_hash(tmp_path):
    checkpoint.save(tmp_path / "c.pt", {"w": torch.zeros(1000)})
    data = bytearray((tmp_path / "c.pt").read_bytes())
    # Inside the tensor's bytes: change one zero float into something else.
    position = data.find(bytes(400)) + 200
    data[position] ^= 0x40
    (tmp_path / "c.pt").write_bytes(bytes(data))
    with pytest.raises(CharRNNError, match="damaged"):
        checkpoint.load(tmp_path / "c.pt")


def test_foreign_torch_file(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CharRNNError, match="not a charrnn checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_not_a_torch_file(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CharRNNError, match="not a charrnn checkpoint"):
        checkpoint.load(tmp_path / "notes.pt")


def test_compression_bomb_is_refused_before_loading(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.pt", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(50_000_000))
    assert (tmp_path / "bomb.pt").stat().st_size < 1_000_000
    with pytest.raises(CharRNNError, match="compressed entries"):
        checkpoint.load(tmp_path / "bomb.pt")


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_that_runs_code_never_runs(tmp_path):
    target = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"format": checkpoint.FORMAT, "content": _Exploit(str(target))}, buffer)
    (tmp_path / "evil.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CharRNNError, match="damaged or not a charrnn checkpoint"):
        checkpoint.load(tmp_path / "evil.pt")
    assert not target.exists()


def test_newer_format_asks_for_an_upgrade(tmp_path):
    torch.save({"format": checkpoint.FORMAT, "format_version": 99, "sha256": "", "content": {}}, tmp_path / "new.pt")
    with pytest.raises(CharRNNError, match="Upgrade charrnn"):
        checkpoint.load(tmp_path / "new.pt")


def test_save_into_a_missing_directory_keeps_nothing_half_written(tmp_path):
    with pytest.raises(CharRNNError, match="could not write"):
        checkpoint.save(tmp_path / "gone" / "c.pt", {"w": torch.zeros(1)})
