"""OpenAI's legacy completions API, so that its clients (the `openai` package and kin) work unchanged: a token is
one character, `max_tokens` is the number of new characters, and a seed gives the text of `charrnn sample`."""

from __future__ import annotations

import json
import secrets
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from charrnn.serving.error_handlers import OPENAI_ERRORS, Refused
from charrnn.serving.generations import Generation, event_stream, until_disconnect
from charrnn.serving.native_routes import CLIENT_GONE
from charrnn.serving.request_batching import StreamFailed
from charrnn.serving.schemas import Completion, CompletionRequest, ModelList
from charrnn.settings.config import SampleConfig
from charrnn.settings.options import OptionError

# SampleConfig's fields under the names this API gives them.
FIELD_NAMES = {"length": "max_tokens", "prime": "prompt"}
STREAMED = {
    200: {"content": {"text/event-stream": {}}, "description": "with stream: true, chunks as server-sent events"}
}

router = APIRouter()


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request):
    """The served models, the default first, in OpenAI's list shape."""
    served = request.app.state.registry.served.values()
    return {"object": "list", "data": [{"id": s.name, "object": "model", "created": s.created} for s in served]}


def sample_config(body: CompletionRequest) -> SampleConfig:
    if body.n != 1:
        raise Refused(422, f"n {body.n} asks for several completions, and this server makes one. Send n 1")
    try:
        return SampleConfig(
            length=body.max_tokens,
            temperature=body.temperature,
            top_p=None if body.top_p == 1 else body.top_p,
            seed=secrets.randbelow(2**31) if body.seed is None else body.seed,
        )
    except OptionError as e:
        raise Refused(422, f"{FIELD_NAMES.get(e.name, e.name)} {e.problem.format(**FIELD_NAMES)}") from None


@router.post("/v1/completions", response_model=Completion, responses={**OPENAI_ERRORS, **STREAMED})
async def completions(body: CompletionRequest, request: Request):
    """The prompt's continuation, `max_tokens` characters long: OpenAI's text_completion, or its chunks."""
    served = request.app.state.registry.get(body.model)
    config = sample_config(body)
    request.app.state.limits.check(config, body.prompt, len(served.loaded.vocab), FIELD_NAMES)
    generation = await Generation(served, body.prompt, config).start()
    completion = {"id": f"cmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": served.name}
    if body.stream:
        return event_stream(chunks(generation, completion), config.seed)
    texts = await until_disconnect(request, generation.texts(), generation.cancel)
    if texts is None:
        return Response(status_code=CLIENT_GONE)
    used = {"prompt_tokens": len(body.prompt), "completion_tokens": len(texts[0])}
    return {
        **completion,
        "object": "text_completion",
        "choices": [choice(texts[0], "length")],
        "usage": used | {"total_tokens": sum(used.values())},
    }


def choice(text: str, finish_reason: str | None) -> dict:
    return {"text": text, "index": 0, "finish_reason": finish_reason, "logprobs": None}


def chunk(completion: dict, text: str, finish_reason: str | None = None) -> str:
    payload = {**completion, "object": "text_completion", "choices": [choice(text, finish_reason)]}
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def chunks(generation: Generation, completion: dict):
    """Each update of the one completion as a chunk, the last with its finish_reason, then [DONE]."""
    try:
        async for new in generation.updates():
            yield chunk(completion, new[0])
        yield chunk(completion, "", "length")
        yield "data: [DONE]\n\n"
    except StreamFailed as e:
        yield f"data: {json.dumps({'error': {'message': str(e)}})}\n\n"
    finally:
        generation.cancel()
