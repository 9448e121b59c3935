import pytest
import torch

from charrnn.data.splits import splits
from charrnn.data.streams import StreamBatcher
from charrnn.data.vocabulary import Vocabulary, smallest_dtype
from charrnn.errors import CharRNNError


def test_vocabulary_round_trip():
    text = "hello, world\n"
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == sorted(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == torch.uint8
    assert vocab.decode(ids.tolist()) == text


def test_unknown_characters_are_counted_and_named():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(CharRNNError, match=r"3 characters the model never saw: 'z' \(2x\), 'q' \(1x\)"):
        vocab.encode("abzzqc")
    assert vocab.decode(vocab.encode("abzzqc", skip_unknown=True).tolist()) == "abc"


def test_a_lone_surrogate_is_refused_in_library_use_as_in_the_cli():
    """Python hands a byte that is not UTF-8 over as a lone surrogate; encoding it is the project's error."""
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(CharRNNError, match=r"never saw: '\\udcff' \(1x\)"):
        vocab.encode("a\udcffb")
    assert vocab.decode(vocab.encode("a\udcffb", skip_unknown=True).tolist()) == "ab"


def test_smallest_dtype_holds_large_vocabularies():
    assert smallest_dtype(256) == torch.uint8
    assert smallest_dtype(257) == torch.int16
    assert smallest_dtype(65_536) == torch.int32
    chars = [chr(0x20000 + i) for i in range(40_000)]  # CJK extension planes, past the 16-bit range
    vocab = Vocabulary(chars)
    text = "".join(chars[::-1])
    assert vocab.decode(vocab.encode(text).tolist()) == text


def test_splits_are_contiguous_90_5_5():
    parts = splits(1000)
    assert (parts["train"].start, parts["train"].end) == (0, 900)
    assert (parts["val"].start, parts["val"].end) == (900, 950)
    assert (parts["test"].start, parts["test"].end) == (950, 1000)


def test_windows_continue_each_stream():
    ids = torch.arange(1000) % 251
    batcher = StreamBatcher(ids.to(torch.uint8), batch_size=4, seq_len=10, seed=0)
    x1, y1, fresh1 = batcher.next_batch()
    x2, _, fresh2 = batcher.next_batch()
    assert fresh1 and not fresh2
    assert x1.shape == (4, 10)
    assert torch.equal(y1[:, :-1], x1[:, 1:])
    assert torch.equal(x2[:, 0], y1[:, -1])  # the next window picks up where the last one ended


def test_epochs_shift_window_boundaries_and_restart_state():
    ids = (torch.arange(2000) % 251).to(torch.uint8)
    batcher = StreamBatcher(ids, batch_size=4, seq_len=10, seed=3)
    firsts = []
    for _ in range(batcher.windows_per_epoch * 3):
        x, _, fresh = batcher.next_batch()
        if fresh:
            firsts.append(int(x[0, 0]))
    assert len(firsts) == 3
    assert len(set(firsts)) > 1


def test_batcher_position_round_trips():
    ids = (torch.arange(3000) % 200).to(torch.uint8)
    a = StreamBatcher(ids, batch_size=4, seq_len=16, seed=1)
    for _ in range(50):
        a.next_batch()
    b = StreamBatcher(ids, batch_size=4, seq_len=16, seed=1)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.next_batch()[0], b.next_batch()[0])


def test_too_short_says_how_much_is_needed():
    with pytest.raises(CharRNNError, match=r"need at least 4,097 \(3,997 more\).*smaller --batch-size or --seq-len"):
        StreamBatcher(torch.zeros(100, dtype=torch.uint8), batch_size=32, seq_len=128, seed=0)
