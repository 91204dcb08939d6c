"""The coordinator's HTTP server for workers (FastAPI) over a :class:`TaskBoard`.

The protocol is docs/compute-protocol.md. Every ``/v1`` request is signed by the worker's
account (:mod:`databright.chain.requests`); the server checks, in this order: the body size,
the signature, ``authorize(address)`` (registered, not banned), then the timestamp window and
the nonce. Every refusal is ``{"error": {"code", "message"}}`` with the status of
:data:`ERROR_CODES`. Results are raw safetensors bytes, checked structurally and never
unpickled.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from databright.chain.requests import BadRequestSignature, SignedHeaders, recover_request
from databright.compute.board import BoardError, Lease, TaskBoard
from databright.compute.payload import MalformedPayload, check_payload
from databright.errors import DataBrightError, NotFoundError

__all__ = ["ERROR_CODES", "Limits", "NonceStore", "Refused", "create_app", "error_body"]

#: Every error code the server answers with, and its HTTP status.
ERROR_CODES: dict[str, int] = {
    "missing_signature": 401, "bad_signature": 401,
    "forbidden": 403, "not_leased": 403,
    "unknown_lease": 404, "unknown_blob": 404, "not_found": 404,
    "method_not_allowed": 405,
    "replayed_nonce": 409, "stale_timestamp": 409, "already_committed": 409,
    "not_committed": 409, "already_revealed": 409, "reveal_too_early": 409,
    "reveal_mismatch": 409,
    "lease_expired": 410,
    "request_too_large": 413, "payload_too_large": 413,
    "malformed": 422, "malformed_payload": 422,
    "busy": 429,
    "internal": 500,
}
_HEX_NONCE = re.compile(r"[0-9a-f]{32,128}")
_LEASE_ID = re.compile(r"[0-9a-f]{32}")

Authorize = Callable[[str], "str | None"]
Attest = Callable[[bytes], "tuple[bytes, str]"]
FetchBlob = Callable[[str], bytes]


@dataclass(frozen=True)
class Limits:
    """The server's explicit limits (all documented in the protocol)."""

    max_payload_bytes: int = 64 * 1024 * 1024  # a reveal's body
    max_json_bytes: int = 64 * 1024  # any other body
    clock_skew_seconds: int = 120  # a request's timestamp is within this of the server's clock
    max_nonces_per_address: int = 10_000  # nonces remembered per address and window
    retry_after_seconds: float = 1.0  # what an idle worker is told to wait
    long_poll_seconds: float = 2.0  # how long a lease request waits for a task to be posted


class Refused(DataBrightError):
    """A refusal with a wire code (a key of :data:`ERROR_CODES`)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = ERROR_CODES[code]
        self.details = details


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one JSON shape of an error."""
    return {"error": {"code": code, "message": message}, **details}


class NonceStore:
    """Nonces seen per address while their timestamp is inside the window (thread-safe)."""

    def __init__(self, window: int, per_address: int) -> None:
        self.window = window
        self.per_address = per_address
        self._seen: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def use(self, address: str, nonce: str, timestamp: int, now: float) -> None:
        """Record a nonce, or refuse a stale timestamp or a nonce seen before."""
        if abs(now - timestamp) > self.window:
            raise Refused("stale_timestamp", f"the timestamp {timestamp} is more than "
                          f"{self.window} s from the coordinator's clock {int(now)}")
        with self._lock:
            seen = self._seen.setdefault(address, {})
            if nonce in seen:
                raise Refused("replayed_nonce", "this nonce was already used: sign each request "
                              "with a fresh nonce")
            for old in [n for n, t in seen.items() if t < now - self.window]:
                del seen[old]  # outside the window the timestamp check refuses it anyway
            if len(seen) >= self.per_address:
                raise Refused("busy", f"more than {self.per_address} requests in "
                              f"{2 * self.window} s")
            seen[nonce] = timestamp


async def _read_limited(request: Request, limit: int, code: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(code, f"the body of {declared} bytes exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(code, f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _target(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        raise Refused("malformed", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused("malformed", "the body is a JSON object")
    return doc


def _describe(doc: dict[str, Any]) -> None:
    """Check a worker's self-description (informational: its registration on chain decides)."""
    cls, threads = doc.get("determinism_class", ""), doc.get("threads", 1)
    if not isinstance(cls, str) or len(cls) > 128 or type(threads) is not int or not (
            1 <= threads <= 1024):
        raise Refused("malformed", 'send {"determinism_class": "<hex>", "threads": <1..1024>}')


def _lease_json(lease: Lease, now: float, max_payload: int) -> dict[str, Any]:
    return {"lease_id": lease.lease_id, "task_id": lease.task_id,
            "spec_b64": base64.b64encode(lease.spec).decode(),
            "spec_sha256": hashlib.sha256(lease.spec).hexdigest(),
            "cids": sorted(lease.cids), "deadline_seconds": round(lease.deadline - now, 3),
            "max_payload_bytes": max_payload}


class _Waker:
    """Wakes the lease requests waiting on this server's event loop when the board changes
    (a task posted, a replica assigned): one asyncio event, replaced after each wake-up, so a
    long-polling request holds no thread while it waits."""

    def __init__(self, board: TaskBoard) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        board.watch(self._from_board)

    def current(self) -> asyncio.Event:
        """The event the next change sets (call on the event loop)."""
        if self.event is None or self.loop is not asyncio.get_running_loop():
            self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()
        return self.event

    def _fire(self) -> None:
        if self.event is not None:
            self.event.set()
            self.event = asyncio.Event()

    def _from_board(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fire)


def create_app(board: TaskBoard, fetch_blob: FetchBlob, authorize: Authorize, *,
               attestation: Attest | None = None, limits: Limits | None = None,
               now: Callable[[], float] = time.time) -> FastAPI:
    """The workers' API over ``board``.

    Args:
        board: the tasks (thread-safe; called from the server's threads).
        fetch_blob: ``fetch_blob(cid) -> bytes``; raises :class:`NotFoundError` (or KeyError)
            for a blob it does not hold. Only CIDs of the caller's live leases are asked.
        authorize: ``authorize(address) -> None`` for a registered worker in good standing,
            else the reason it is refused (unregistered, banned from the job, ...).
        attestation: ``attestation(nonce) -> (evidence bytes, enclave address)``.
        limits: see :class:`Limits`; the reveal limit is also capped by the board's.
        now: wall-clock seconds, for request timestamps.
    """
    limits = limits or Limits()
    max_payload = min(limits.max_payload_bytes, board.max_payload_bytes)
    waker = _Waker(board)
    nonces = NonceStore(limits.clock_skew_seconds, limits.max_nonces_per_address)
    app = FastAPI(title="DataBright coordinator", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(DataBrightError)
    async def _refused(_: Request, exc: DataBrightError) -> JSONResponse:
        if isinstance(exc, Refused):
            code, details = exc.code, exc.details
        elif isinstance(exc, BoardError | BadRequestSignature | MalformedPayload):
            code, details = exc.code, {}
        else:  # the coordinator's own failure (its store, its chain), not the worker's
            code, details = "internal", {}
        status = ERROR_CODES.get(code, 500)
        return JSONResponse(error_body(code, str(exc), **details), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "malformed")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=ERROR_CODES[code])

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("malformed", "malformed request"), status_code=422)

    async def authenticated(request: Request, limit: int, code: str) -> tuple[str, bytes]:
        body = await _read_limited(request, limit, code)
        signed: SignedHeaders = recover_request(request.method, _target(request), body,
                                                request.headers)
        # registration before the nonce book: only registered addresses take memory there
        reason = await run_in_threadpool(authorize, signed.address)
        if reason is not None:
            raise Refused("forbidden", f"{signed.address} may not work here: {reason}")
        nonces.use(signed.address, signed.nonce, signed.timestamp, now())
        return signed.address, body

    @app.get("/attestation")
    async def attest(nonce: str = "") -> dict[str, Any]:
        if attestation is None:
            raise Refused("not_found", "this coordinator publishes no attestation")
        if not _HEX_NONCE.fullmatch(nonce):
            raise Refused("malformed", "?nonce= is 32 to 128 lower-case hex digits")
        evidence, enclave = await run_in_threadpool(attestation, bytes.fromhex(nonce))
        return {"nonce": nonce, "enclave_address": enclave,
                "evidence_b64": base64.b64encode(evidence).decode()}

    @app.post("/v1/lease")
    async def lease(request: Request) -> dict[str, Any]:
        address, body = await authenticated(request, limits.max_json_bytes, "request_too_large")
        _describe(_json_object(body))
        # long poll: wait (holding no thread) until a task is posted for this account, so a
        # worker takes a step's task as soon as it exists instead of after its next poll
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.long_poll_seconds
        while True:
            changed = waker.current()  # taken before looking, so no change is missed
            got = await run_in_threadpool(board.lease, address)
            if got is not None:
                return {"lease": _lease_json(got, board.clock(), max_payload)}
            left = deadline - loop.time()
            if left <= 0:
                return {"lease": None, "retry_after_seconds": limits.retry_after_seconds}
            try:
                await asyncio.wait_for(changed.wait(), timeout=left)
            except TimeoutError:
                pass

    @app.get("/v1/blobs/{cid}")
    async def blob(cid: str, request: Request) -> Response:
        address, _ = await authenticated(request, limits.max_json_bytes, "request_too_large")
        allowed = await run_in_threadpool(board.allowed_cids, address)
        if cid not in allowed:
            raise Refused("not_leased", "this blob is not part of a live lease of yours")
        try:
            data = await run_in_threadpool(fetch_blob, cid)
        except (NotFoundError, KeyError):
            raise Refused("unknown_blob", f"the coordinator does not hold {cid}") from None
        return Response(bytes(data), media_type="application/octet-stream")

    @app.post("/v1/commit")
    async def commit(request: Request) -> dict[str, Any]:
        address, body = await authenticated(request, limits.max_json_bytes, "request_too_large")
        doc = _json_object(body)
        lease_id, digest = doc.get("lease_id"), doc.get("sha256")
        if not isinstance(lease_id, str) or not isinstance(digest, str):
            raise Refused("malformed", 'send {"lease_id": ..., "sha256": ...}')
        is_open = await run_in_threadpool(board.commit, address, lease_id, digest)
        return {"lease_id": lease_id, "reveals_open": is_open}

    @app.post("/v1/reveal")
    async def reveal(request: Request, lease: str = "") -> dict[str, Any]:
        address, body = await authenticated(request, max_payload, "payload_too_large")
        if not _LEASE_ID.fullmatch(lease):
            raise Refused("malformed", "?lease= names the lease being revealed")
        check_payload(body)
        try:
            await run_in_threadpool(board.reveal, address, lease, body)
        except BoardError as exc:
            if exc.code == "reveal_too_early":
                raise Refused(exc.code, str(exc),
                              retry_after_seconds=limits.retry_after_seconds) from None
            raise
        return {"lease_id": lease, "accepted": True}

    @app.get("/v1/status")
    async def status(request: Request) -> dict[str, Any]:
        address, _ = await authenticated(request, limits.max_json_bytes, "request_too_large")
        tasks = await run_in_threadpool(board.status)
        mine = await run_in_threadpool(board.leases_of, address)
        clock = board.clock()
        return {
            "tasks": {"open": sum(not t.done for t in tasks), "done": sum(t.done for t in tasks),
                      "short_of_replicas": sum(t.missing > 0 for t in tasks)},
            "leases": [{"lease_id": lid, "state": state,
                        "deadline_seconds": round(deadline - clock, 3)}
                       for lid, state, deadline in mine],
            "limits": {"max_payload_bytes": max_payload, "max_json_bytes": limits.max_json_bytes,
                       "clock_skew_seconds": limits.clock_skew_seconds},
            # e.g. a spot-checked job's seed commitment, published before its first task
            "job": dict(board.published),
        }

    return app
