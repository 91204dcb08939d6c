"""The web app's one error shape: ``{"error": {"code", "message"}}`` with the right status.

Every refusal the app makes raises :class:`ApiError` (or a :class:`DataBrightError` from the
layers below, mapped by its ``http_status``); FastAPI's own validation errors and 404/405 are
answered in the same shape. HTML pages get the same status with a short error page.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from databright.errors import DataBrightError

log = logging.getLogger("databright.web")


class ApiError(Exception):
    """A refusal: ``code`` (snake_case), a one-line ``message``, an HTTP ``status``."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one JSON shape of an HTTP error."""
    return {"error": {"code": code, "message": message, **details}}


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api", "/rpc", "/openapi", "/static", "/blobs")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _respond(request: Request, status: int, code: str, message: str,
             **details: Any) -> Response:
    if _wants_html(request):
        from databright.web.app.templating import render_error

        return render_error(request, status, code, message)
    return JSONResponse(error_body(code, message, **details), status_code=status)


def _code_of(exc: DataBrightError) -> str:
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "error"


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _respond(request, exc.status, exc.code, exc.message, **exc.details)

    @app.exception_handler(DataBrightError)
    async def domain_error(request: Request, exc: DataBrightError) -> Response:
        return _respond(request, exc.http_status, _code_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return _respond(request, 422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _respond(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _respond(request, 500, "internal_error", "the server failed on this request")


def html_error_page(status: int, code: str, message: str) -> HTMLResponse:
    """A bare error page, for when templates are unavailable."""
    from html import escape

    return HTMLResponse(f"<!doctype html><title>{status}</title><h1>{status}</h1>"
                        f"<p>{escape(code)}: {escape(message)}</p>", status_code=status)
