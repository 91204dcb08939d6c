"""Triple modular redundancy: the verdict on one task, and a hash chain over a job's verdicts.

Three distinct accounts of one determinism class compute the same task; results are compared by
their exact sha256 (honest replicas of one class agree bit for bit, and a tolerance would miss
the small perturbations an attack uses). If all three agree the result is accepted as it is;
otherwise the coordinator recomputes the task itself, once, and every account whose digest
differs from its own is a liar. An account that returned nothing (silent, timed out) is not a
liar: its lease is simply re-issued.

A wrong result is accepted only if every replica returns the same wrong digest, which is why
replicas are drawn so that nobody chooses them (:mod:`databright.compute.collusion`).

The :class:`VerdictChain` commits to every verdict of a job in order:
``head = sha256(prev_head || canonical verdict bytes)`` from :data:`GENESIS`; the job's receipt
carries the head, so a verifier holding the verdicts can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from databright.compute.exposure import normalize_account
from databright.errors import IntegrityError, UsageError

GENESIS = hashlib.sha256(b"databright: tmr verdict chain v1").hexdigest()
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise UsageError(f"{what} is not a sha256 hex digest: {value!r}")
    return value.lower()


@dataclass(frozen=True)
class Verdict:
    """The decision on one task.

    Attributes:
        task: the task id.
        digests: each replica account's result digest (None: it returned no result).
        accepted: the digest accepted as the task's result.
        liars: the accounts whose result differs from the accepted one (sorted).
        recomputed: whether the coordinator recomputed the task (the replicas disagreed).
    """

    task: str
    digests: Mapping[str, str | None]
    accepted: str
    liars: tuple[str, ...]
    recomputed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "digests": dict(sorted(self.digests.items())),
                "accepted": self.accepted, "liars": list(self.liars),
                "recomputed": self.recomputed}

    def canonical(self) -> bytes:
        """The bytes the chain hashes: JSON, sorted keys, no spaces, ASCII."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Parse and validate a verdict (from a receipt's JSON: untrusted)."""
        try:
            task, digests, accepted = data["task"], data["digests"], data["accepted"]
            liars, recomputed = data["liars"], data["recomputed"]
        except (KeyError, TypeError) as e:
            raise UsageError(f"not a TMR verdict: missing {e}") from None
        if not isinstance(task, str) or not isinstance(digests, dict) or not isinstance(
                liars, list) or not isinstance(recomputed, bool):
            raise UsageError(f"not a TMR verdict: {data!r}"[:200])
        parsed = {normalize_account(a): None if d is None else _digest(d, f"digest of {a}")
                  for a, d in digests.items()}
        verdict = cls(task, parsed, _digest(accepted, "accepted digest"),
                      tuple(normalize_account(a) for a in liars), recomputed)
        expected = sorted(a for a, d in parsed.items() if d is not None and d != verdict.accepted)
        if list(verdict.liars) != expected:
            raise UsageError(f"verdict on {task}: liars {list(verdict.liars)} are not the "
                             f"accounts that differ from the accepted digest {expected}")
        return verdict


def decide(task: str, digests: Mapping[str, str | None], recompute: Callable[[], str], *,
           replicas: int = 3, audit: bool = False) -> Verdict:
    """The verdict on ``task`` from its replicas' result digests.

    Args:
        task: the task id.
        digests: account → sha256 hex of its result, or None if it returned nothing.
        recompute: the coordinator's own computation of the task; returns its digest. Called
            at most once, and only if the replicas are not unanimous.
        replicas: how many agreeing results accept a task without recomputing it.
        audit: recompute even a unanimous task (a spot check the coordinator draws in secret:
            the only way to catch replicas that all collude).
    """
    got = {normalize_account(a): None if d is None else _digest(d, f"digest of {a}")
           for a, d in digests.items()}
    if len(got) != len(digests):
        raise UsageError(f"task {task}: one account listed twice in {sorted(digests)}")
    values = set(got.values())
    if not audit and len(got) >= replicas and len(values) == 1 and None not in values:
        return Verdict(task, got, values.pop(), (), False)  # type: ignore[arg-type]
    accepted = _digest(recompute(), f"the coordinator's recomputation of {task}")
    liars = tuple(sorted(a for a, d in got.items() if d is not None and d != accepted))
    return Verdict(task, got, accepted, liars, True)


@dataclass
class VerdictChain:
    """A hash chain over a job's verdicts, in the order they were decided."""

    genesis: str = GENESIS
    head: str = ""
    verdicts: list[Verdict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.genesis = _digest(self.genesis, "genesis")
        if not self.head:
            self.head = self.genesis

    @staticmethod
    def link(prev_head: str, verdict: Verdict) -> str:
        return hashlib.sha256(bytes.fromhex(prev_head) + verdict.canonical()).hexdigest()

    def append(self, verdict: Verdict) -> str:
        """Add a verdict; returns the new head."""
        self.head = self.link(self.head, verdict)
        self.verdicts.append(verdict)
        return self.head

    def __iter__(self) -> Iterator[Verdict]:
        return iter(self.verdicts)

    def __len__(self) -> int:
        return len(self.verdicts)

    def liars(self) -> set[str]:
        """Every account any verdict of the job named as a liar."""
        return {a for v in self.verdicts for a in v.liars}

    def to_json(self) -> str:
        return json.dumps({"genesis": self.genesis, "head": self.head,
                           "verdicts": [v.as_dict() for v in self.verdicts]},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> VerdictChain:
        """Rebuild a chain and check that its verdicts hash to the head it states."""
        try:
            data = json.loads(text)
            genesis, head, verdicts = data["genesis"], data["head"], data["verdicts"]
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"not a TMR verdict chain: {e}") from None
        if not isinstance(verdicts, list):
            raise UsageError("not a TMR verdict chain: verdicts is not a list")
        chain = cls(genesis=genesis)
        for v in verdicts:
            chain.append(Verdict.from_dict(v))
        if chain.head != _digest(head, "head"):
            raise IntegrityError(f"the verdicts hash to {chain.head}, the chain states {head}")
        return chain
