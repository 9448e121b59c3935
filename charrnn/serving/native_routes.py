"""charrnn's own API: generate (or stream), score, and describe each served model and the server's limits."""

from __future__ import annotations

import json
import math
import secrets
from typing import Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from charrnn.errors import CharRNNError
from charrnn.evaluation.score import evaluate
from charrnn.serving.error_handlers import ERRORS, Refused, busy
from charrnn.serving.generations import Generation, event_stream, until_disconnect
from charrnn.serving.registry import Served
from charrnn.serving.request_batching import StreamFailed
from charrnn.serving.schemas import (
    MODEL_FIELD,
    GenerateRequest,
    GenerateResponse,
    Health,
    Limits,
    ScoreRequest,
    ScoreResponse,
)
from charrnn.settings.config import SampleConfig

# The status of an answer to a client that has left, as web servers log it; nobody receives it.
CLIENT_GONE = 499
STREAMED = {200: {"content": {"text/event-stream": {}}, "description": "with stream: true, server-sent events"}}
SCORE_FIX = 'Remove them, or send "skip_unknown": true to leave them out'

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz():
    return {"status": "ok"}


@router.get("/v1/model", responses=ERRORS)
async def describe(request: Request, model: Optional[str] = Query(None, description=MODEL_FIELD)) -> dict:
    """The checkpoint, as `charrnn info --json` describes it."""
    return request.app.state.registry.get(model).report


@router.get("/v1/limits", response_model=Limits)
async def server_limits(request: Request):
    """The largest length, concurrent samples and body size this server accepts."""
    return request.app.state.limits.as_dict()


@router.post("/v1/generate", response_model=GenerateResponse, responses={**ERRORS, **STREAMED})
async def generate(body: GenerateRequest, request: Request):
    """Samples that start with `prime`: the same seed and options give the text `charrnn sample` prints."""
    served = request.app.state.registry.get(body.model)
    config = SampleConfig(
        length=body.length,
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p,
        num_samples=body.num_samples,
        seed=secrets.randbelow(2**31) if body.seed is None else body.seed,
    )
    prime = body.prime or ""
    request.app.state.limits.check(config, prime, len(served.loaded.vocab), {})
    if body.stream and config.num_samples > 1:
        raise Refused(422, "a stream sends one sample. Send num_samples 1, or leave out stream")
    generation = await Generation(served, prime, config).start()
    if body.stream:
        return event_stream(events(generation, prime), config.seed)
    texts = await until_disconnect(request, generation.texts(), generation.cancel)
    if texts is None:
        return Response(status_code=CLIENT_GONE)
    return {"samples": [prime + text for text in texts], "seed": config.seed}


def sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def events(generation: Generation, prime: str):
    """The prime, then each update of the one sample, as server-sent events."""
    try:
        if prime:
            yield sse({"text": prime})
        async for new in generation.updates():
            yield sse({"text": new[0]})
        yield "data: [DONE]\n\n"
    except StreamFailed as e:
        yield sse({"error": str(e)})
    finally:
        generation.cancel()


@router.post("/v1/score", response_model=ScoreResponse, response_model_exclude_none=True, responses=ERRORS)
async def score(body: ScoreRequest, request: Request):
    """Loss, bits per character and perplexity of `text`, as `charrnn eval --data FILE --json` scores it."""
    served = request.app.state.registry.get(body.model)
    batcher = served.batcher
    if not batcher.reserve(1):
        raise busy(f"this model is already at its limit of {batcher.capacity.limit} samples and scores")
    try:
        result, skipped = await run_in_threadpool(score_text, served, body.text, body.skip_unknown)
    finally:
        batcher.release(1)
    if not math.isfinite(result.loss):
        raise CharRNNError("the score is not finite. The checkpoint may hold non-finite weights; use another")
    return result.as_dict() | ({"skipped": skipped} if body.skip_unknown else {})


def score_text(served: Served, text: str, skip_unknown: bool):
    ids = served.loaded.vocab.encode(text, skip_unknown=skip_unknown, fix=SCORE_FIX, what="text")
    if len(ids) < 2:
        known = "characters the model knows" if skip_unknown else "characters"
        raise Refused(
            422,
            f"text has {len(ids)} {known}, and the first has no context, so there is nothing to score. "
            "Pass a longer `text`",
        )
    return evaluate(served.loaded.model, ids, 1, len(ids)), len(text) - len(ids)
