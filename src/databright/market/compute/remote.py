"""``databright coordinator verify URL|ADDRESS``: judge a coordinator's attestation evidence.

With an address, the evidence it registered on chain is checked (REPORTDATA binds the enclave
key and the registration nonce). With a URL, the live coordinator is challenged with a fresh
random nonce, so a recorded answer cannot be replayed; the enclave it names must be the one
registered on chain.
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any

from databright.errors import UsageError
from databright.market.compute.verify import verify_evidence_cid
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.attestation import Policy

__all__ = ["fetch_evidence", "verify_coordinator"]

_MAX_EVIDENCE = 1 << 20


def fetch_evidence(url: str, nonce: bytes, timeout: float = 10.0) -> tuple[str, bytes]:
    """``(enclave address, evidence bytes)`` a coordinator at ``url`` answers for ``nonce``.

    Raises:
        UsageError: unreachable, or an answer that is not the protocol's.
    """
    import httpx

    try:
        r = httpx.get(url.rstrip("/") + "/attestation", params={"nonce": nonce.hex()},
                      timeout=timeout)
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach the coordinator at {url}: {exc}") from None
    if r.status_code != 200 or len(r.content) > _MAX_EVIDENCE:
        raise UsageError(f"the coordinator at {url} answered {r.status_code} to /attestation")
    try:
        data = r.json()
        enclave = str(data["enclave_address"])
        raw = base64.b64decode(data["evidence_b64"], validate=True)
        if data.get("nonce") != nonce.hex():
            raise ValueError("the answer is for another nonce")
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"the coordinator at {url} sent no valid attestation answer") from None
    return enclave, raw


def verify_coordinator(dep: Deployment, target: str, policy: Policy) -> dict[str, Any]:
    """``{"enclave", "ok", "detail", "kind", "source"}`` for a URL or an enclave address."""
    if target.startswith(("http://", "https://")):
        nonce = secrets.token_bytes(32)
        enclave, raw = fetch_evidence(target, nonce)
        ok, detail, kind = verify_evidence_cid(dep, enclave, policy, nonce=nonce, raw=raw)
        try:
            registered = dep.compute.get_coordinator(enclave)
        except Exception:  # noqa: BLE001 - unknown enclave: a refusal, not a crash
            ok, detail = False, f"{detail}; and {enclave} is not registered in this home's market"
        else:
            detail += f"; registered on chain as {registered.kind} by {registered.operator}"
        return {"enclave": enclave, "ok": ok, "detail": detail, "kind": kind, "source": target}
    if not (target.startswith("0x") and len(target) == 42):
        raise UsageError(f"give a coordinator URL (http://…) or enclave address (0x…), "
                         f"not {target!r}")
    ok, detail, kind = verify_evidence_cid(dep, target, policy)
    return {"enclave": target, "ok": ok, "detail": detail, "kind": kind, "source": "chain"}
