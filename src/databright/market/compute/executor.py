"""The embedded executor: many worker identities in this process, pulling from the lease board
exactly as HTTP workers do (lease, fetch only leased blobs, compute, commit, then reveal).

Identities share the process but not their answers: each computes its own result from its own
lease, and the board's commit-before-reveal rule applies to them as to remote workers. A fault
mode (tests, benchmarks, the demo) makes one identity lie in a chosen way.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from databright.compute.board import BoardError
from databright.errors import UsageError

if TYPE_CHECKING:
    from databright.compute.board import TaskBoard

__all__ = ["FAULT_MODES", "Executor", "LocalExecutor", "RemoteExecutor", "VirtualClock"]

#: every fault mode a worker can be told to play (hidden CLI flag, tests and benchmarks only)
FAULT_MODES = ("1ulp", "scale", "noise", "signflip", "stale", "zeros", "copy", "silent")

Compute = Callable[[bytes, Callable[[str], bytes]], bytes]
_BLOB_CACHE = 1024  # blobs kept in memory (weights ~40 KB, items a few KB)


class Executor(Protocol):
    """What moves tasks between the board and the workers."""

    def pump(self, board: TaskBoard) -> int:
        """Serve what can be served now; how many leases or reveals were answered."""

    def idle(self) -> None:
        """Nothing moved: wait (remote workers) or let time pass (in-process)."""


class VirtualClock:
    """The board's clock for in-process workers: it jumps past the lease time when every
    identity has answered what it will (nobody else can answer, so waiting is pointless)."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        return self.now


class RemoteExecutor:
    """Workers in other processes pull over HTTP: the coordinator only waits for them, woken
    by their first commit or reveal (and at least every ``poll_seconds``, so lapsed leases are
    noticed)."""

    def __init__(self, poll_seconds: float = 0.25) -> None:
        self.poll_seconds = poll_seconds
        self._board: TaskBoard | None = None

    def pump(self, board: TaskBoard) -> int:
        self._board = board
        return 0

    def idle(self) -> None:
        if self._board is None:
            time.sleep(self.poll_seconds)
        else:
            self._board.wait_answer(self.poll_seconds)


class LocalExecutor:
    """Worker identities (addresses) served in-process by ``compute(spec_bytes, fetch)``.

    Args:
        accounts: the identities' addresses.
        compute: what an honest worker runs on a task's spec bytes.
        fetch: the coordinator's blob fetcher (the executor restricts it to each lease's CIDs).
        faults: ``{address: mode}`` for identities that lie.

    Attributes:
        compute_seconds: wall time spent in the identities' work (``compute`` and the fault
            perturbations, including the blob fetches they make); fetch_seconds: the part of it
            spent in ``fetch`` (serving blobs is the coordinator's work, not the worker's).
    """

    def __init__(
        self,
        accounts: Iterable[str],
        compute: Compute,
        fetch: Callable[[str], bytes],
        faults: Mapping[str, str] | None = None,
        clock: VirtualClock | None = None,
    ) -> None:
        self.accounts = [a for a in accounts]
        self._compute = compute
        self._fetch = fetch
        self.faults = {a.lower(): m for a, m in (faults or {}).items()}
        bad = sorted(set(self.faults.values()) - set(FAULT_MODES))
        if bad:
            raise UsageError(f"unknown fault mode(s) {bad}: use one of {', '.join(FAULT_MODES)}")
        self.clock = clock
        self._last: dict[str, bytes] = {}  # per account: its previous answer (copy)
        self._computed: dict[str, bytes] = {}  # per account: its previous own result (stale)
        self._pending: dict[tuple[str, str], bytes] = {}  # (account, lease) → payload to reveal
        self.compute_seconds = 0.0
        self.fetch_seconds = 0.0
        # blobs already read and CID-verified from the store: a step's weights are fetched by
        # every replica of every task (the bytes are immutable: a CID names them)
        self._blobs: OrderedDict[str, bytes] = OrderedDict()

    def pump(self, board: TaskBoard) -> int:
        """Let every identity take and answer what the board offers it now; returns how many
        leases were answered (0 when nothing is left for these identities)."""
        from databright.compute.faults import perturb

        answered = 0
        for account in self.accounts:
            while (lease := board.lease(account)) is not None:
                mode = self.faults.get(account.lower())
                if mode == "silent":
                    continue  # takes the lease and never answers: it expires
                allowed = board.allowed_cids(account)

                def fetch(cid: str, _allowed: set[str] = allowed) -> bytes:
                    if cid not in _allowed:
                        raise UsageError(f"blob {cid} is not in this worker's leases")
                    t0 = time.perf_counter()
                    try:
                        return self._blob(cid)
                    finally:
                        self.fetch_seconds += time.perf_counter() - t0

                t0 = time.perf_counter()
                me = account.lower()
                if mode == "copy" and me in self._last:
                    payload = self._last[me]  # answers without computing
                else:
                    payload = self._compute(lease.spec, fetch)
                    previous, self._computed[me] = self._computed.get(me), payload
                    # copy and stale replay an earlier result: a first answer has none to
                    # replay, so it is the honest one (the lie starts with the second)
                    if mode not in (None, "copy") and not (mode == "stale" and previous is None):
                        seed = int.from_bytes(hashlib.sha256(lease.lease_id.encode()).digest()[:4],
                                              "big")
                        payload = perturb(payload, mode, rng_seed=seed, previous=previous)
                self.compute_seconds += time.perf_counter() - t0
                self._last[me] = payload
                board.commit(account, lease.lease_id, hashlib.sha256(payload).hexdigest())
                self._pending[(account, lease.lease_id)] = payload
                answered += 1
        for (account, lease_id), payload in list(self._pending.items()):
            try:
                board.reveal(account, lease_id, payload)
            except BoardError as exc:
                if exc.code == "reveal_too_early":
                    continue  # the other replicas have not committed yet: next pump
                # expired or removed lease: the worker loses only that lease
            del self._pending[(account, lease_id)]
            answered += 1
        return answered

    def _blob(self, cid: str) -> bytes:
        data = self._blobs.get(cid)
        if data is None:
            data = self._fetch(cid)
            self._blobs[cid] = data
            if len(self._blobs) > _BLOB_CACHE:
                self._blobs.popitem(last=False)
        else:
            self._blobs.move_to_end(cid)
        return data

    def idle(self) -> None:
        if self.clock is not None:
            self.clock.now += self.clock.step  # silent leases expire; their tasks get spares

    def has_pending(self) -> bool:
        """Whether some identity holds a committed result it could not reveal yet."""
        return bool(self._pending)
