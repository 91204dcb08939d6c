"""How a job is run, beyond its program: model splitting and the verification mode.

- ``split``: the model is cut at layer boundaries into this many pieces, each on other workers
  (1 = no splitting).
- ``verification``: ``tmr`` (three replicas of every task, compared by sha256) or ``spot``
  (one worker per task; the coordinator re-checks a secret random fraction ``spot_ppm`` /
  1,000,000 of the tasks).

They are part of the job's stored spec, so a coordinator serving HTTP workers runs the job the
way its consumer asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from databright.errors import UsageError

__all__ = ["DEFAULT_SPOT_PPM", "MAX_SPLIT", "VERIFICATIONS", "JobOptions"]

VERIFICATIONS = ("tmr", "spot")
MAX_SPLIT = 8
DEFAULT_SPOT_PPM = 100_000  # p = 0.1
PPM = 1_000_000


@dataclass(frozen=True)
class JobOptions:
    """A job's splitting and verification choices (validated on construction)."""

    split: int = 1
    verification: str = "tmr"
    spot_ppm: int = DEFAULT_SPOT_PPM

    def __post_init__(self) -> None:
        s = self.split
        if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= MAX_SPLIT:
            raise UsageError(f"split must be a whole number of pieces in 1..{MAX_SPLIT}, "
                             f"not {s!r:.40}")
        if self.verification not in VERIFICATIONS:
            raise UsageError(f"verification is one of {', '.join(VERIFICATIONS)}, "
                             f"not {self.verification!r:.40}")
        p = self.spot_ppm
        if not isinstance(p, int) or isinstance(p, bool) or not 0 < p <= PPM:
            raise UsageError(f"the spot-check fraction must be in (0, 1], not {p!r:.40} ppm")

    @classmethod
    def of(cls, split: int = 1, verification: str = "tmr",
           spot_fraction: float | None = None) -> JobOptions:
        """From user-facing values (``spot_fraction`` a fraction in (0, 1])."""
        ppm = DEFAULT_SPOT_PPM
        if spot_fraction is not None:
            if not isinstance(spot_fraction, int | float) or not 0 < spot_fraction <= 1:
                raise UsageError(f"--spot-fraction is in (0, 1], not {spot_fraction!r:.40}")
            if verification != "spot":
                raise UsageError("--spot-fraction goes with --verify spot")
            ppm = max(1, round(spot_fraction * PPM))
        return cls(int(split), verification, ppm)

    @property
    def spot_fraction(self) -> float:
        return self.spot_ppm / PPM

    def to_fields(self) -> dict[str, Any]:
        """The spec fields that differ from the defaults (a default job's spec is unchanged)."""
        out: dict[str, Any] = {}
        if self.split != 1:
            out["split"] = self.split
        if self.verification != "tmr":
            out["verification"] = self.verification
            out["spot_ppm"] = self.spot_ppm
        return out

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> JobOptions:
        """From a stored spec's fields (UsageError for bad values)."""
        split = d.get("split", 1)
        verification = d.get("verification", "tmr")
        ppm = d.get("spot_ppm", DEFAULT_SPOT_PPM)
        if not isinstance(verification, str):
            raise UsageError("verification must be a string")
        return cls(split, verification, ppm)
