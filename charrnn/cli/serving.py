"""`charrnn serve`: a model behind an HTTP API and a web playground, until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from charrnn.cli.common import CheckpointArgument, ThreadsOption, err, handles_errors, use_threads
from charrnn.cli.generation import SAMPLE_DEVICE
from charrnn.cli.options import opt, plain
from charrnn.config import TrainConfig


@handles_errors
def serve_command(
    checkpoint_path: CheckpointArgument,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 opens it to other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")] = 8000,
    max_length: Annotated[
        int, typer.Option(min=1, help="The most new characters one request may ask for per sample.")
    ] = 10_000,
    max_concurrent: Annotated[
        int, typer.Option(min=1, help="The most samples generated at once; more get 429 until some end.")
    ] = 64,
    threads: ThreadsOption = None,
    device: opt(TrainConfig, "device", default=SAMPLE_DEVICE) = None,
):
    """Serve a language model: a JSON API (generate, stream, score) and a playground page at /.

    Requests that arrive together are generated together, in one batch. Ctrl-C stops the server (exit 130)."""
    use_threads(threads)
    from charrnn import serve
    from charrnn.api import load

    loaded = load(checkpoint_path, plain(device, SAMPLE_DEVICE))
    app = serve.build_app(loaded, checkpoint_path, max_length=max_length, max_concurrent=max_concurrent)
    serve.serve(
        app,
        host,
        port,
        lambda url: err.print(f"serving {url} (playground at /, API schema at /openapi.json); Ctrl-C stops it"),
    )
