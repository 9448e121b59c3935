"""The recipe's estimate of steps beside the steps a time budget really runs, and where the time went.

    python scripts/estimate_check.py TEXT BUDGET RUNS      e.g. corpora/alice.txt 60s 2

Trains `charrnn train --data TEXT --max-time BUDGET` RUNS times (seeds 0, 1, ...) in a temporary folder and
prints, for each, the recipe's choice, its estimate and the steps run, the projection of steps the run's first
and middle validations printed, the step time it timed beside the median and mean of the run's own steps, its
validations, and when the first step began.
"""

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def check(text: str, budget: str, seed: int, out: Path) -> str:
    command = [sys.executable, "-m", "charrnn", "train", "--data", text, "--max-time", budget, "--seed", str(seed)]
    trained = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, check=True)
    line = next(line for line in trained.stderr.splitlines() if line.startswith("recipe:"))
    estimate, timed = re.search(r"about ([\d,]+) steps in \S+ \(([\d.]+) s a step\)", line).groups()
    estimate = int(estimate.replace(",", ""))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    pairs = list(zip(records, records[1:]))
    steps = [b["elapsed_s"] - a["elapsed_s"] for a, b in pairs if b.get("val_loss") is None]
    validations = [b["elapsed_s"] - a["elapsed_s"] for a, b in pairs if b.get("val_loss") is not None]
    summary = json.loads((out / "summary.json").read_text())
    projections = [r["projected_steps"] for r in records if r.get("projected_steps") is not None]
    first, middle = projections[0], projections[len(projections) // 2]
    return (
        f"{line.split(';')[0]} | estimated {estimate} ran {summary['step']} ({summary['step'] / estimate - 1:+.1%})"
        f" | projected {first} at the first validation ({summary['step'] / first - 1:+.1%}),"
        f" {middle} at the middle one ({summary['step'] / middle - 1:+.1%})"
        f" | timed {timed} s, median {statistics.median(steps):.3f} s, mean {statistics.fmean(steps):.3f} s"
        f" | {len(validations)} validations of {statistics.fmean(validations or [0]):.2f} s"
        f" | first step at {records[0]['elapsed_s']:.1f} s | {summary['elapsed_s']:.1f} s in all"
    )


def main() -> None:
    text, budget, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(runs):
            print(check(text, budget, seed, Path(scratch) / str(seed)), flush=True)


if __name__ == "__main__":
    main()
