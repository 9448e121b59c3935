"""`charrnn serve`: models behind an HTTP API (charrnn's own and OpenAI's completions) and a web playground,
until Ctrl-C."""

from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli.common import ThreadsOption, err, handles_errors, use_threads
from charrnn.cli.options import given, opt, plain
from charrnn.cli.sample import SAMPLE_DEVICE
from charrnn.settings.config import ServeConfig, TrainConfig

CheckpointsArgument = Annotated[
    list[Path],
    typer.Argument(
        metavar="CHECKPOINT...",
        help="Run directories (their best.pt) or .pt files; each is served under its directory's name, the "
        "first to requests that name no model.",
    ),
]


@handles_errors
def serve_command(
    checkpoint_paths: CheckpointsArgument,
    host: opt(ServeConfig, "host") = None,
    port: opt(ServeConfig, "port") = None,
    max_length: opt(ServeConfig, "max_length") = None,
    max_concurrent: opt(ServeConfig, "max_concurrent") = None,
    threads: ThreadsOption = None,
    device: opt(TrainConfig, "device", default=SAMPLE_DEVICE) = None,
):
    """Serve language models: a JSON API (generate, stream, score), OpenAI's /v1/completions, and a playground
    page at /.

    Requests to one model that arrive together are generated together, in one batch. Ctrl-C stops the server
    (exit 130)."""
    config = ServeConfig(
        **given({"host": host, "port": port, "max_length": max_length, "max_concurrent": max_concurrent})
    )
    use_threads(threads)
    from charrnn.api import load
    from charrnn.serving import app as serve
    from charrnn.serving.limits import ServerLimits

    models = [(load(path, plain(device, SAMPLE_DEVICE)), path) for path in checkpoint_paths]
    app = serve.build_models_app(models, ServerLimits(config.max_length, config.max_concurrent))
    serve.serve(
        app,
        config.host,
        config.port,
        lambda url: err.print(f"serving {url} (playground at /, API schema at /openapi.json); Ctrl-C stops it"),
    )
