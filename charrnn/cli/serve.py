"""`charrnn serve`: a model behind an HTTP API and a web playground, until Ctrl-C."""

from charrnn.cli.common import CheckpointArgument, ThreadsOption, err, handles_errors, use_threads
from charrnn.cli.options import given, opt, plain
from charrnn.cli.sample import SAMPLE_DEVICE
from charrnn.settings.config import ServeConfig, TrainConfig


@handles_errors
def serve_command(
    checkpoint_path: CheckpointArgument,
    host: opt(ServeConfig, "host") = None,
    port: opt(ServeConfig, "port") = None,
    max_length: opt(ServeConfig, "max_length") = None,
    max_concurrent: opt(ServeConfig, "max_concurrent") = None,
    threads: ThreadsOption = None,
    device: opt(TrainConfig, "device", default=SAMPLE_DEVICE) = None,
):
    """Serve a language model: a JSON API (generate, stream, score) and a playground page at /.

    Requests that arrive together are generated together, in one batch. Ctrl-C stops the server (exit 130)."""
    config = ServeConfig(
        **given({"host": host, "port": port, "max_length": max_length, "max_concurrent": max_concurrent})
    )
    use_threads(threads)
    from charrnn.api import load
    from charrnn.serving import app as serve

    loaded = load(checkpoint_path, plain(device, SAMPLE_DEVICE))
    app = serve.build_app(loaded, checkpoint_path, max_length=config.max_length, max_concurrent=config.max_concurrent)
    serve.serve(
        app,
        config.host,
        config.port,
        lambda url: err.print(f"serving {url} (playground at /, API schema at /openapi.json); Ctrl-C stops it"),
    )
