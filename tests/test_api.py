import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- api-example"


def api_example(readme: str) -> str:
    """The python block that follows the README's api-example marker."""
    found = re.search(re.escape(MARKER) + r".*?-->\s*```python\n(.*?)```", readme, re.DOTALL)
    assert found, f"README.md has no ```python block after {MARKER!r}"
    return found.group(1)


def test_the_readme_python_example_runs(tiny_run, tmp_path, monkeypatch):
    code = api_example(README.read_text(encoding="utf-8"))
    shutil.copytree(tiny_run, tmp_path / "runs" / "alice")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("Alice ")
    bpc, chars = re.fullmatch(r"(\d+\.\d{3}) bits per character over (\d+) characters", lines[-1]).groups()
    assert 0 < float(bpc) < 8 and int(chars) > 10


def test_an_example_that_fails_fails_the_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = api_example(f"{MARKER} -->\n```python\nimport charrnn\ncharrnn.load('runs/none')\n```\n")
    with pytest.raises(Exception, match="no checkpoint at runs/none"):
        exec(compile(code, "README.md", "exec"), {})
