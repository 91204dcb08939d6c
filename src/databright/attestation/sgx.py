"""The sgx-dcap attestation backend: Intel SGX DCAP quotes (version 3), verified with dcap-qvl.

Verification is offline: the quote's signature chain (enclave report → quoting enclave → PCK
certificate → Intel's root CA) and the collateral (TCB info, QE identity, CRLs, each signed by
Intel) are checked at a given time ``now``; collateral past its validity is refused. The claims are
read from the verified enclave report:

    MRENCLAVE → measurement, MRSIGNER → signer, ISVSVN → isv_svn,
    ATTRIBUTES.FLAGS bit 1 (DEBUG) → debug, REPORTDATA → report_data,
    TCB status and advisories → tcb_status, advisory_ids.

dcap-qvl is the verifier of record; this module only maps its result to :class:`Claims`.
"""

from __future__ import annotations

import json
from typing import Any

import dcap_qvl

from databright.attestation.errors import EvidenceError
from databright.attestation.evidence import SGX_TCB_STATUSES, Claims, Evidence, canonical_json

__all__ = ["KIND", "evidence_from_quote", "parse_claims", "verify"]

KIND = "sgx-dcap"
_DEBUG_FLAG = 0x02  # SGX ATTRIBUTES.FLAGS bit 1
_HEADER_AND_REPORT = 48 + 384  # quote header, then the SGX enclave report body


def verify(evidence: Evidence, *, now: int,
           collateral: str | dict[str, Any] | None = None) -> Claims:
    """The claims of a DCAP quote that verifies against ``collateral`` at Unix time ``now``.

    ``collateral`` (JSON text or object) defaults to the one the evidence carries. The claims the
    quote fixes (all but the TCB status and advisories, which depend on the collateral and time)
    must equal those the evidence records.

    Raises:
        EvidenceError: no collateral, the quote or collateral is malformed, verification fails
            (bad signature, revoked, expired collateral, ...), or the recorded claims differ.
    """
    if evidence.kind != KIND:
        raise EvidenceError(f"not sgx-dcap evidence: {evidence.kind}")
    claims = _verified_claims(evidence.quote, _collateral(collateral, evidence), now)
    recorded = evidence.claims
    for name in ("measurement", "signer", "isv_svn", "debug", "report_data"):
        if getattr(claims, name) != getattr(recorded, name):
            raise EvidenceError(f"sgx-dcap evidence: its claimed {name} differs from its quote")
    return claims


def evidence_from_quote(quote: bytes, *, collateral: str | dict[str, Any], now: int,
                        embed_collateral: bool = True) -> Evidence:
    """Evidence for a DCAP quote, its claims read from verifying it at ``now``.

    With ``embed_collateral`` the evidence carries the collateral, so it verifies offline.
    """
    coll = _collateral(collateral, None)
    claims = _verified_claims(quote, coll, now)
    return Evidence(kind=KIND, quote=quote, claims=claims,
                    collateral=json.loads(coll) if embed_collateral else None)


def parse_claims(quote: bytes) -> dict[str, Any]:
    """The enclave report of a quote, parsed but NOT verified (for display only)."""
    report = _parse(quote).report
    return {"measurement": report.mr_enclave.hex(), "signer": report.mr_signer.hex(),
            "debug": bool(report.attributes[0] & _DEBUG_FLAG),
            "report_data": report.report_data.hex()}


def _collateral(collateral: str | dict[str, Any] | None, evidence: Evidence | None) -> str:
    if collateral is None and evidence is not None:
        collateral = evidence.collateral
    if collateral is None:
        raise EvidenceError("sgx-dcap: no collateral to verify the quote against (TCB info, "
                            "QE identity, certificate chains, CRLs)")
    if isinstance(collateral, dict):
        return canonical_json(collateral).decode("ascii")
    return collateral


def _parse(quote: bytes) -> Any:
    if len(quote) < _HEADER_AND_REPORT:
        raise EvidenceError(f"sgx-dcap: a quote of {len(quote)} bytes is too short")
    try:
        parsed = dcap_qvl.parse_quote(quote)
    except ValueError as exc:
        raise EvidenceError(f"sgx-dcap: not a DCAP quote: {_one_line(exc)}") from None
    if not parsed.is_sgx():
        raise EvidenceError(f"sgx-dcap: a {parsed.quote_type()} quote, not an SGX one")
    return parsed


def _verified_claims(quote: bytes, collateral: str, now: int) -> Claims:
    if type(now) is not int or now < 0:
        raise EvidenceError("sgx-dcap: `now` must be a Unix time in seconds")
    _parse(quote)
    try:
        coll = dcap_qvl.QuoteCollateralV3.from_json(collateral)
    except ValueError as exc:
        raise EvidenceError(f"sgx-dcap: unreadable collateral: {_one_line(exc)}") from None
    try:
        verified = dcap_qvl.verify(quote, coll, now)
        result = json.loads(verified.to_json())
    except ValueError as exc:
        raise EvidenceError(f"sgx-dcap: the quote does not verify: {_one_line(exc)}") from None
    report = (result.get("report") or {}).get("SgxEnclave")
    if not isinstance(report, dict):
        raise EvidenceError("sgx-dcap: the verified report is not an SGX enclave report")
    status = result.get("status")
    if status not in SGX_TCB_STATUSES:
        raise EvidenceError(f"sgx-dcap: unknown TCB status {status!r:.40}")
    try:
        attributes = bytes.fromhex(report["attributes"])
        return Claims(measurement=report["mr_enclave"].lower(),
                      signer=report["mr_signer"].lower(), isv_svn=int(report["isv_svn"]),
                      debug=bool(attributes[0] & _DEBUG_FLAG), tcb_status=status,
                      report_data=bytes.fromhex(report["report_data"]),
                      advisory_ids=tuple(str(a) for a in result.get("advisory_ids") or ()))
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise EvidenceError(f"sgx-dcap: unexpected verified report: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
