"""Attestation: evidence that a coordinator runs the code it claims, and the policy that judges it.

Two backends produce :class:`Evidence`: ``software`` (a measurement of the coordinator's code and
config signed by a per-installation platform key; TCB status "Simulated") and ``sgx-dcap`` (Intel
SGX DCAP quotes verified offline with dcap-qvl). :func:`verify_evidence` is the one entry point a
client uses: bytes from the store in, a :class:`Verdict` with every reason out. The trust model is
in docs/attestation.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from databright.attestation.errors import (
    AttestationError,
    AttestationRefused,
    EvidenceError,
    PolicyError,
)
from databright.attestation.evidence import Claims, Evidence, registration_nonce, report_data
from databright.attestation.policy import (
    Policy,
    Verdict,
    check,
    local_software_policy,
    unix_time,
)

__all__ = [
    "AttestationError", "AttestationRefused", "Claims", "Evidence", "EvidenceError", "Policy",
    "PolicyError", "Verdict", "check", "local_software_policy", "registration_nonce", "report_data",
    "verify_evidence",
]


def verify_evidence(raw: bytes, policy: Policy, *, enclave_address: bytes | str,
                    nonce: bytes | str, now: int | datetime,
                    collateral: str | dict[str, Any] | None = None) -> Verdict:
    """Parse evidence bytes (as stored by CID), verify them with their backend, apply ``policy``.

    Never raises on untrusted bytes: a malformed evidence is a verdict with its reason.

    Args:
        raw: the evidence's canonical bytes.
        policy: what to accept.
        enclave_address: the coordinator's secp256k1 address (20 bytes or hex) the quote must bind.
        nonce: the verifier's 32-byte challenge the quote must bind.
        now: Unix seconds (or an aware datetime) at which sgx-dcap collateral must be valid.
        collateral: sgx-dcap collateral (JSON text or object); defaults to the evidence's own.
    """
    try:
        evidence = Evidence.from_bytes(raw)
    except EvidenceError as exc:
        report_data(enclave_address, nonce), unix_time(now)  # the caller's arguments must be valid
        return Verdict(reasons=(str(exc),))
    return check(evidence, policy, enclave_address=enclave_address, nonce=nonce, now=now,
                 collateral=collateral)
