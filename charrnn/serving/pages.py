"""The playground: a page, its script and its style, served by the server itself."""

from __future__ import annotations

import importlib.resources

from fastapi import APIRouter
from fastapi.responses import Response

PLAYGROUND = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground.css": ("playground.css", "text/css; charset=utf-8"),
    "/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
}
# The page and its script and style come from this server; nothing is fetched from another host.
PLAYGROUND_POLICY = "default-src 'self'; frame-ancestors 'none'"


def playground_router() -> APIRouter:
    router = APIRouter()
    for route, (name, media_type) in PLAYGROUND.items():
        body = (importlib.resources.files("charrnn.serving") / "playground" / name).read_bytes()
        router.add_api_route(route, page(body, media_type), methods=["GET"], include_in_schema=False)
    return router


def page(body: bytes, media_type: str):
    async def serve_page():
        return Response(body, media_type=media_type, headers={"Content-Security-Policy": PLAYGROUND_POLICY})

    return serve_page
