"""Policy: which attested coordinators a user trusts, and the check that gives every reason.

A policy file is JSON a user edits (docs/attestation.md)::

    {
      "allowed_measurements": ["<64 hex>", ...],   # MRENCLAVE or software measurements; "*" = any
      "allowed_signers": ["<64 hex>", ...],        # MRSIGNER or platform key ids; "*" = any
      "min_isv_svn": 0,
      "accepted_tcb_statuses": ["UpToDate"],       # Intel TCB statuses
      "allow_debug": false,
      "allow_simulated": false                     # accept the software backend's evidence
    }

Every field may be left out (the defaults above, and empty lists, which allow nothing); an unknown
field is refused, so a typo never silently loosens or tightens a policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from databright.attestation import sgx, software
from databright.attestation.errors import AttestationRefused, EvidenceError, PolicyError
from databright.attestation.evidence import (
    SGX_TCB_STATUSES,
    SIMULATED,
    Claims,
    Evidence,
    normalize_address,
    normalize_nonce,
    report_data,
)
from databright.home import Home

__all__ = ["ANY", "Policy", "Verdict", "check", "local_software_policy", "unix_time"]

ANY = "*"
_HEX32 = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("allowed_measurements", "allowed_signers", "min_isv_svn", "accepted_tcb_statuses",
           "allow_debug", "allow_simulated")


@dataclass(frozen=True)
class Policy:
    """What evidence a verifier accepts. The defaults accept nothing but up-to-date hardware."""

    allowed_measurements: tuple[str, ...] = ()
    allowed_signers: tuple[str, ...] = ()
    min_isv_svn: int = 0
    accepted_tcb_statuses: tuple[str, ...] = ("UpToDate",)
    allow_debug: bool = False
    allow_simulated: bool = False

    def __post_init__(self) -> None:
        for name in ("allowed_measurements", "allowed_signers"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(
                    isinstance(v, str) and (v == ANY or _HEX32.fullmatch(v)) for v in values):
                raise PolicyError(f"policy: {name} must list 64-hex-digit lowercase values "
                                  f'or "{ANY}"')
            object.__setattr__(self, name, tuple(values))
        if type(self.min_isv_svn) is not int or not 0 <= self.min_isv_svn <= 0xFFFF:
            raise PolicyError("policy: min_isv_svn must be an integer in 0..65535")
        statuses = self.accepted_tcb_statuses
        if isinstance(statuses, str) or not all(isinstance(s, str) for s in statuses):
            raise PolicyError("policy: accepted_tcb_statuses must be a list of TCB statuses")
        for status in statuses:
            if status == SIMULATED:
                raise PolicyError('policy: "Simulated" is not a TCB status to accept: set '
                                  "allow_simulated instead")
            if status not in SGX_TCB_STATUSES:
                raise PolicyError(f"policy: unknown TCB status {status!r:.40} (known: "
                                  f"{', '.join(SGX_TCB_STATUSES)})")
        object.__setattr__(self, "accepted_tcb_statuses", tuple(statuses))
        for name in ("allow_debug", "allow_simulated"):
            if type(getattr(self, name)) is not bool:
                raise PolicyError(f"policy: {name} must be true or false")

    def reasons(self, claims: Claims, kind: str) -> list[str]:
        """Every rule that verified ``claims`` of a ``kind`` backend break (REPORTDATA and the
        simulated switch aside, which :func:`check` judges)."""
        reasons = []
        if ANY not in self.allowed_measurements and \
                claims.measurement not in self.allowed_measurements:
            reasons.append(f"measurement {claims.measurement} is not an allowed measurement")
        if ANY not in self.allowed_signers and claims.signer not in self.allowed_signers:
            reasons.append(f"signer {claims.signer} is not an allowed signer")
        if claims.isv_svn < self.min_isv_svn:
            reasons.append(f"isv_svn {claims.isv_svn} is below the minimum {self.min_isv_svn}")
        if claims.debug and not self.allow_debug:
            reasons.append("the enclave runs in debug mode and the policy does not allow debug")
        if kind != software.KIND and claims.tcb_status not in self.accepted_tcb_statuses:
            reasons.append(f"TCB status {claims.tcb_status} is not accepted (accepted: "
                           f"{', '.join(self.accepted_tcb_statuses) or 'none'})")
        return reasons

    def to_json(self) -> str:
        """The policy file's text (indented, keys in the documented order)."""
        data = {name: list(v) if isinstance(v := getattr(self, name), tuple) else v
                for name in _FIELDS}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        """A policy from its file's text; refuses (:class:`PolicyError`) with the reason."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PolicyError(f"policy is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise PolicyError("policy is not a JSON object")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise PolicyError(f"policy has unknown fields: {', '.join(unknown)} (known: "
                              f"{', '.join(_FIELDS)})")
        for name in ("allowed_measurements", "allowed_signers", "accepted_tcb_statuses"):
            if name in data and not isinstance(data[name], list):
                raise PolicyError(f"policy: {name} must be a list")
            if name in data and name != "accepted_tcb_statuses":
                data[name] = [v.lower() if isinstance(v, str) else v for v in data[name]]
        return cls(**data)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking evidence against a policy.

    Attributes:
        ok: the evidence is accepted (no reasons).
        reasons: every reason it is refused, one line each.
        kind: the evidence's backend, when it parsed.
        claims: the claims as verified from the quote (None when verification failed).
    """

    reasons: tuple[str, ...]
    kind: str | None = None
    claims: Claims | None = field(default=None)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON data (for ``--json`` output and API answers)."""
        return {"ok": self.ok, "kind": self.kind, "reasons": list(self.reasons),
                "claims": self.claims.to_json() if self.claims else None}

    def raise_for_refusal(self) -> None:
        """Raise :class:`AttestationRefused` with every reason, unless accepted."""
        if self.reasons:
            raise AttestationRefused(list(self.reasons))


def local_software_policy(config: Mapping[str, Any], *, home: Home | None = None,
                          root: Path | None = None) -> Policy:
    """The policy of the embedded default: this installation's own software measurement of
    ``config`` and platform key, and ``allow_simulated`` (so a caller should say it is on)."""
    return Policy(allowed_measurements=(software.measure(config, root).digest,),
                  allowed_signers=(software.platform_key(home).key_id,), allow_simulated=True)


def unix_time(now: int | datetime) -> int:
    """Seconds since the epoch from an int or an aware datetime."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise EvidenceError("`now` must be timezone-aware")
        return int(now.timestamp())
    if type(now) is not int:
        raise EvidenceError("`now` must be a Unix time in seconds or an aware datetime")
    return now


def check(evidence: Evidence, policy: Policy, *, enclave_address: bytes | str,
          nonce: bytes | str, now: int | datetime,
          collateral: str | dict[str, Any] | None = None) -> Verdict:
    """Verify ``evidence`` with its backend, then judge the verified claims by ``policy``.

    The recorded claims are never trusted: the backend re-derives them from the quote (signature,
    DCAP chain and collateral at ``now``). Every failing rule adds a reason.
    """
    # The caller's own arguments raise when malformed; only the evidence gets reasons.
    expected, when = report_data(enclave_address, nonce), unix_time(now)
    reasons: list[str] = []
    if evidence.kind == software.KIND and not policy.allow_simulated:
        reasons.append("simulated evidence (software backend, no hardware isolation) is refused: "
                       "the policy does not set allow_simulated")
    try:
        if evidence.kind == software.KIND:
            claims = software.verify(evidence)
        else:
            claims = sgx.verify(evidence, now=when, collateral=collateral)
    except EvidenceError as exc:
        return Verdict(reasons=(*reasons, str(exc)), kind=evidence.kind)
    reasons.extend(policy.reasons(claims, evidence.kind))
    if claims.report_data != expected:
        reasons.append(_report_data_reason(claims.report_data, enclave_address, nonce))
    return Verdict(reasons=tuple(reasons), kind=evidence.kind, claims=claims)


def _report_data_reason(actual: bytes, enclave_address: bytes | str, nonce: bytes | str) -> str:
    address, challenge = normalize_address(enclave_address), normalize_nonce(nonce)
    parts = []
    if actual[:20] != address:
        parts.append(f"it binds address 0x{actual[:20].hex()}, not 0x{address.hex()}")
    if actual[20:52] != challenge:
        parts.append("it binds another nonce")
    if actual[52:] != report_data(address, challenge)[52:]:
        parts.append("it is not in the databright/1 layout")
    return "REPORTDATA mismatch: " + ", ".join(parts)
