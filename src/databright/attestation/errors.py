"""Errors of attestation, under the one root :class:`~databright.errors.DataBrightError`."""

from __future__ import annotations

from databright.errors import DataBrightError, UsageError

__all__ = ["AttestationError", "AttestationRefused", "EvidenceError", "PolicyError"]


class AttestationError(DataBrightError):
    """Attestation could not be produced or checked (no platform key, unreadable key file, ...)."""

    exit_code = 15
    http_status = 422


class EvidenceError(AttestationError):
    """Evidence bytes are malformed, or its quote does not verify; the message says why."""


class AttestationRefused(AttestationError):
    """Evidence that parsed and verified, or not, does not satisfy the policy.

    ``reasons`` holds every reason, one line each; the message joins them.
    """

    http_status = 403

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("attestation refused: " + "; ".join(reasons))
        self.reasons = list(reasons)


class PolicyError(UsageError):
    """A policy file cannot be used as it is (unknown field, wrong type, bad hex, ...)."""
