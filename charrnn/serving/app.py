"""`charrnn serve`: one loaded language model behind an HTTP API (generate, stream, score, describe) and a
web playground. Generation requests that run at the same time are stepped as one batch
(`charrnn.serving.request_batching`).

Every error body is `{"error": "what happened. how to fix it"}`: 400 for a body that is not JSON, 404 and
405 for a wrong path or method, 413 for a body or request above the server's limits, 422 for values the
model or SampleConfig refuses, 429 when the server already runs --max-concurrent samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.resources
import json
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Optional

from charrnn.errors import CharRNNError

try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from pydantic import AfterValidator, BaseModel, ConfigDict, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
except ImportError as e:
    raise CharRNNError(
        f"charrnn serve needs FastAPI and uvicorn, and {e.name} is not installed. "
        "Install them: pip install 'charrnn-lm[serve]'"
    ) from None

from charrnn import __version__
from charrnn.api import Loaded
from charrnn.evaluation.score import evaluate
from charrnn.serving.request_batching import Batcher, StreamFailed
from charrnn.settings.config import SampleConfig
from charrnn.settings.options import default_of, spec_of
from charrnn.storage import checkpoint

MAX_BODY_BYTES = 1 << 20
# A prime is read in one call of the fused model, whose logits (samples x prime x vocabulary) are all
# kept: 64 MB of fp32 at most.
MAX_PRIME_LOGITS = 1 << 24
# After Ctrl-C, streams still running get this long before they are cut.
GRACEFUL_SHUTDOWN_S = 1
PLAYGROUND = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground.css": ("playground.css", "text/css; charset=utf-8"),
    "/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
}
# The page and its script and style come from this server; nothing is fetched from another host.
PLAYGROUND_POLICY = "default-src 'self'; frame-ancestors 'none'"
# The status of an answer to a client that has left, as web servers log it; nobody receives it.
CLIENT_GONE = 499
EXAMPLE = '{"prime": "Alice ", "length": 200}'


def _unicode(text: str) -> str:
    """JSON can spell half of a UTF-16 pair ("\\ud800"), which is no character: refused, not crashed on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"holds {text[e.start]!r}, half of a UTF-16 surrogate pair. Send whole characters") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]


def _sample_field(name: str):
    return Field(default_of(SampleConfig, name), description=spec_of(SampleConfig, name).help)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prime: Optional[Text] = Field("", description="Text to start from; each sample begins with it.")
    length: int = _sample_field("length")
    temperature: float = _sample_field("temperature")
    top_k: Optional[int] = _sample_field("top_k")
    top_p: Optional[float] = _sample_field("top_p")
    seed: Optional[int] = Field(
        None,
        description="Same seed and options, same text as `charrnn sample --seed`. When left out a random "
        "one is used; the response names it (`seed`, or the X-Seed header of a stream).",
    )
    num_samples: int = _sample_field("num_samples")
    stream: bool = Field(
        False, description='Send the text as server-sent events, `data: {"text": ...}`, then `data: [DONE]`.'
    )


class GenerateResponse(BaseModel):
    samples: list[str] = Field(description="Each sample: the prime, then its new characters.")
    seed: int


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: Text = Field(description="The text to score, each character predicted from those before it.")
    skip_unknown: bool = Field(False, description="Leave out characters the model never saw (and count them).")


class ScoreResponse(BaseModel):
    loss: float = Field(description="nats per character")
    bpc: float = Field(description="bits per character")
    perplexity: float
    chars: int = Field(description="characters scored (the first has no context and is not)")
    skipped: Optional[int] = Field(None, description="unknown characters left out, with skip_unknown")


class ErrorResponse(BaseModel):
    error: str = Field(description="what happened. how to fix it")


ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 422, 429)}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class LimitBody:
    """Reads each request's body before the app does, answering 413 once it is over `limit` bytes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error(
            413, f"the request body is over this server's limit of {self.limit:,} bytes. Send a shorter text"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """Pydantic's list of problems as one sentence, and its status: 400 for a body that is not JSON."""
    problems = exc.errors()
    for problem in problems:
        if problem["type"] == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "JSON decode error")
            return 400, f"the body is not valid JSON ({reason}). Send a JSON object, e.g. {EXAMPLE}"
    parts = []
    for problem in problems:
        where = ".".join(str(p) for p in problem["loc"][1:])
        if not where:
            if problem["type"] == "missing":
                return 422, f"the request has no body. Send a JSON object, e.g. {EXAMPLE}"
            return 422, f"the body is not a JSON object. Send one, as Content-Type: application/json, e.g. {EXAMPLE}"
        if problem["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif problem["type"] == "value_error":
            return 422, f"{where} {problem['ctx']['error']}"
        else:
            parts.append(f"{where}: {problem['msg'][0].lower()}{problem['msg'][1:]}")
    return 422, "; ".join(parts) + ". Send the fields /openapi.json describes, e.g. " + EXAMPLE


def build_app(
    loaded: Loaded,
    checkpoint_path: Path,
    *,
    max_length: int,
    max_concurrent: int,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The API and playground for `loaded`, a language model; the stepping thread starts now."""
    loaded.require("lm")
    loaded.require_carried_state("serving")
    batcher = Batcher(loaded.model, loaded.vocab, max_concurrent)
    report = checkpoint.report(checkpoint.resolve(checkpoint_path), loaded.content)
    limits = {"max_length": max_length, "max_concurrent": max_concurrent, "max_body_bytes": max_body_bytes}
    pages = {
        route: ((importlib.resources.files("charrnn.serving") / "playground" / name).read_bytes(), media_type)
        for route, (name, media_type) in PLAYGROUND.items()
    }

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(
        title="charrnn",
        version=__version__,
        description="Generate and score text with a character-level language model.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.add_middleware(LimitBody, limit=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):
        return error(*validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        if exc.status_code == 404:
            return error(404, f"no such endpoint: {request.url.path}. See /openapi.json for the endpoints")
        if exc.status_code == 405:
            return error(405, f"{request.url.path} does not take {request.method}. See /openapi.json")
        if exc.status_code == 400:  # FastAPI's own, for a body that is not UTF-8 or nests too deeply
            return error(400, f"the body cannot be read as JSON ({exc.detail}). Send a JSON object, e.g. {EXAMPLE}")
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(CharRNNError)
    async def refused(request, exc):
        return error(422, str(exc))

    @app.exception_handler(Exception)
    async def failed(request, exc):
        return error(500, f"the server failed ({type(exc).__name__}). Retry, and report it if it happens again")

    def page(route: str):
        body, media_type = pages[route]

        async def serve_page():
            return Response(body, media_type=media_type, headers={"Content-Security-Policy": PLAYGROUND_POLICY})

        app.get(route, include_in_schema=False)(serve_page)

    for route in pages:
        page(route)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def describe() -> dict:
        """The checkpoint, as `charrnn info --json` describes it."""
        return report

    @app.get("/v1/limits")
    async def server_limits() -> dict:
        """The largest length, concurrent samples and body size this server accepts."""
        return limits

    @app.post(
        "/v1/generate",
        response_model=GenerateResponse,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "with stream: true"}},
    )
    async def generate(body: GenerateRequest, request: Request):
        """Samples that start with `prime`: the same seed and options give the text `charrnn sample` prints."""
        config = SampleConfig(
            length=body.length,
            temperature=body.temperature,
            top_k=body.top_k,
            top_p=body.top_p,
            num_samples=body.num_samples,
            seed=secrets.randbelow(2**31) if body.seed is None else body.seed,
        )
        prime = body.prime or ""
        refuse_over_limits(config, prime, body.stream)
        if not batcher.reserve(config.num_samples):
            raise HTTPException(
                429,
                f"the server is already generating its limit of {max_concurrent} samples at once "
                f"({batcher.rows_in_use} now). Retry in a moment",
            )
        try:
            stream = await run_in_threadpool(batcher.prepare, prime, config, config.seed, asyncio.get_running_loop())
        except BaseException:
            batcher.release(config.num_samples)
            raise
        batcher.submit(stream)
        if body.stream:
            return StreamingResponse(
                events(stream, prime),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Seed": str(config.seed)},
            )
        texts = await until_disconnect(request, stream.texts(), stream.cancel)
        if texts is None:
            return Response(status_code=CLIENT_GONE)
        return {"samples": [prime + text for text in texts], "seed": config.seed}

    def refuse_over_limits(config: SampleConfig, prime: str, stream: bool) -> None:
        if config.length > max_length:
            raise HTTPException(
                413, f"length {config.length:,} is over this server's --max-length {max_length:,}. Ask for less"
            )
        if config.num_samples > max_concurrent:
            raise HTTPException(
                413,
                f"num_samples {config.num_samples} is over this server's --max-concurrent {max_concurrent}. "
                "Ask for fewer samples",
            )
        if config.num_samples * len(prime) * len(loaded.vocab) > MAX_PRIME_LOGITS:
            raise HTTPException(
                413,
                f"a prime of {len(prime):,} characters for {config.num_samples} samples is more than this "
                "server reads at once. Send a shorter prime or ask for fewer samples",
            )
        if stream and config.num_samples > 1:
            raise CharRNNError("a stream sends one sample. Pass num_samples 1, or leave out stream")

    @app.post("/v1/score", response_model=ScoreResponse, response_model_exclude_none=True, responses=ERRORS)
    async def score(body: ScoreRequest):
        """Loss, bits per character and perplexity of `text`, as `charrnn eval --data FILE --json` scores it."""
        if not batcher.reserve(1):
            raise HTTPException(
                429, f"the server is already at its limit of {max_concurrent} samples and scores. Retry in a moment"
            )
        try:
            result, skipped = await run_in_threadpool(score_text, body.text, body.skip_unknown)
        finally:
            batcher.release(1)
        if not math.isfinite(result.loss):
            raise CharRNNError("the score is not finite. The checkpoint may hold non-finite weights; use another")
        return result.as_dict() | ({"skipped": skipped} if body.skip_unknown else {})

    def score_text(text: str, skip_unknown: bool):
        ids = loaded.vocab.encode(
            text, skip_unknown=skip_unknown, fix='Remove them, or send "skip_unknown": true to leave them out'
        )
        return evaluate(loaded.model, ids, 1, len(ids)), len(text) - len(ids)

    return app


def sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def events(stream, prime: str):
    """The prime, then each update of the stream's one sample, as server-sent events."""
    try:
        if prime:
            yield sse({"text": prime})
        async for new in stream.updates():
            yield sse({"text": new[0]})
        yield "data: [DONE]\n\n"
    except StreamFailed as e:
        yield sse({"error": str(e)})
    finally:
        stream.cancel()


async def until_disconnect(request: Request, work, on_disconnect: Callable[[], None]):
    """`work`'s result, or None once the client has gone (after calling `on_disconnect`)."""

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            try:
                return task.result()
            except StreamFailed as e:
                raise HTTPException(503, str(e)) from None
        on_disconnect()
        return None
    finally:
        watch.cancel()
        task.cancel()


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
