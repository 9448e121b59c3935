"""How much one request may ask of the server: a body size read before the app sees it, a length, a number
of samples, and a prime the fused model reads in one call. GET /v1/limits names them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from charrnn.serving.error_handlers import Refused, error
from charrnn.settings.config import SampleConfig

MAX_BODY_BYTES = 1 << 20
# A prime is read in one call of the fused model, whose logits (samples x prime x vocabulary) are all
# kept: 64 MB of fp32 at most.
MAX_PRIME_LOGITS = 1 << 24


@dataclass(frozen=True)
class ServerLimits:
    max_length: int
    max_concurrent: int
    max_body_bytes: int = MAX_BODY_BYTES

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self, config: SampleConfig, prime: str, vocab_size: int, names: dict[str, str]) -> None:
        """Refuse with 413 what is over the limits; `names` gives the request's own field names (`max_tokens`
        for `length`, `prompt` for `prime`), so that the advice names what the client sent."""
        length, prime_name = names.get("length", "length"), names.get("prime", "prime")
        if config.length > self.max_length:
            raise Refused(
                413,
                f"{length} {config.length:,} is over this server's max_length of {self.max_length:,} "
                f"(GET /v1/limits). Send a {length} of at most {self.max_length:,}",
            )
        if config.num_samples > self.max_concurrent:
            raise Refused(
                413,
                f"num_samples {config.num_samples} is over this server's max_concurrent of {self.max_concurrent} "
                f"(GET /v1/limits). Send a num_samples of at most {self.max_concurrent}",
            )
        if config.num_samples * len(prime) * vocab_size > MAX_PRIME_LOGITS:
            raise Refused(
                413,
                f"a {prime_name} of {len(prime):,} characters for {config.num_samples} samples is more than this "
                f"server reads at once. Send a shorter {prime_name} or a smaller num_samples",
            )


class LimitBody:
    """Reads each request's body before the app does, answering 413 once it is over `limit` bytes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error(
            413,
            f"the request body is over this server's limit of {self.limit:,} bytes. Send a shorter text",
            path=scope["path"],
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
