"""Spot verification's pure parts: a segment's step log and the bisection that finds its first
wrong step.

Under ``spot`` verification one worker answers each task; the coordinator applies the answer
optimistically and logs it. A *segment* is one shard's tasks over a window of
:data:`SEGMENT_STEPS` consecutive steps. Its :class:`StepLog` holds, per task, the step, the
sha256 of the weights the task was computed at and the sha256 of the answer, linked into a hash
chain from a genesis::

    link_i = sha256(link_{i-1} ‖ step_i ‖ weights_sha256_i ‖ digest_i)

so the head commits to every answer of the segment in order. A checked segment is re-run by a
checker; equal heads pass. Different heads: links are equal up to the first differing answer and
differ from there on, so :func:`first_difference` finds that answer by bisection over the links,
in ⌈log₂ n⌉ probes for n tasks (exactly log₂ n when n is a power of two, as a full segment of 8
is). :func:`judge` then has the coordinator recompute that ONE task to decide who lied (none
when the checker is the coordinator itself: its log is trusted).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["GENESIS", "SEGMENT_STEPS", "Finding", "LogEntry", "StepLog", "chain_link",
           "first_difference", "judge", "max_probes"]

SEGMENT_STEPS = 8  # W: a segment is a shard's tasks over this many consecutive steps
GENESIS = hashlib.sha256(b"databright spot step log 1").hexdigest()
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _hex32(value: str, what: str) -> bytes:
    v = value.lower().removeprefix("0x") if isinstance(value, str) else ""
    if not _SHA256.fullmatch(v):
        raise ValueError(f"{what} is not a sha256 hex digest: {value!r:.80}")
    return bytes.fromhex(v)


def chain_link(prev: str, step: int, weights_sha256: str, digest: str) -> str:
    """The next link of a step log: sha256(prev ‖ step as 8 bytes ‖ weights ‖ digest), hex."""
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**63:
        raise ValueError(f"a step is a non-negative integer: {step!r:.40}")
    return hashlib.sha256(_hex32(prev, "the previous link") + step.to_bytes(8, "big")
                          + _hex32(weights_sha256, "the weights' sha256")
                          + _hex32(digest, "the answer's digest")).hexdigest()


@dataclass(frozen=True)
class LogEntry:
    """One answer of a segment: its step, weights, answer digest and chain link."""

    step: int
    weights_sha256: str
    digest: str
    link: str


@dataclass
class StepLog:
    """A segment's answers in order, hash-chained (see the module docstring)."""

    entries: list[LogEntry] = field(default_factory=list)

    def append(self, step: int, weights_sha256: str, digest: str) -> str:
        """Log an answer; returns the new head."""
        link = chain_link(self.head, step, weights_sha256, digest)
        self.entries.append(LogEntry(step, weights_sha256.lower().removeprefix("0x"),
                                     digest.lower(), link))
        return link

    @property
    def head(self) -> str:
        return self.entries[-1].link if self.entries else GENESIS

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def of(cls, tasks: Sequence[tuple[int, str]], digests: Sequence[str]) -> StepLog:
        """The log of ``digests`` answering ``tasks`` ((step, weights sha256) pairs)."""
        if len(tasks) != len(digests):
            raise ValueError(f"{len(digests)} answers for {len(tasks)} tasks")
        log = cls()
        for (step, weights), digest in zip(tasks, digests, strict=True):
            log.append(step, weights, digest)
        return log


def max_probes(n: int) -> int:
    """⌈log₂ n⌉: the most probes :func:`first_difference` makes over n positions."""
    if n < 1:
        raise ValueError("a segment has at least one task")
    return (n - 1).bit_length()


def first_difference(n: int, differs: Callable[[int], bool]) -> tuple[int, int]:
    """The first position in ``[0, n)`` where ``differs`` holds, and the probes it took.

    ``differs`` must be monotone (false, …, false, true, …, true) and true at ``n - 1`` (the heads
    differ), as comparing two step logs' links is: the last position is never probed. Halving
    the candidates each probe takes at most ⌈log₂ n⌉ probes, exactly log₂ n for a power of two.
    """
    if n < 1:
        raise ValueError("a segment has at least one task")
    lo, hi, probes = 0, n - 1, 0  # the first difference is in [lo, hi]; hi is known to differ
    while lo < hi:
        mid = (lo + hi) // 2
        probes += 1
        if differs(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo, probes


@dataclass(frozen=True)
class Finding:
    """Where a worker's and a checker's logs of one segment first differ, and who lied there.

    Attributes:
        index: the position of the first differing answer in the segment; step: its step.
        probes: the link comparisons the bisection made.
        worker_lied, checker_lied: whose answer at ``index`` is not the truth.
        truth: the accepted digest at ``index``; recomputed: tasks the coordinator recomputed
            to decide (0 when the checker is the coordinator, else 1).
    """

    index: int
    step: int
    probes: int
    worker_lied: bool
    checker_lied: bool
    truth: str
    recomputed: int


def judge(worker: StepLog, checker: StepLog, recompute: Callable[[int], str], *,
          checker_trusted: bool) -> Finding | None:
    """Compare two logs of the same segment: None when their heads agree, else the
    :class:`Finding` at their first differing answer.

    Args:
        worker, checker: the worker's and the checker's logs (the same steps and weights).
        recompute: ``recompute(index) -> digest``: the coordinator computes that ONE task (not
            called when ``checker_trusted``).
        checker_trusted: the checker is the coordinator, so its answer is the truth.

    Raises:
        ValueError: the logs are not of the same tasks.
    """
    if [(e.step, e.weights_sha256) for e in worker.entries] != [
            (e.step, e.weights_sha256) for e in checker.entries]:
        raise ValueError("the two logs are not of the same tasks")
    if worker.head == checker.head:
        return None
    n = len(worker)
    index, probes = first_difference(
        n, lambda i: worker.entries[i].link != checker.entries[i].link)
    w, c = worker.entries[index], checker.entries[index]
    truth = c.digest if checker_trusted else _hex32(recompute(index), "recomputed digest").hex()
    return Finding(index, w.step, probes, w.digest != truth, c.digest != truth, truth,
                   0 if checker_trusted else 1)
