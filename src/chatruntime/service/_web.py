"""The chat page at ``/``: three static files, read once (off the event loop) and kept.

The page calls the API of the app that serves it, so it needs no CORS; its content security
policy lets it load and call nothing else.
"""

from pathlib import Path

import anyio
from fastapi import APIRouter, Response

STATIC = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_read: dict[str, bytes] = {}

router = APIRouter(include_in_schema=False)


async def _static(name: str) -> Response:
    if name not in _read:
        _read[name] = await anyio.Path(STATIC / name).read_bytes()
    return Response(
        _read[name],
        media_type=_TYPES[name],
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/")
async def page() -> Response:
    """The chat page."""
    return await _static("index.html")


@router.get("/app.js")
async def script() -> Response:
    return await _static("app.js")


@router.get("/app.css")
async def style() -> Response:
    return await _static("app.css")
