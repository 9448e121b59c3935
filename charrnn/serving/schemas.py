"""What the server's endpoints take and answer, as pydantic models: /openapi.json is generated from them, and
schemathesis checks every answer against it (tests/test_serve_schema.py)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from charrnn.settings.config import SampleConfig
from charrnn.settings.options import SEED_LIMIT, default_of, spec_of


def _unicode(text: str) -> str:
    """JSON can spell half of a UTF-16 pair ("\\ud800"), which is no character: refused, not crashed on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"holds {text[e.start]!r}, half of a UTF-16 surrogate pair. Send whole characters") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]
MODEL_FIELD = "Which served model answers (GET /v1/models lists them); the first when left out."


def _sample_field(name: str):
    return Field(default_of(SampleConfig, name), description=spec_of(SampleConfig, name).help)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GenerateRequest(Request):
    model: Optional[Text] = Field(None, description=MODEL_FIELD)
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


class ScoreRequest(Request):
    model: Optional[Text] = Field(None, description=MODEL_FIELD)
    text: Text = Field(description="The text to score, each character predicted from those before it.")
    skip_unknown: bool = Field(False, description="Leave out characters the model never saw (and count them).")


class ScoreResponse(BaseModel):
    loss: float = Field(description="nats per character")
    bpc: float = Field(description="bits per character")
    perplexity: float
    chars: int = Field(description="characters scored (the first has no context and is not)")
    skipped: Optional[int] = Field(None, description="unknown characters left out, with skip_unknown")


class Health(BaseModel):
    status: Literal["ok"]


class Limits(BaseModel):
    max_length: int = Field(description="the most new characters (`length`, `max_tokens`) one request may ask for")
    max_concurrent: int = Field(description="the most samples each model generates at once; more get 429")
    max_body_bytes: int = Field(description="the largest request body")


class ErrorResponse(BaseModel):
    error: str = Field(description="what happened. how to fix it")


class OpenAIError(BaseModel):
    message: str = Field(description="what happened. how to fix it")
    type: Literal["invalid_request_error", "server_error"]
    param: None = None
    code: None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIError


class CompletionRequest(Request):
    """OpenAI's legacy completions request, the fields a character model can honour. A token is a character."""

    model: Optional[Text] = Field(None, description=MODEL_FIELD)
    prompt: Text = Field("", description="Text to continue; the completion is only the new characters.")
    max_tokens: int = Field(16, ge=0, description="New characters to generate.")
    temperature: float = Field(1.0, ge=0, description="Below 1 is safer, above 1 wilder; 0 = greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Sample only from the likeliest characters that cover top_p.")
    seed: Optional[int] = Field(None, ge=0, le=SEED_LIMIT, description="Same seed, same text as `charrnn sample`.")
    n: int = Field(1, description="Completions per prompt; this server makes one (`n` 1).")
    stream: bool = Field(False, description="Send chunks as server-sent events, then `data: [DONE]`.")


class CompletionChoice(BaseModel):
    text: str
    index: int
    finish_reason: Optional[Literal["length"]] = Field(description="`length` in the last chunk, else null")
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Optional[Usage] = Field(None, description="characters in and out; in a stream's chunks, null")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when its checkpoint was written, in seconds since 1970")
    owned_by: str = "charrnn"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
