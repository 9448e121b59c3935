"""Every error the server answers is `{"error": "what happened. how to fix it"}`, naming the request's fields:
400 for a body that is not JSON, 404 and 405 for a wrong path, model or method, 413 for a request over the
server's limits, 422 for values the model or SampleConfig refuses, 429 (with Retry-After) when a model already
generates its limit of samples. OpenAI's endpoints answer in OpenAI's shape, `{"error": {"message": ...}}`,
which its clients raise with the message."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from charrnn.errors import CharRNNError
from charrnn.serving.schemas import ErrorResponse, OpenAIErrorResponse

EXAMPLE = '{"prime": "Alice ", "length": 200}'
# Seconds a client told 429 waits before it retries: streams end and free their rows within about that.
RETRY_AFTER_S = 1
OPENAI_PATHS = ("/v1/completions", "/v1/models")


def responses(model: type) -> dict:
    """The error answers an endpoint may give, for its OpenAPI description."""
    retry_after = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return {status: {"model": model} for status in (400, 404, 413, 422, 503)} | {
        429: {"model": model, "headers": retry_after}
    }


ERRORS, OPENAI_ERRORS = responses(ErrorResponse), responses(OpenAIErrorResponse)


class Refused(Exception):
    """A request the server will not run as sent; `message` says why and which field to change."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def busy(message: str) -> Refused:
    return Refused(429, f"{message}. Retry in {RETRY_AFTER_S} s", {"Retry-After": str(RETRY_AFTER_S)})


def error(status: int, message: str, headers: dict[str, str] | None = None, path: str = "") -> JSONResponse:
    if path in OPENAI_PATHS:
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError, example: str = EXAMPLE) -> tuple[int, str]:
    """Pydantic's list of problems as one sentence, and its status: 400 for a body that is not JSON."""
    problems = exc.errors()
    for problem in problems:
        if problem["type"] == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "JSON decode error")
            return 400, f"the body is not valid JSON ({reason}). Send a JSON object, e.g. {example}"
    parts = []
    for problem in problems:
        where = ".".join(str(p) for p in problem["loc"][1:])
        if not where:
            if problem["type"] == "missing":
                return 422, f"the request has no body. Send a JSON object, e.g. {example}"
            return 422, f"the body is not a JSON object. Send one, as Content-Type: application/json, e.g. {example}"
        if problem["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif problem["type"] == "value_error":
            return 422, f"{where} {problem['ctx']['error']}"
        else:
            parts.append(f"{where}: {problem['msg'][0].lower()}{problem['msg'][1:]}")
    return 422, "; ".join(parts) + ". Send the fields /openapi.json describes, e.g. " + example


def example_for(path: str) -> str:
    if path == "/v1/completions":
        return '{"prompt": "Alice ", "max_tokens": 200}'
    if path == "/v1/score":
        return '{"text": "Alice was beginning to get very tired"}'
    return EXAMPLE


def install(app: FastAPI) -> None:
    """Answer every error, the app's own and FastAPI's, with an error body."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):
        return error(*validation_message(exc, example_for(request.url.path)), path=request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        path = request.url.path
        if exc.status_code == 404:
            return error(404, f"no such endpoint: {path}. See /openapi.json for the endpoints")
        if exc.status_code == 405:
            return error(405, f"{path} does not take {request.method}. See /openapi.json", exc.headers, path)
        if exc.status_code == 400:  # FastAPI's own, for a body that is not UTF-8 or nests too deeply
            message = f"the body cannot be read as JSON ({exc.detail}). Send a JSON object, e.g. {example_for(path)}"
            return error(400, message, path=path)
        return error(exc.status_code, str(exc.detail), exc.headers, path)

    @app.exception_handler(Refused)
    async def refused(request, exc):
        return error(exc.status, exc.message, exc.headers, request.url.path)

    @app.exception_handler(CharRNNError)
    async def impossible(request, exc):
        return error(422, str(exc), path=request.url.path)

    @app.exception_handler(Exception)
    async def failed(request, exc):
        message = f"the server failed ({type(exc).__name__}). Retry, and report it if it happens again"
        return error(500, message, path=request.url.path)
