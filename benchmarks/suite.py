"""The whole side-by-side benchmark: every text of the suite at every budget, one cell at a time.

    python benchmarks/suite.py [--spro PATH] [--nanogpt PATH] [--budgets 60,120]

builds the texts into benchmarks/texts (build_texts.py) if they are missing, runs each cell (run.py) and
writes benchmarks/results.json (one object per cell) and benchmarks/results.md (the table docs/results.md
shows). A cell already in results.json for the same CPU is kept, so an interrupted suite goes on where it
stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402

TEXTS = ("alice", "prose", "python", "chinese", "tiny", "c", "verse", "log", "russian")
BUDGETS = (60, 120, 600)
RESULTS_JSON, RESULTS_MD = HERE / "results.json", HERE / "results.md"


def table(cells: list[dict]) -> str:
    cpus = sorted({cell["cpu"] for cell in cells})
    lines = [
        f"Test bits per character (lower is better) on {', '.join(cpus)}, each tool's best-on-validation weights; "
        "the best of a row in bold, a dash where the tool did not run. Built by `make benchmark`.",
        "",
        "| text | budget | " + " | ".join(run.TOOLS) + " |",
        "|---|---:|" + "---:|" * len(run.TOOLS),
    ]
    for cell in cells:
        scores = cell["bpc"]
        best = min((v for v in scores.values() if v is not None), default=None)
        shown = ["–" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in scores.values()]
        seeds = f" ({len(cell['seeds'])} seeds)" if len(cell.get("seeds", {})) > 1 else ""
        lines.append(f"| {cell['text']} | {cell['budget_s']} s{seeds} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spro", help="a checkout of spro/char-rnn.pytorch")
    parser.add_argument("--nanogpt", help="a checkout of karpathy/nanoGPT")
    parser.add_argument(
        "--budgets",
        type=lambda value: tuple(int(b) for b in value.split(",")),
        default=BUDGETS,
        help="the budgets to run, in seconds, comma-separated (default: 60,120,600)",
    )
    args = parser.parse_args()
    texts = HERE / "texts"
    if not all((texts / f"{name}.txt").is_file() for name in TEXTS):
        subprocess.run([sys.executable, str(HERE / "build_texts.py"), str(texts)], check=True)
    cells = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else []
    cpu = run.cpu_name()
    done = {(c["text"], c["budget_s"]) for c in cells if c["cpu"] == cpu}
    peers = [f"--{tool}={path}" for tool, path in (("spro", args.spro), ("nanogpt", args.nanogpt)) if path]
    for budget in args.budgets:
        for name in TEXTS:
            if (name, budget) in done:
                continue
            with tempfile.TemporaryDirectory() as scratch:
                out = Path(scratch) / "cell.json"
                command = [sys.executable, str(HERE / "run.py"), "--text", str(texts / f"{name}.txt"), "--budget",
                           str(budget), "--tools", ",".join(run.TOOLS), "--json", str(out), *peers]  # fmt: skip
                subprocess.run(command, check=True)
                cells = [c for c in cells if (c["text"], c["budget_s"], c["cpu"]) != (name, budget, cpu)]
                cells.append(json.loads(out.read_text()))
            RESULTS_JSON.write_text(json.dumps(cells, indent=1) + "\n")
            RESULTS_MD.write_text(table(cells))


if __name__ == "__main__":
    main()
