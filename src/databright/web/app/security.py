"""Headers every response carries (a strict Content-Security-Policy: scripts only from this
origin, no inline script), the CSRF rule for cookie-authenticated writes, and body limits.

CSRF: a signed-in session has a random ``csrf`` token; every write whose authority is the
session cookie must send it back in the ``X-CSRF-Token`` header (pages put it in a ``<meta>``
tag and htmx and ``app.js`` send it). A cross-site form cannot read it, so cannot forge it.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import FastAPI, Request

from databright.web.app.errors import ApiError

CSRF_HEADER = "X-CSRF-Token"
#: bytes of a JSON body the API reads (uploads have their own, larger limit)
MAX_JSON_BYTES = 256 * 1024

CSP_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
)
CSP = "; ".join(CSP_DIRECTIVES)


#: added to every answer (a header the app set itself is kept)
SECURITY_HEADERS = ((b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"))


class HeadersMiddleware:
    """Adds ``headers`` to every answer, keeping a header the app set itself (plain ASGI: no
    per-request task, unlike ``@app.middleware``)."""

    def __init__(self, app: Any, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def served_by() -> tuple[tuple[bytes, bytes], ...]:
    """``X-Served-By: <pid>``, for when several server processes share a port (operators and
    the tests see which one answered)."""
    import os

    return ((b"x-served-by", str(os.getpid()).encode()),)


def install(app: FastAPI) -> None:
    app.add_middleware(HeadersMiddleware, headers=SECURITY_HEADERS)


def check_csrf(request: Request, expected: str) -> None:
    """Refuse (403 ``csrf``) a cookie-authenticated write without the session's token."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent, expected):
        raise ApiError(403, "csrf", f"this write needs the session's {CSRF_HEADER} header")


async def read_json_limited(request: Request, limit: int = MAX_JSON_BYTES) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "request_too_large", f"the body of {declared} bytes exceeds {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "request_too_large", f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: the largest body each kind of request may send (uploads first; everything else is JSON)
BODY_LIMITS = (("/api/tx/propose", 64 * 1024 * 1024 + 64 * 1024),
               ("/api/models/", 8 * 1024 * 1024 + 64 * 1024),
               ("/rpc", 512 * 1024))


def body_limit(path: str) -> int:
    for prefix, limit in BODY_LIMITS:
        if path.startswith(prefix):
            return limit
    return MAX_JSON_BYTES


class BodyLimitMiddleware:
    """Refuse (413, the one error shape) a body larger than its path's limit, by its declared
    Content-Length before the app runs and by counting what a chunked body streams."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        seen = 0
        started = refused = False

        async def counted() -> Any:
            nonlocal seen, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # answer now; the app sees the client gone and whatever it answers is dropped
                    refused = True
                    if not started:
                        started = True
                        await _too_large(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def watch(message: Any) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watch)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"error": {"code": "request_too_large",
                                 "message": f"the body exceeds {limit} bytes"}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
