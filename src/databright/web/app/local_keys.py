"""Keys of local sign-ins (the embedded chain only): an account of the home's keystore, unlocked
with its password at sign-in and kept in this process's memory for the session, so the server
signs that session's transactions and comments. Never written anywhere; a restart forgets them
(the viewer signs in again).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from fastapi import Request

from databright.web.app.errors import ApiError
from databright.web.app.sessions import COOKIE, Viewer

if TYPE_CHECKING:
    from databright.chain.accounts import Signer


def _session_key(request: Request) -> str:
    token = request.cookies.get(COOKIE, "")
    return hashlib.sha256(token.encode()).hexdigest()


def remember(request: Request, token: str, signer: Signer) -> None:
    """Keep ``signer`` for the session whose cookie token is ``token``."""
    request.app.state.ctx.local_keys[hashlib.sha256(token.encode()).hexdigest()] = signer


def forget(request: Request) -> None:
    request.app.state.ctx.local_keys.pop(_session_key(request), None)


def signer_for(request: Request, viewer: Viewer) -> Signer:
    """The unlocked key of a local session.

    Raises:
        ApiError: 403 when the session is a wallet's (its wallet signs), 401 when the server no
            longer holds the key (it restarted: sign in again).
    """
    if viewer.kind != "local":
        raise ApiError(403, "wallet_signs", "this session's wallet signs its own transactions")
    signer = request.app.state.ctx.local_keys.get(_session_key(request))
    if signer is None:
        raise ApiError(401, "sign_in_again", "the server restarted since this local sign-in: "
                       "sign in again")
    return signer  # type: ignore[no-any-return]
