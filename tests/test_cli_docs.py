"""docs/cli.md is generated from the commands themselves (`make docs`); a stale copy fails here."""

import subprocess
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def generate(out: Path) -> str:
    subprocess.run(
        [sys.executable, "-m", "typer", "charrnn.cli", "utils", "docs", "--name", "charrnn"]
        + ["--title", "charrnn command reference", "--output", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("docs") / "cli.md")


def test_the_committed_cli_reference_is_up_to_date(generated):
    assert REFERENCE.read_text(encoding="utf-8") == generated, "docs/cli.md is stale: run `make docs`"


def test_the_reference_shows_every_command_and_the_table_defaults(generated):
    from charrnn.cli import COMMANDS

    for command in COMMANDS:
        assert f"## `charrnn {command}`" in generated
    assert "* `--cell [rnn|lstm|gru]`: The recurrent cell. [default: lstm]" in generated
    assert "* `--layers <int>`: Stacked recurrent layers. [default: 2]" in generated
