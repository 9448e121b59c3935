"""`charrnn fill`: restore the missing characters of a text with a bidirectional model."""

import secrets
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli.common import (
    DeviceOption,
    ThreadsOption,
    command_line_text,
    err,
    fail,
    handles_errors,
    read_text_file,
    use_threads,
)
from charrnn.cli.options import opt, plain
from charrnn.settings.config import SampleConfig

S = SampleConfig


@handles_errors
def fill_command(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="A fill model's run directory (its best.pt) or .pt file.")
    ],
    text: Annotated[
        Optional[str],
        typer.Argument(metavar="TEXT", help="The text, each missing character written as the mask character."),
    ] = None,
    file: Annotated[Optional[Path], typer.Option(help="Read the text from a UTF-8 file.")] = None,
    mask_char: Annotated[str, typer.Option(help="The character that marks a missing one.")] = "_",
    temperature: opt(
        S, "temperature", help="0 = the likeliest characters; above 0, sample (1 = the model's own odds).", default=0.0
    ) = None,
    seed: opt(S, "seed") = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
):
    """Fill the gaps in a text with a model trained with --objective fill; the filled text goes to stdout.

    Each run of the mask character is one gap. Gaps the model is unsure of are named on stderr."""
    use_threads(threads)
    from charrnn.api import load

    if (text is None) == (file is None):
        fail("pass the text to fill, or --file PATH, but not both", 2)
    if file is not None:
        text = read_text_file(file, "--file")
    text = command_line_text(text, "TEXT", "Pass UTF-8 text, or a UTF-8 file with --file")
    mask_char = command_line_text(mask_char, "--mask-char", "Pass one UTF-8 character, e.g. --mask-char _")
    loaded = load(checkpoint_path, plain(device, "auto"))
    loaded.require("fill")
    config = SampleConfig(temperature=0.0 if temperature is None else temperature, seed=seed)
    if config.temperature > 0 and config.seed is None:
        config = SampleConfig(temperature=config.temperature, seed=secrets.randbelow(2**31))
        err.print(f"seed: {config.seed}")
    filled = loaded.fill(text, mask_char, config.temperature, config.seed or 0)
    sys.stdout.write(filled.text)
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()
    trained = loaded.content["train_config"]["mask_span"]
    for gap in filled.gaps:
        if gap.low_confidence:
            longer = f", longer than the gaps of up to {trained} it trained on" if len(gap.text) > trained else ""
            err.print(
                f"low confidence in the gap at character {gap.start + 1} ({len(gap.text)} long{longer}): "
                f"{gap.text!r}, mean probability {gap.mean_probability:.2f} of the chosen characters",
                markup=False,
            )
