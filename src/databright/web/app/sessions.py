"""Who is signed in: the session cookie, looked up in the index (so several server processes
behind a proxy share sessions), and the dependency that guards writes (sign-in + CSRF).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request

from databright.index.web import WebSession
from databright.web.app.errors import ApiError
from databright.web.app.security import check_csrf

COOKIE = "databright_session"
SESSION_TTL = timedelta(hours=12)


@dataclass(frozen=True)
class Viewer:
    """The signed-in account of a request."""

    address: str
    kind: str  # wallet | local
    csrf: str
    chain_id: int
    expires_at: datetime
    account_name: str | None = None


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def viewer_of(request: Request) -> Viewer | None:
    """The request's signed-in viewer, or ``None`` (no cookie, unknown or expired session)."""
    if hasattr(request.state, "viewer"):
        return request.state.viewer  # type: ignore[no-any-return]
    viewer = None
    token = request.cookies.get(COOKIE)
    if token and len(token) <= 128:
        with request.app.state.ctx.read() as s:
            row = s.get(WebSession, _sha(token))
            if row is not None and _aware(row.expires_at) > datetime.now(UTC):
                viewer = Viewer(row.address, row.kind, row.csrf, row.chain_id,
                                _aware(row.expires_at), row.account_name)
    request.state.viewer = viewer
    return viewer


def open_session(request: Request, address: str, kind: str, chain_id: int,
                 account_name: str | None = None) -> tuple[str, Viewer]:
    """Store a new session; returns the cookie's token (only its sha256 is stored)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + SESSION_TTL
    with request.app.state.ctx.dep.index.session() as s:
        s.add(WebSession(token_sha256=_sha(token), address=address, kind=kind, csrf=csrf,
                         chain_id=chain_id, expires_at=expires, account_name=account_name))
    viewer = Viewer(address, kind, csrf, chain_id, expires, account_name)
    request.state.viewer = viewer
    return token, viewer


def close_session(request: Request) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        with request.app.state.ctx.dep.index.session() as s:
            row = s.get(WebSession, _sha(token))
            if row is not None:
                s.delete(row)
    request.state.viewer = None


def require_viewer(request: Request) -> Viewer:
    """Dependency for a cookie-authenticated write: signed in (401) and the CSRF token (403)."""
    viewer = viewer_of(request)
    if viewer is None:
        raise ApiError(401, "not_signed_in", "sign in first (Sign-In with Ethereum)")
    check_csrf(request, viewer.csrf)
    return viewer
