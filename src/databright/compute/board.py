"""The task board: leases, commits and reveals of replicated tasks (pure Python, thread-safe).

A task is posted with its spec (opaque JSON bytes), the CIDs its worker may fetch and its
replica accounts (three for TMR). Each replica account leases the task once, commits the
sha256 of its result before the lease deadline, then reveals the result itself. Reveals of a
task open only when every live replica has committed, so no replica can see another's result
before fixing its own.

Timing, per replica slot (``clock`` units, seconds by default):

- an assigned slot must be leased within ``claim_seconds`` of its assignment;
- a lease must be committed within ``lease_seconds`` of being issued;
- a commit must be revealed within ``reveal_seconds`` of the task's reveals opening.

A slot that misses its deadline is dropped (its account is recorded as failed for the task) and
``spare(task_id, failed_account)`` names a replacement account, which must not be a live or
failed replica of the task already; ``None`` (or an account that is) leaves the slot missing
until :meth:`TaskBoard.assign` fills it. A worker that dies mid-task thus loses only that lease.
Expiry is judged lazily, on every call.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from databright.errors import DataBrightError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "BoardError",
    "Lease",
    "SlotState",
    "TaskBoard",
    "TaskStatus",
]

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
Spare = Callable[[str, str], "str | None"]


class BoardError(DataBrightError):
    """A lease, commit or reveal the board refuses; ``code`` names the reason on the wire."""

    def __init__(self, code: str, message: str, http_status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class SlotState(str, Enum):
    ASSIGNED = "assigned"  # waiting for its account to lease it
    LEASED = "leased"
    COMMITTED = "committed"
    REVEALED = "revealed"


@dataclass(frozen=True)
class Lease:
    """One account's lease of one task; ``deadline`` is in the board's clock."""

    lease_id: str
    task_id: str
    account: str
    spec: bytes
    cids: frozenset[str]
    deadline: float


@dataclass
class _Slot:
    account: str
    state: SlotState
    deadline: float
    lease_id: str | None = None
    digest: str | None = None
    payload: bytes | None = None


@dataclass
class _Task:
    task_id: str
    spec: bytes
    cids: frozenset[str]
    slots: list[_Slot]
    wanted: int  # how many replicas the task was posted with
    failed: list[str] = field(default_factory=list)
    reveals_open: bool = False


@dataclass(frozen=True)
class TaskStatus:
    """What :meth:`TaskBoard.status` says of one task."""

    task_id: str
    replicas: dict[str, str]  # account -> slot state
    failed: tuple[str, ...]
    missing: int  # replicas dropped with no replacement yet (the task waits for them)
    reveals_open: bool
    done: bool  # nothing outstanding: results() answers


class TaskBoard:
    """Replicated tasks, their leases, commits and reveals.

    Args:
        clock: monotonic seconds.
        spare: ``spare(task_id, failed_account) -> account | None``: the replacement replica for
            an expired slot (the scheduler's choice under the exposure cap).
        claim_seconds: how long an assigned slot waits to be leased (default ``lease_seconds``
            of its task).
        reveal_seconds: how long a commit waits to be revealed once reveals open (default the
            task's ``lease_seconds``).
        max_payload_bytes: the largest result a reveal may carry.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *,
                 spare: Spare | None = None, claim_seconds: float | None = None,
                 reveal_seconds: float | None = None,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self._clock = clock
        self._spare = spare
        self._claim_seconds = claim_seconds
        self._reveal_seconds = reveal_seconds
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.RLock()
        self._tasks: dict[str, _Task] = {}
        self._lease_seconds: dict[str, float] = {}
        self._leases: dict[str, tuple[str, str]] = {}  # lease id -> (task id, account)
        self._expired: dict[str, tuple[str, str]] = {}  # dropped leases, for a clear refusal
        self._watchers: list[Callable[[], None]] = []
        self._answered = threading.Condition(self._lock)
        self._answers = 0  # commits and reveals so far: wait_answer waits for it to move
        #: what the coordinator tells every worker about the running job before offering its
        #: tasks (a spot-checked job's seed commitment); served in ``/v1/status``
        self.published: dict[str, str] = {}

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever a slot may have become leasable (a task posted, a
        replica assigned or replaced), e.g. to wake a server's long-polling lease requests.
        It runs under the board's lock: it must be quick and must not call the board."""
        with self._lock:
            self._watchers.append(callback)

    def wait_answer(self, timeout: float) -> bool:
        """Block until some replica commits or reveals (or ``timeout`` seconds pass); returns
        whether one did. The coordinator waits here instead of polling its tasks."""
        with self._lock:
            seen = self._answers
            return self._answered.wait_for(lambda: self._answers != seen, timeout)

    def _answer(self) -> None:
        self._answers += 1
        self._answered.notify_all()

    def _changed(self) -> None:
        for callback in self._watchers:
            callback()

    @property
    def clock(self) -> Callable[[], float]:
        """The clock deadlines are measured in (servers turn them into seconds left)."""
        return self._clock

    # -- posting -------------------------------------------------------------------------

    def post(self, task_id: str, spec: bytes, cids: frozenset[str], replicas: tuple[str, ...],
             lease_seconds: float) -> None:
        """Post a task for ``replicas`` (distinct accounts).

        Raises:
            BoardError: the id is taken, the replicas repeat or are empty, the time is not
                positive.
        """
        if not replicas or len(set(replicas)) != len(replicas):
            raise BoardError("bad_task", f"task {task_id!r} needs distinct replicas: {replicas}")
        if not lease_seconds > 0:
            raise BoardError("bad_task", "the lease time must be positive")
        with self._lock:
            if task_id in self._tasks:
                raise BoardError("bad_task", f"task {task_id!r} is already posted")
            now = self._clock()
            claim = self._claim_seconds or lease_seconds
            self._tasks[task_id] = _Task(
                task_id, bytes(spec), frozenset(cids),
                [_Slot(a, SlotState.ASSIGNED, now + claim) for a in replicas], len(replicas))
            self._lease_seconds[task_id] = float(lease_seconds)
            self._changed()

    def assign(self, task_id: str, account: str) -> None:
        """Fill a missing replica of ``task_id`` with ``account``.

        Raises:
            BoardError: unknown task, no replica is missing, or the account is (or was) one.
        """
        with self._lock:
            self._sweep()
            task = self._task(task_id)
            if len(task.slots) >= task.wanted:
                raise BoardError("bad_task", f"task {task_id!r} misses no replica")
            if not self._eligible(task, account):
                raise BoardError("bad_task", f"{account} is or was a replica of {task_id!r}")
            self._add_slot(task, account)

    def remove(self, task_id: str) -> None:
        """Forget a task (after its verdict): its leases become unknown."""
        with self._lock:
            task = self._tasks.pop(task_id, None)
            self._lease_seconds.pop(task_id, None)
            if task is not None:
                for slot in task.slots:
                    if slot.lease_id is not None:
                        self._leases.pop(slot.lease_id, None)
            for lid in [k for k, v in self._expired.items() if v[0] == task_id]:
                del self._expired[lid]

    # -- the worker's side -----------------------------------------------------------------

    def lease(self, account: str) -> Lease | None:
        """The next task ``account`` is an unleased replica of (oldest first), or ``None``."""
        with self._lock:
            now = self._sweep()
            for task in self._tasks.values():
                for slot in task.slots:
                    if slot.account == account and slot.state is SlotState.ASSIGNED:
                        slot.state = SlotState.LEASED
                        slot.lease_id = secrets.token_hex(16)
                        slot.deadline = now + self._lease_seconds[task.task_id]
                        self._leases[slot.lease_id] = (task.task_id, account)
                        return Lease(slot.lease_id, task.task_id, account, task.spec, task.cids,
                                     slot.deadline)
            return None

    def commit(self, account: str, lease_id: str, sha256_hex: str) -> bool:
        """Record the sha256 of ``account``'s result; returns whether reveals are now open.

        Raises:
            BoardError: unknown or expired lease, already committed, malformed digest.
        """
        if not isinstance(sha256_hex, str) or not _SHA256_HEX.fullmatch(sha256_hex):
            raise BoardError("malformed", "a commit is 64 lower-case hex digits of sha256",
                             http_status=422)
        with self._lock:
            self._sweep()
            task, slot = self._slot(account, lease_id)
            if slot.state is not SlotState.LEASED:
                raise BoardError("already_committed", f"lease {lease_id} is already committed")
            slot.state = SlotState.COMMITTED
            slot.digest = sha256_hex
            self._maybe_open(task, self._clock())
            self._answer()
            return task.reveals_open

    def reveal(self, account: str, lease_id: str, payload: bytes) -> None:
        """Accept ``account``'s result: its sha256 must be the commit.

        Raises:
            BoardError: unknown or expired lease, reveals not open yet, not committed or
                already revealed, oversize payload, payload not matching the commit.
        """
        if len(payload) > self.max_payload_bytes:
            raise BoardError("payload_too_large", f"the result of {len(payload)} bytes exceeds "
                             f"{self.max_payload_bytes} bytes", http_status=413)
        with self._lock:
            self._sweep()
            task, slot = self._slot(account, lease_id)
            if slot.state is SlotState.LEASED:
                raise BoardError("not_committed", "commit the result's sha256 before revealing")
            if slot.state is SlotState.REVEALED:
                raise BoardError("already_revealed", f"lease {lease_id} is already revealed")
            if not task.reveals_open:
                raise BoardError("reveal_too_early",
                                 "other replicas have not committed yet: retry later")
            if hashlib.sha256(payload).hexdigest() != slot.digest:
                raise BoardError("reveal_mismatch", "the payload's sha256 is not the commit")
            slot.state = SlotState.REVEALED
            slot.payload = bytes(payload)
            self._answer()

    def allowed_cids(self, account: str) -> set[str]:
        """The CIDs ``account`` may fetch now: those of the tasks it holds a live lease of."""
        with self._lock:
            self._sweep()
            out: set[str] = set()
            for task in self._tasks.values():
                for slot in task.slots:
                    if slot.account == account and slot.state is SlotState.LEASED:
                        out |= task.cids
            return out

    # -- the coordinator's side ------------------------------------------------------------

    def results(self, task_id: str) -> dict[str, bytes] | None:
        """``{account: payload}`` once no replica is outstanding (each revealed or dropped),
        else ``None``. Dropped replicas are in :meth:`status` ``failed``.

        Raises:
            BoardError: unknown task.
        """
        with self._lock:
            self._sweep()
            task = self._task(task_id)
            if not self._done(task):
                return None
            return {s.account: s.payload for s in task.slots if s.payload is not None}

    def status(self, task_ids: Iterable[str] | None = None) -> list[TaskStatus]:
        """The state of the given (default: every) task, in posting order."""
        with self._lock:
            self._sweep()
            ids = list(self._tasks) if task_ids is None else list(task_ids)
            out = []
            for tid in ids:
                task = self._task(tid)
                out.append(TaskStatus(
                    tid, {s.account: s.state.value for s in task.slots}, tuple(task.failed),
                    task.wanted - len(task.slots), task.reveals_open, self._done(task)))
            return out

    def leases_of(self, account: str) -> list[tuple[str, str, float]]:
        """``(lease id, slot state, deadline)`` of ``account``'s unrevealed leases."""
        with self._lock:
            self._sweep()
            return [(s.lease_id, s.state.value, s.deadline) for t in self._tasks.values()
                    for s in t.slots if s.account == account and s.lease_id is not None
                    and s.state in (SlotState.LEASED, SlotState.COMMITTED)]

    # -- internals -------------------------------------------------------------------------

    def _task(self, task_id: str) -> _Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise BoardError("unknown_task", f"no task {task_id!r}", http_status=404) from None

    def _slot(self, account: str, lease_id: str) -> tuple[_Task, _Slot]:
        if not isinstance(lease_id, str):
            raise BoardError("malformed", "a lease id is a string", http_status=422)
        owner = self._leases.get(lease_id)
        if owner is None and self._expired.get(lease_id, ("", ""))[1] == account:
            raise BoardError("lease_expired", f"lease {lease_id} passed its deadline and was "
                             "given to another replica", http_status=410)
        if owner is None or owner[1] != account:
            raise BoardError("unknown_lease", "no such lease of this account (expired leases "
                             "are dropped)", http_status=404)
        task = self._tasks[owner[0]]
        for slot in task.slots:
            if slot.lease_id == lease_id:
                return task, slot
        raise BoardError("unknown_lease", "no such lease of this account", http_status=404)

    @staticmethod
    def _done(task: _Task) -> bool:
        return all(s.state is SlotState.REVEALED for s in task.slots)

    @staticmethod
    def _eligible(task: _Task, account: str) -> bool:
        return account not in task.failed and all(s.account != account for s in task.slots)

    def _add_slot(self, task: _Task, account: str) -> None:
        claim = self._claim_seconds or self._lease_seconds[task.task_id]
        task.slots.append(_Slot(account, SlotState.ASSIGNED, self._clock() + claim))
        # a replica that has not committed closes reveals again until it does
        task.reveals_open = False
        self._changed()

    def _maybe_open(self, task: _Task, now: float) -> None:
        if task.reveals_open or not task.slots:
            return
        if all(s.state in (SlotState.COMMITTED, SlotState.REVEALED) for s in task.slots):
            task.reveals_open = True
            wait = self._reveal_seconds or self._lease_seconds[task.task_id]
            for s in task.slots:
                if s.state is SlotState.COMMITTED:
                    s.deadline = now + wait

    def _sweep(self) -> float:
        now = self._clock()
        for task in self._tasks.values():
            expired = [s for s in task.slots if s.state is not SlotState.REVEALED
                       and (s.state is not SlotState.COMMITTED or task.reveals_open)
                       and now > s.deadline]
            for slot in expired:
                task.slots.remove(slot)
                task.failed.append(slot.account)
                if slot.lease_id is not None:
                    self._leases.pop(slot.lease_id, None)
                    self._expired[slot.lease_id] = (task.task_id, slot.account)
            for slot in expired:
                replacement = self._spare(task.task_id, slot.account) if self._spare else None
                if replacement is not None and self._eligible(task, replacement):
                    self._add_slot(task, replacement)
            if expired:
                self._maybe_open(task, now)
        return now
