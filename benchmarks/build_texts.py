"""Build the benchmark's suite of texts from what this machine has or generates.

    python benchmarks/build_texts.py DIR

writes into DIR the five texts docs/results.md measured the recipe on and four of other kinds:
  alice.txt    Alice's Adventures in Wonderland (corpora/alice.txt, or ../shared/corpora/alice.txt)
  prose.txt, python.txt, chinese.txt, tiny.txt   as scripts/build-corpora builds them
  c.txt        the C headers directly in /usr/include, in name order (another programming language)
  verse.txt    the songs and poems of Debian's `fortunes` (its `songs-poems` file)
  log.txt      a web server's access log, generated from a fixed seed (machine logs)
  russian.txt  Russian fortunes (Debian's `fortunes-ru`), Cyrillic
Every text is the same on every machine with the same Debian packages and Python; none is committed.
"""

import importlib.machinery
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALICE = (ROOT / "corpora" / "alice.txt", ROOT.parent / "shared" / "corpora" / "alice.txt")
LOG_LINES = 40_000
LOG_SEED = 26
INDEXES = (".dat", ".u8")  # fortune's index files, and links to the texts under a second name


def build_corpora():
    """scripts/build-corpora as a module: it has no .py suffix, being a command."""
    loader = importlib.machinery.SourceFileLoader("build_corpora", str(ROOT / "scripts" / "build-corpora"))
    return loader.load_module()


def c_headers() -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(Path("/usr/include").glob("*.h")))


def access_log(lines: int = LOG_LINES, seed: int = LOG_SEED) -> str:
    """Lines in the Common Log Format with a referrer and agent, from a seeded generator: the repetition,
    numbers and timestamps of real machine logs, identical on every machine."""
    rng = random.Random(seed)
    paths = ["/", "/index.html", "/about", "/api/v1/items", "/api/v1/users", "/static/app.js", "/static/style.css",
             "/login", "/logout", "/search", "/favicon.ico", "/robots.txt"]  # fmt: skip
    agents = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1", "Wget/1.21.3", "python-requests/2.31.0",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Googlebot/2.1"]  # fmt: skip
    statuses = [200] * 20 + [304] * 4 + [301, 302, 404, 404, 403, 500]
    clients = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(300)]
    seconds = 1_700_000_000
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    out = []
    for _ in range(lines):
        seconds += rng.choice((0, 0, 1, 1, 2, 5))
        day, rest = divmod(seconds % (86400 * 28 * 12), 86400)
        month, day = divmod(day, 28)
        stamp = f"{day + 1:02d}/{months[month]}/2024:{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d} +0000"
        path = rng.choice(paths)
        if path == "/search":
            path += f"?q={rng.choice(['rnn', 'gru', 'lstm', 'alice', 'charrnn'])}&page={rng.randrange(1, 9)}"
        elif path.startswith("/api"):
            path += f"/{rng.randrange(1, 5000)}"
        method = "POST" if path == "/login" else rng.choice(("GET",) * 9 + ("HEAD",))
        status = rng.choice(statuses)
        size = 0 if status in (304, 301, 302) else rng.randrange(200, 60_000)
        referrer = rng.choice(("-", "-", "https://example.org/", "https://example.org/search"))
        out.append(
            f'{rng.choice(clients)} - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} '
            f'"{referrer}" "{rng.choice(agents)}"\n'
        )
    return "".join(out)


def alice() -> str:
    for path in ALICE:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    sys.exit("alice.txt not found: run `charrnn corpus alice` (it writes corpora/alice.txt)")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    corpora = build_corpora()
    corpora.main(out)  # prose, python, chinese, tiny, as docs/results.md built them
    debs = out / "debs"
    russian = corpora.unpack("fortunes-ru", debs) / "ru"
    english = debs / "fortunes" / "usr/share/games/fortunes"
    texts = {
        "alice.txt": alice(),
        "c.txt": c_headers(),
        "verse.txt": corpora.fortunes(english, {"songs-poems"}),
        "log.txt": access_log(),
        "russian.txt": corpora.fortunes(russian, {p.name for p in russian.iterdir() if not p.name.endswith(INDEXES)}),
    }
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
        ascii_share = sum(c.isascii() for c in text) / len(text)
        print(f"{name}: {len(text):,} characters, {len(set(text))} distinct, {ascii_share:.0%} ASCII")
    shutil.rmtree(debs)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
