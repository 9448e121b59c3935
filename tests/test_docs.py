"""The README and the pages in docs/: links that resolve, anchors that exist, tables that match the code."""

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from charrnn.settings.config import ModelConfig, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250
# Options whose name differs from their field's.
FIELD_OF = {"layers": "num_layers"}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(markdown: str) -> str:
    """The text outside fenced code blocks, where headings and links live."""
    return FENCE.sub("", markdown)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before numbering repeats)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", prose(page.read_text(encoding="utf-8")))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_relative_to(ROOT) or not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    return broken


def test_slugs_follow_github():
    assert slug("What survives what") == "what-survives-what"
    assert slug("`charrnn compare`: the same budget") == "charrnn-compare-the-same-budget"
    assert slug("Training on several processes (torchrun + DDP)") == "training-on-several-processes-torchrun--ddp"
    assert slug("The RNN notes, as options") == "the-rnn-notes-as-options"


def test_repeated_headings_are_numbered(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Measured\n\n```sh\n# Measured\n```\n\n## Measured\n\n## Measured\n", encoding="utf-8")
    assert anchors(page) == {"measured", "measured-1", "measured-2"}


def test_a_broken_link_or_anchor_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Top\n\n## Part two\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n[ok](docs/a.md#part-two) [self](#title) [web](https://example.com/x.md)\n"
        "[gone](docs/b.md) [no anchor](docs/a.md#part-three) [outside](../elsewhere.md)\n"
        "`[code](not/checked.md)`\n```\n[fenced](not/checked.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "docs/b.md: no such file",
        "docs/a.md#part-three: no heading #part-three in docs/a.md",
        "../elsewhere.md: no such file",
    ]


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_the_readme_fits_a_newcomer():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_every_image_in_docs_is_shown_somewhere():
    shown = {(page.parent / target).resolve() for page in pages() for target in relative_links(page)}
    assert [image.name for image in sorted(DOCS.glob("*.png")) if image.resolve() not in shown] == []


def test_the_api_page_shows_the_example_the_tests_run():
    def python_blocks(page: Path) -> list[str]:
        return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)

    readme_example = re.search(r"<!-- api-example.*?-->\s*```python\n(.*?)```", README.read_text("utf-8"), re.DOTALL)
    assert readme_example, "README.md has no api-example block"
    assert readme_example.group(1) in python_blocks(DOCS / "python-api.md")


def documented_defaults() -> dict[str, str]:
    text = (DOCS / "training.md").read_text(encoding="utf-8")
    section = text.split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `--([a-z-]+)` \| .* \| ([^|]*) \|$", section, flags=re.MULTILINE)
    return {option.replace("-", "_"): default.strip().strip("`") for option, default in rows}


def test_every_model_and_training_option_in_the_table_has_the_code_default():
    fields = {f.name: f.default for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
    checked = 0
    for option, documented in documented_defaults().items():
        field = FIELD_OF.get(option, option)
        if field not in fields or fields[field] is None or isinstance(fields[field], bool):
            continue
        default = fields[field]
        if isinstance(default, str):
            assert documented == default, option
        else:
            # The first figure: "384", or "0.01 for lstm, ..." where the default depends on the cell.
            assert float(re.search(r"\d[\d.e-]*", documented).group()) == pytest.approx(default), option
        checked += 1
    assert checked >= 15


def test_the_design_tour_names_modules_that_exist_and_every_area():
    root = ROOT
    tour = (DOCS / "design.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:charrnn|tests)/[\w/.]+)`", tour))
    assert len(named) > 30
    missing = sorted(path for path in named if not (root / path).exists())
    assert not missing, f"docs/design.md names paths that do not exist: {missing}"
    areas = [p.name for p in (root / "charrnn").iterdir() if (p / "__init__.py").is_file()]
    unnamed = sorted(area for area in areas if f"`charrnn/{area}/`" not in tour)
    assert not unnamed, f"docs/design.md does not name these areas: {unnamed}"
