"""The package's shape: the layers of pyproject.toml's import-linter contracts hold, and each area says what it owns."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import charrnn

PACKAGE = Path(charrnn.__file__).parent


def test_the_import_contracts_hold():
    """Layers and the CLI's monopoly on typer and rich, as pyproject.toml declares them."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_area_says_what_it_owns_and_what_it_may_import():
    for info in pkgutil.iter_modules([str(PACKAGE)]):
        if info.ispkg:
            doc = importlib.import_module(f"charrnn.{info.name}").__doc__ or ""
            assert len(doc.split()) >= 15, f"charrnn/{info.name}/__init__.py needs a paragraph on what it owns"
            assert info.name == "cli" or "import" in doc, f"charrnn/{info.name} does not say what it may import"


def test_few_modules_stay_at_the_top():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 6, top


MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent).as_posix(), path.read_text(encoding="utf-8")


def test_no_module_is_longer_than_300_lines():
    long = {name: n for name, text in modules() if (n := len(text.splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules: {long}"


def test_no_function_is_longer_than_60_lines():
    """Counted from the first line of the body: a command's signature is its option declarations, one a line."""
    long = {}
    for name, text in modules():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.body[0].lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}:{node.name}"] = lines
    assert not long, f"split these functions: {long}"
