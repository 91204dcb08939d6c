"""Which tasks a spot-checking coordinator re-runs: a secret draw, committed before any answer.

The coordinator draws a 32-byte seed when a job starts and publishes only its commitment
(:func:`commitment`, a sha256). A task (or segment) labelled ``label`` is checked when
:func:`is_checked` says so: a keyed hash of the label under the seed, below ``ppm`` parts per
million. Workers answer (commit, then reveal) without knowing the seed, so they cannot tell
which answers will be re-run; the receipt reveals the seed, and anyone can recompute the choice
and compare it with the commitment.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

__all__ = ["PPM", "commitment", "detection_probability", "draw_seed", "is_checked"]

PPM = 1_000_000
SEED_BYTES = 32


def draw_seed() -> bytes:
    """A fresh secret seed (the operating system's CSPRNG)."""
    return secrets.token_bytes(SEED_BYTES)


def commitment(seed: bytes) -> str:
    """The published commitment to ``seed``: hex sha256 under a domain tag."""
    return hashlib.sha256(b"databright-spot-seed 1\0" + bytes(seed)).hexdigest()


def is_checked(seed: bytes, label: str, ppm: int) -> bool:
    """Whether the task labelled ``label`` is re-checked (probability ``ppm`` / 10^6)."""
    if not 0 <= ppm <= PPM:
        raise ValueError(f"ppm must be in [0, {PPM}]: {ppm}")
    mac = hmac.new(bytes(seed), label.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") % PPM < ppm


def detection_probability(p: float, lies: int) -> float:
    """The chance that at least one of ``lies`` independently chosen tasks is checked, each
    with probability ``p``: 1 - (1 - p)^lies."""
    if not 0 <= p <= 1 or lies < 0:
        raise ValueError("p is in [0, 1] and lies is not negative")
    return -math.expm1(lies * math.log1p(-p)) if p < 1 else float(lies > 0)
