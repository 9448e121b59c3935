"""spro/char-rnn.pytorch, run from a checkout of it, with its defaults.

    python benchmarks/spro.py CHECKOUT SPLIT_FOLDER BUDGET_S SEED

Its `train.py` ends each step with `loss.data[0]`, which PyTorch 2 refuses, so this repeats that step as
written there with its own `CharRNN` and `char_tensor`: a GRU of 2 x 100 over `string.printable`, Adam at
0.01, batches of 100 random chunks of 200 characters from a zero state, on the training split as its
`read_file` reads a file (through `unidecode`). spro has no validation; here it validates every 30 s, as
the plain GRU does, and the best weights are tested. It reads ASCII only: a text whose test split is more
than 1% outside ASCII gets no score. Needs `unidecode`, spro's one dependency.
"""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HIDDEN, LAYERS, LR, CHUNK_LEN, BATCH = 100, 2, 0.01, 200, 100
MAX_NON_ASCII = 0.01


def main(checkout: Path, folder: Path, budget_s: float, seed: int) -> None:
    sys.path.insert(0, str(checkout))
    import helpers  # spro's
    from model import CharRNN  # spro's
    from unidecode import unidecode

    texts = {name: (folder / f"{name}.txt").read_text(encoding="utf-8") for name in ("train", "val", "test")}
    if sum(not c.isascii() for c in texts["test"]) > MAX_NON_ASCII * len(texts["test"]):
        common.report(val_bpc=None, test_bpc=None, steps=0, seconds=0.0, note="reads ASCII only")
        return
    ids = {name: helpers.char_tensor(unidecode(text)) for name, text in texts.items()}
    torch.manual_seed(seed)
    rng = random.Random(seed)
    decoder = CharRNN(helpers.n_characters, HIDDEN, helpers.n_characters, model="gru", n_layers=LAYERS)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()

    def forward(inputs, state):  # its forward over a whole window at once, for scoring
        output, state = decoder.rnn(decoder.encoder(inputs).transpose(0, 1), state)
        return decoder.decoder(output.transpose(0, 1)), state

    def bpc(name: str, limit: int | None = None) -> float:
        """Bits per character of the split (its first `limit` characters), over its characters before
        transliteration, each read after the training split's last characters."""
        scored = ids[name] if limit is None else ids[name][:limit]
        joined = torch.cat([ids["train"][-common.WARMUP_CHARS :], scored])
        bits = common.bits_per_char(forward, joined, common.WARMUP_CHARS, len(joined))
        return bits * len(scored) / (len(texts[name]) if limit is None else min(limit, len(texts[name])))

    clock = common.Clock(budget_s)
    best, best_state, steps = float("inf"), None, 0
    train = ids["train"]

    def validate():
        nonlocal best, best_state
        score = bpc("val", common.VAL_CHARS)
        if score < best:
            best, best_state = score, copy.deepcopy(decoder.state_dict())

    while clock.elapsed() < budget_s:
        starts = [rng.randint(0, len(train) - CHUNK_LEN - 1) for _ in range(BATCH)]
        inp = torch.stack([train[s : s + CHUNK_LEN] for s in starts])
        target = torch.stack([train[s + 1 : s + CHUNK_LEN + 1] for s in starts])
        hidden = decoder.init_hidden(BATCH)
        decoder.zero_grad()
        loss = 0
        for c in range(CHUNK_LEN):
            output, hidden = decoder(inp[:, c], hidden)
            loss += criterion(output.view(BATCH, -1), target[:, c])
        loss.backward()
        optimizer.step()
        steps += 1
        if clock.validation_due():
            validate()
    validate()
    seconds = clock.elapsed()
    decoder.load_state_dict(best_state)
    common.report(val_bpc=best, test_bpc=bpc("test"), steps=steps, seconds=seconds)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
