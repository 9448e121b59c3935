"""The plain GRU baseline: what a PyTorch user writes first for a character model, with no tuning to the text.

    python benchmarks/plain_gru.py SPLIT_FOLDER BUDGET_S SEED

An embedding of 64, two GRU layers of 256, dropout 0.1; AdamW at 3e-3, cosine to 3e-4 over the budget,
gradients clipped to norm 1; batches of 32 random 128-character windows, each from a zero state. It
validates every 30 s (and at the end) and keeps the best weights, which are the ones tested.
"""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

EMBED, HIDDEN, LAYERS, DROPOUT = 64, 256, 2, 0.1
PEAK_LR, FLOOR_LR, CLIP = 3e-3, 3e-4, 1.0
BATCH, WINDOW = 32, 128


class PlainGRU(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.gru = nn.GRU(EMBED, HIDDEN, LAYERS, dropout=DROPOUT, batch_first=True)
        self.drop = nn.Dropout(DROPOUT)
        self.out = nn.Linear(HIDDEN, vocab)

    def forward(self, ids, state=None):
        hidden, state = self.gru(self.embed(ids), state)
        return self.out(self.drop(hidden)), state


def main(folder: Path, budget_s: float, seed: int) -> None:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    split = common.read_split(folder)
    ids = split["ids"]
    (_, train_end), (val_start, val_end), (test_start, test_end) = split["train"], split["val"], split["test"]
    model = PlainGRU(len(split["chars"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR)
    clock = common.Clock(budget_s)
    best, best_state, steps = float("inf"), None, 0

    def validate():
        nonlocal best, best_state
        model.eval()
        bpc = common.bits_per_char(model, ids, val_start, min(val_end, val_start + common.VAL_CHARS))
        model.train()
        if bpc < best:
            best, best_state = bpc, copy.deepcopy(model.state_dict())

    while clock.elapsed() < budget_s:
        for group in optimizer.param_groups:
            group["lr"] = common.cosine_lr(PEAK_LR, FLOOR_LR, clock.elapsed() / budget_s)
        starts = [rng.randrange(train_end - WINDOW - 1) for _ in range(BATCH)]
        batch = torch.stack([ids[s : s + WINDOW + 1] for s in starts])
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        steps += 1
        if clock.validation_due():
            validate()
    validate()
    seconds = clock.elapsed()
    model.load_state_dict(best_state)
    model.eval()
    test = common.bits_per_char(model, ids, test_start, test_end)
    common.report(val_bpc=best, test_bpc=test, steps=steps, seconds=seconds)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))
