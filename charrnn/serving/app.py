"""`charrnn serve`: language models behind an HTTP API (charrnn's own, `native_routes`, and OpenAI's
completions, `openai_routes`) and a web playground, served by uvicorn. Generation requests to one model that
run at the same time are stepped as one batch (`charrnn.serving.request_batching`); errors are answered as
`error_handlers` describes.
"""

from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from charrnn.errors import CharRNNError

try:
    import uvicorn
    from fastapi import FastAPI
except ImportError as e:
    raise CharRNNError(
        f"charrnn serve needs FastAPI and uvicorn, and {e.name} is not installed. "
        "Install them: pip install 'charrnn-lm[serve]'"
    ) from None

from charrnn import __version__
from charrnn.api import Loaded
from charrnn.serving import error_handlers, native_routes, openai_routes
from charrnn.serving.limits import MAX_BODY_BYTES, LimitBody, ServerLimits
from charrnn.serving.pages import playground_router
from charrnn.serving.registry import Registry, Served, names_for

# After Ctrl-C, streams still running get this long before they are cut.
GRACEFUL_SHUTDOWN_S = 1


def build_app(
    loaded: Loaded,
    checkpoint_path: Path,
    *,
    max_length: int,
    max_concurrent: int,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The API and playground for one model, `loaded` from `checkpoint_path`; its stepping thread starts now."""
    return build_models_app([(loaded, checkpoint_path)], ServerLimits(max_length, max_concurrent, max_body_bytes))


def build_models_app(models: list[tuple[Loaded, Path]], limits: ServerLimits) -> FastAPI:
    """The API and playground for several models, each named by its run directory (the first answers a
    request that names none); each gets its own stepping thread, started now."""
    names = names_for([path for _, path in models])
    served: list[Served] = []
    try:
        for name, (loaded, path) in zip(names, models):
            served.append(Served.open(name, loaded, path, limits.max_concurrent))
    except BaseException:
        for opened in served:
            opened.batcher.close()
        raise
    registry = Registry(served)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        registry.close()

    app = FastAPI(
        title="charrnn",
        version=__version__,
        description="Generate and score text with character-level language models.",
        lifespan=lifespan,
    )
    app.state.registry, app.state.limits = registry, limits
    # The first model's: what a request that names no model uses.
    app.state.batcher = registry.default.batcher
    app.add_middleware(LimitBody, limit=limits.max_body_bytes)
    error_handlers.install(app)
    app.include_router(playground_router())
    app.include_router(native_routes.router)
    app.include_router(openai_routes.router)
    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a CharRNNError that says why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise CharRNNError(
            f"cannot listen on {host}:{port} ({e.strerror or e}). Pass another --port, or a --host of this machine"
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def log_config() -> dict:
    """uvicorn's logging with its access lines on stderr too: a charrnn command's stdout is its product."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def serve(app, host: str, port: int, on_listening: Callable[[str], None]) -> None:
    """Serve `app` until Ctrl-C or SIGTERM; `on_listening` gets the URL once the socket is open."""
    sock = listen(host, port)
    config = uvicorn.Config(app, log_config=log_config(), timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    on_listening(url_of(sock))
    uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def background(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """`app` served from a thread while the block runs, which gets its URL: for tests, scripts and notebooks."""
    sock = listen(host, port)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="charrnn-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise CharRNNError(f"the server on {url_of(sock)} did not start. Its log above says why")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
