"""Evidence: a backend's quote and the claims parsed from it, in canonical bytes for the store.

An :class:`Evidence` is what a coordinator publishes (its CID goes on chain with its enclave
address). Its canonical bytes are compact JSON, keys sorted, ASCII only, byte strings as
lowercase hex::

    {"claims":{"advisory_ids":[],"debug":false,"isv_svn":0,"measurement":"<64 hex>",
     "report_data":"<128 hex>","signer":"<64 hex>","tcb_status":"Simulated"},
     "collateral":null,"format":"databright-evidence/1","kind":"software","quote":"<hex>"}

The claims are a convenience for readers: a verifier never trusts them, it re-derives them from
the quote (:func:`databright.attestation.verify_evidence`). Parsing accepts exactly the bytes
:meth:`Evidence.to_bytes` writes, so one evidence has one CID.

REPORTDATA (64 bytes, the enclave's user data in the quote) binds the coordinator's secp256k1
enclave address and the verifier's nonce::

    REPORTDATA = address (20 bytes) || nonce (32 bytes) || b"databright/1" (12 bytes)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from databright.attestation.errors import EvidenceError

__all__ = [
    "FORMAT", "KINDS", "MAX_EVIDENCE_BYTES", "REPORT_DATA_TAG", "SGX_TCB_STATUSES", "SIMULATED",
    "Claims", "Evidence", "canonical_json", "normalize_address", "normalize_nonce",
    "registration_nonce", "report_data",
]

FORMAT = "databright-evidence/1"
KINDS = ("software", "sgx-dcap")
SIMULATED = "Simulated"
# The TCB statuses Intel's verification can give (dcap-qvl's names).
SGX_TCB_STATUSES = (
    "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
    "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked",
)
REPORT_DATA_TAG = b"databright/1"
# A DCAP quote with its certificate chain is ~5 KB and its collateral ~15 KB.
MAX_EVIDENCE_BYTES = 256 * 1024

_HEX32 = re.compile(r"[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{128}")
_ADVISORY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ADDRESS = re.compile(r"(0x)?[0-9a-fA-F]{40}")
_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
_MAX_DEPTH = 8


def canonical_json(value: Any) -> bytes:
    """Compact JSON, keys sorted, ASCII only, no NaN: the one byte form of a JSON value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def normalize_address(address: bytes | str) -> bytes:
    """A 20-byte address from bytes or hex (``0x`` optional, any case; no checksum check)."""
    if isinstance(address, bytes):
        if len(address) != 20:
            raise EvidenceError(f"an enclave address is 20 bytes, not {len(address)}")
        return address
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise EvidenceError(f"not an enclave address (20 bytes of hex): {address!r:.60}")
    return bytes.fromhex(address.removeprefix("0x"))


def normalize_nonce(nonce: bytes | str) -> bytes:
    """A 32-byte verifier nonce from bytes or 64 hex digits (``0x`` optional)."""
    if isinstance(nonce, str):
        text = nonce.removeprefix("0x").lower()
        if not _HEX32.fullmatch(text):
            raise EvidenceError(f"a nonce is 32 bytes (64 hex digits): {nonce!r:.80}")
        return bytes.fromhex(text)
    if not isinstance(nonce, bytes) or len(nonce) != 32:
        raise EvidenceError("a nonce is 32 bytes")
    return nonce


def registration_nonce(chain_id: int, market: bytes | str) -> bytes:
    """The nonce of evidence registered on chain, where no verifier can send a fresh challenge:
    sha256(b"databright-coordinator-registration/1" || chain id (32 bytes, big-endian) || the
    ComputeMarket's address (20 bytes)). It ties the evidence to one deployment."""
    if type(chain_id) is not int or not 0 <= chain_id < 2**256:
        raise EvidenceError("a chain id is a non-negative 256-bit integer")
    return hashlib.sha256(b"databright-coordinator-registration/1" + chain_id.to_bytes(32, "big")
                          + normalize_address(market)).digest()


def report_data(enclave_address: bytes | str, nonce: bytes | str) -> bytes:
    """REPORTDATA = address (20) || nonce (32) || ``b"databright/1"`` (12): 64 bytes."""
    return normalize_address(enclave_address) + normalize_nonce(nonce) + REPORT_DATA_TAG


@dataclass(frozen=True)
class Claims:
    """What a quote says about the code that produced it.

    Attributes:
        measurement: MRENCLAVE (sgx-dcap) or the software measurement, 64 lowercase hex.
        signer: MRSIGNER (sgx-dcap) or the platform key's id (sha256 of its compressed public
            key), 64 lowercase hex.
        isv_svn: the enclave's security version number (0..65535).
        debug: the enclave runs in debug mode (its memory is readable by the host).
        tcb_status: Intel's TCB status, or "Simulated" for the software backend.
        report_data: the 64 bytes the enclave chose to bind (see :func:`report_data`).
        advisory_ids: Intel security advisories that apply to the platform (sgx-dcap).
    """

    measurement: str
    signer: str
    isv_svn: int
    debug: bool
    tcb_status: str
    report_data: bytes
    advisory_ids: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "advisory_ids": list(self.advisory_ids), "debug": self.debug,
            "isv_svn": self.isv_svn, "measurement": self.measurement,
            "report_data": self.report_data.hex(), "signer": self.signer,
            "tcb_status": self.tcb_status,
        }

    @classmethod
    def from_json(cls, data: object) -> Claims:
        """Claims from their JSON object; refuses anything else with the reason."""
        obj = _exact_object(data, "claims", {"advisory_ids", "debug", "isv_svn", "measurement",
                                             "report_data", "signer", "tcb_status"})
        for name in ("measurement", "signer"):
            if not isinstance(obj[name], str) or not _HEX32.fullmatch(obj[name]):
                raise EvidenceError(f"evidence claims: {name} is not 32 bytes of lowercase hex")
        if not isinstance(obj["report_data"], str) or not _HEX64.fullmatch(obj["report_data"]):
            raise EvidenceError("evidence claims: report_data is not 64 bytes of lowercase hex")
        svn = obj["isv_svn"]
        if type(svn) is not int or not 0 <= svn <= 0xFFFF:
            raise EvidenceError("evidence claims: isv_svn is not an integer in 0..65535")
        if type(obj["debug"]) is not bool:
            raise EvidenceError("evidence claims: debug is not true or false")
        status = obj["tcb_status"]
        if status not in (SIMULATED, *SGX_TCB_STATUSES):
            raise EvidenceError(f"evidence claims: unknown tcb_status {status!r:.40}")
        advisories = obj["advisory_ids"]
        if not isinstance(advisories, list) or not all(
                isinstance(a, str) and _ADVISORY.fullmatch(a) for a in advisories):
            raise EvidenceError("evidence claims: advisory_ids is not a list of advisory ids")
        return cls(measurement=obj["measurement"], signer=obj["signer"], isv_svn=svn,
                   debug=obj["debug"], tcb_status=status,
                   report_data=bytes.fromhex(obj["report_data"]),
                   advisory_ids=tuple(advisories))


@dataclass(frozen=True)
class Evidence:
    """A backend's quote, its claims, and (sgx-dcap) the collateral to verify it offline.

    Attributes:
        kind: "software" or "sgx-dcap".
        quote: the raw quote bytes of the backend.
        claims: what the producer read from the quote (re-derived by every verifier).
        collateral: sgx-dcap only, optional: the quote's collateral (TCB info, QE identity,
            certificate chains, CRLs) as the JSON object dcap-qvl reads.
    """

    kind: str
    quote: bytes
    claims: Claims
    collateral: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        """The canonical bytes: what the store keeps and the CID names."""
        return canonical_json({
            "claims": self.claims.to_json(), "collateral": self.collateral, "format": FORMAT,
            "kind": self.kind, "quote": self.quote.hex(),
        })

    @classmethod
    def from_bytes(cls, raw: bytes) -> Evidence:
        """Parse untrusted bytes; refuses (:class:`EvidenceError`) with a one-line reason.

        Only the structure is checked here; the quote is verified by the backend.
        """
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise EvidenceError("evidence must be bytes")
        raw = bytes(raw)
        if len(raw) > MAX_EVIDENCE_BYTES:
            raise EvidenceError(f"evidence is {len(raw)} bytes, over the {MAX_EVIDENCE_BYTES} "
                                "byte limit")
        try:
            text = raw.decode("utf-8")
            _shallow(text)
            data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise EvidenceError(f"evidence is not JSON: {_one_line(exc)}") from None
        obj = _exact_object(data, "evidence",
                            {"claims", "collateral", "format", "kind", "quote"})
        if obj["format"] != FORMAT:
            raise EvidenceError(f"evidence format is {obj['format']!r:.40}, not {FORMAT!r}")
        if obj["kind"] not in KINDS:
            raise EvidenceError(f"unknown evidence kind {obj['kind']!r:.40} "
                                f"(known: {', '.join(KINDS)})")
        quote = obj["quote"]
        if not isinstance(quote, str) or not re.fullmatch(r"(?:[0-9a-f]{2})+", quote):
            raise EvidenceError("evidence quote is not lowercase hex bytes")
        collateral = obj["collateral"]
        if collateral is not None and (obj["kind"] != "sgx-dcap"
                                       or not isinstance(collateral, dict)):
            raise EvidenceError("evidence collateral must be null, or an object for sgx-dcap")
        evidence = cls(kind=obj["kind"], quote=bytes.fromhex(quote),
                       claims=Claims.from_json(obj["claims"]), collateral=collateral)
        if evidence.to_bytes() != raw:
            raise EvidenceError("evidence is not in canonical form (compact JSON, sorted keys, "
                                "ASCII, lowercase hex)")
        return evidence


def _exact_object(data: object, what: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise EvidenceError(f"{what} is not a JSON object")
    missing, extra = keys - data.keys(), data.keys() - keys
    if missing:
        raise EvidenceError(f"{what} lacks {', '.join(sorted(missing))}")
    if extra:
        raise EvidenceError(f"{what} has unknown fields: {', '.join(sorted(extra))[:80]}")
    return data


def _shallow(text: str, limit: int = _MAX_DEPTH) -> None:
    # Deeply nested arrays can exhaust the C stack of the json module under a raised recursion
    # limit; evidence is a few levels deep, so refuse depth before parsing. One linear pass over
    # the tokens that matter (an escape pair is one token, so quotes inside strings are skipped).
    depth, in_string = 0, False
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif not in_string and token in "[{":
            depth += 1
            if depth > limit:
                raise ValueError(f"nested deeper than {limit} levels")
        elif not in_string and token in "]}":
            depth -= 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r:.40}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]
