"""The HTTP prediction server of one model (FastAPI): ``GET /model``, ``POST /predict``.

The protocol is in docs/model-market.md ("Paid predictions"). This module only speaks HTTP: the
model, the voucher rule and the books are :class:`databright.market.predictions.PredictionService`.
Every refusal is ``{"error": {"code", "message"}}`` (plus the payment terms for a 402) with the
status of :data:`~databright.market.predictions.ERROR_CODES`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from databright.errors import DataBrightError
from databright.market.predictions import (
    VOUCHER_HEADER,
    Item,
    PredictionRefused,
    PredictionService,
    parse_voucher_header,
)

log = logging.getLogger("databright.predict")
MAX_PARTS = 1_000  # files parsed from one multipart body before it is refused outright


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one JSON shape of an HTTP error."""
    return {"error": {"code": code, "message": message}, **details}


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with ``request_too_large`` as soon as it passes ``limit`` bytes (a
    declared Content-Length is judged before anything is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PredictionRefused("request_too_large",
                                f"the body of {declared} bytes exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PredictionRefused("request_too_large", f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _items(request: Request, service: PredictionService) -> list[Item]:
    body = await read_limited(request, service.max_body_bytes)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise PredictionRefused("malformed_input", f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or "rows" not in doc:
            raise PredictionRefused("malformed_input", 'send {"rows": [...]}')
        return service.rows_to_items(doc["rows"])
    if kind == "multipart/form-data":
        if service.media != "image":
            raise PredictionRefused("wrong_media", "this model takes rows: send JSON "
                                    '{"rows": [...]}')

        async def stream() -> AsyncGenerator[bytes, None]:
            yield body

        # the body limit bounds the parts; the item limit is judged on the files found
        parser = MultiPartParser(request.headers, stream(), max_files=MAX_PARTS,
                                 max_fields=16)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            if "too many files" in str(exc).lower():
                raise PredictionRefused("too_many_items", f"more than {MAX_PARTS} files: at "
                                        f"most {service.max_items} a request") from None
            raise PredictionRefused("malformed_input", f"bad multipart body: {exc}") from None
        items: list[Item] = []
        try:
            for _, value in form.multi_items():
                if isinstance(value, UploadFile):
                    items.append(Item(value.filename or f"file {len(items)}",
                                      value.content_type or "application/octet-stream",
                                      await value.read()))
        finally:
            await form.close()
        return items
    raise PredictionRefused("wrong_media", f"send multipart/form-data image files or JSON rows, "
                            f"not {kind or 'no content type'}")


def create_app(service: PredictionService, *, close_on_shutdown: bool = True) -> FastAPI:
    """The app serving ``service``; with ``close_on_shutdown`` its channels are closed (with the
    highest vouchers received) when the server stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_on_shutdown and service.payee is not None:
                try:
                    closed = await run_in_threadpool(service.close_channels)
                    for s in closed:
                        log.info("closed channel %s for %s wei", s.channel_id, s.amount)
                except DataBrightError as exc:
                    log.error("closing channels on shutdown: %s", exc)
            service.close()

    app = FastAPI(title="DataBright prediction server", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(PredictionRefused)
    async def refused(request: Request, exc: PredictionRefused) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc), **exc.details),
                            status_code=exc.http_status)

    @app.exception_handler(DataBrightError)
    async def failed(request: Request, exc: DataBrightError) -> JSONResponse:
        # not a refusal of the request: the chain is busy or unreachable, the store broken...
        code = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()  # chain_busy_error
        return JSONResponse(error_body(code, str(exc)), status_code=exc.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.get("/model")
    def model() -> dict[str, Any]:
        return service.info

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        header = request.headers.get(VOUCHER_HEADER)
        voucher = parse_voucher_header(header) if header is not None else None
        items = await _items(request, service)
        result = await run_in_threadpool(service.predict, items, voucher)
        return {"model_id": service.model_id, **result.to_dict()}

    return app
