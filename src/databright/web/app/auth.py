"""Signing in: Sign-In with Ethereum from a browser wallet, and (embedded chain only) a local
sign-in with an account of the home's keystore.

* ``GET /api/auth/nonce`` — a fresh single-use nonce and the fields of the message to sign.
* ``POST /api/auth/login`` ``{message, signature}`` — verifies the EIP-4361 message
  (:mod:`databright.market.siwe`), sets the ``databright_session`` cookie (HttpOnly,
  SameSite=Lax, Secure over https), answers ``{address, csrf, kind}``.
* ``POST /api/auth/logout`` (CSRF), ``GET /api/auth/me``.
* ``GET /signin`` and ``POST /api/auth/local`` ``{account, password}`` — embedded chain only
  (404 elsewhere): the server unlocks the keystore account and signs for the session; wrong
  password 401; after :data:`MAX_FAILURES` wrong passwords for one account within
  :data:`FAILURE_WINDOW` seconds, 429 until the window passes.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from databright.errors import NotFoundError, UsageError, WrongPasswordError
from databright.market import siwe
from databright.web.app import local_keys
from databright.web.app.errors import ApiError
from databright.web.app.security import read_json_limited
from databright.web.app.sessions import (
    COOKIE,
    SESSION_TTL,
    close_session,
    open_session,
    require_viewer,
    viewer_of,
)
from databright.web.app.templating import render

router = APIRouter()
M = TypeVar("M", bound=BaseModel)

MAX_FAILURES = 5
FAILURE_WINDOW = 60.0
MESSAGE_TTL = timedelta(minutes=5)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Strict):
    message: str = Field(max_length=siwe.MAX_MESSAGE_CHARS)
    signature: str = Field(max_length=200)


class LocalBody(_Strict):
    account: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SignedIn(BaseModel):
    address: str
    csrf: str
    kind: str
    account_name: str | None = None


class NonceOut(BaseModel):
    nonce: str
    domain: str
    uri: str
    chain_id: int
    version: str
    statement: str
    issued_at: str
    expiration_time: str


class Me(BaseModel):
    signed_in: bool
    address: str | None = None
    kind: str | None = None
    chain_id: int | None = None
    account_name: str | None = None
    expires_at: str | None = None


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body that a handler reads itself (size-limited);
    nested models are inlined (a ``$defs`` reference would not resolve in the OpenAPI file)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline(schema, schema.get("$defs", {}))}}}}


async def read_model(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``: 415 unless JSON (a cross-site form cannot send it
    without a preflight), 413 past the size limit, 422 when it does not fit the model."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "json_required", "send the body as application/json")
    raw = await read_json_limited(request)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        message = f"{where}: {errors[0]['msg']}" if where else "invalid JSON"
        raise ApiError(422, "invalid_request", message) from None


def server_domain(request: Request) -> str:
    """The host[:port] sign-in messages must name: the configured one, else the Host header."""
    configured = request.app.state.ctx.domain
    return str(configured or request.headers.get("host") or request.url.netloc)


def server_origin(request: Request) -> str:
    return f"{request.url.scheme}://{server_domain(request)}"


def chain_id_of(request: Request) -> int:
    ctx = request.app.state.ctx
    if ctx.config.chain_id is not None:
        return int(ctx.config.chain_id)
    with ctx.chain_lock:
        return int(ctx.dep.chain.chain_id)


def _set_cookie(request: Request, response: JSONResponse, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")


@router.get("/api/auth/nonce", response_model=NonceOut, tags=["auth"])
def nonce(request: Request) -> NonceOut:
    """A new single-use nonce (5 minutes) and the fields of the EIP-4361 message to sign."""
    now = datetime.now(UTC).replace(microsecond=0)
    with request.app.state.ctx.dep.index.session() as s:
        row = siwe.issue_nonce(s, now)
    return NonceOut(nonce=row.nonce, domain=server_domain(request), uri=server_origin(request),
                    chain_id=chain_id_of(request), version="1", statement=siwe.STATEMENT,
                    issued_at=siwe.format_time(now),
                    expiration_time=siwe.format_time(now + MESSAGE_TTL))


def _login(request: Request, body: LoginBody) -> tuple[str, SignedIn]:
    ctx = request.app.state.ctx
    try:
        with ctx.dep.index.session() as s:
            msg = siwe.verify(s, body.message, body.signature, domain=server_domain(request),
                              origin=server_origin(request), chain_id=chain_id_of(request))
    except siwe.SiweError as exc:
        raise ApiError(401, exc.code, str(exc)) from None
    token, viewer = open_session(request, msg.address, "wallet", msg.chain_id)
    return token, SignedIn(address=viewer.address, csrf=viewer.csrf, kind="wallet")


@router.post("/api/auth/login", response_model=SignedIn, tags=["auth"],
             openapi_extra=body_schema(LoginBody))
async def login(request: Request) -> JSONResponse:
    """Sign in with a signed EIP-4361 message; sets the session cookie."""
    body = await read_model(request, LoginBody)
    token, out = await run_in_threadpool(_login, request, body)
    response = JSONResponse(out.model_dump())
    _set_cookie(request, response, token)
    return response


@router.post("/api/auth/logout", tags=["auth"])
def logout(request: Request) -> JSONResponse:
    """End the session (needs the CSRF header); forgets a local session's key."""
    require_viewer(request)
    local_keys.forget(request)
    close_session(request)
    response = JSONResponse({"signed_in": False})
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/api/auth/me", response_model=Me, tags=["auth"])
def me(request: Request) -> Me:
    """Who this request is signed in as (``signed_in`` false when nobody)."""
    v = viewer_of(request)
    if v is None:
        return Me(signed_in=False)
    return Me(signed_in=True, address=v.address, kind=v.kind, chain_id=v.chain_id,
              account_name=v.account_name, expires_at=v.expires_at.isoformat())


# -- local sign-in (embedded chain only) ------------------------------------------------------
class _Failures:
    """Recent wrong passwords per account name (in this process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {}

    def check(self, name: str) -> None:
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.times.get(name, []) if now - t < FAILURE_WINDOW]
            self.times[name] = recent
            if len(recent) >= MAX_FAILURES:
                wait = int(FAILURE_WINDOW - (now - recent[0])) + 1
                raise ApiError(429, "too_many_attempts", f"too many wrong passwords for "
                               f"{name!r}: try again in {wait} s")

    def failed(self, name: str) -> None:
        with self.lock:
            self.times.setdefault(name, []).append(time.monotonic())

    def clear(self, name: str) -> None:
        with self.lock:
            self.times.pop(name, None)


def _failures(request: Request) -> _Failures:
    state = request.app.state
    if not hasattr(state, "local_failures"):
        state.local_failures = _Failures()
    return state.local_failures  # type: ignore[no-any-return]


def _require_embedded(request: Request) -> None:
    if not request.app.state.ctx.is_embedded:
        raise ApiError(404, "not_found", "local sign-in exists only on the embedded chain: "
                       "sign in with your wallet")


@router.get("/signin", response_class=HTMLResponse, include_in_schema=False)
def signin_page(request: Request) -> HTMLResponse:
    """The local sign-in page: the home's keystore accounts and a password field."""
    _require_embedded(request)
    accounts = request.app.state.ctx.dep.keystore.list()
    return render(request, "signin.html", {"accounts": accounts})


def _local(request: Request, body: LocalBody) -> tuple[str, SignedIn]:
    ctx = request.app.state.ctx
    failures = _failures(request)
    failures.check(body.account)
    try:
        signer = ctx.dep.keystore.unlock(body.account, body.password)
    except WrongPasswordError:
        failures.failed(body.account)
        raise ApiError(401, "wrong_password", f"wrong password for {body.account!r}") from None
    except (NotFoundError, UsageError):
        failures.failed(body.account)
        raise ApiError(401, "unknown_account", f"no account {body.account!r} in this home's "
                       "keystore") from None
    failures.clear(body.account)
    token, viewer = open_session(request, signer.address, "local", chain_id_of(request),
                                 account_name=body.account)
    local_keys.remember(request, token, signer)
    return token, SignedIn(address=viewer.address, csrf=viewer.csrf, kind="local",
                           account_name=body.account)


@router.post("/api/auth/local", response_model=SignedIn, tags=["auth"],
             openapi_extra=body_schema(LocalBody))
async def local_login(request: Request) -> JSONResponse:
    """Sign in as an account of the home's keystore (embedded chain only)."""
    _require_embedded(request)
    body = await read_model(request, LocalBody)
    token, out = await run_in_threadpool(_local, request, body)
    response = JSONResponse(out.model_dump())
    _set_cookie(request, response, token)
    return response
