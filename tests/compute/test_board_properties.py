"""Hypothesis stateful test of the task board: under random leases, commits, reveals, clock
jumps and spares, no account ever gets a task it is not a replica of, no reveal is accepted
before every live replica of its task has committed, replicas stay distinct (a failed account
never comes back to the task) and results are exactly the revealed, committed payloads."""

from __future__ import annotations

import hashlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from databright.compute.board import BoardError, TaskBoard

POOL = [f"0x{i:02d}" for i in range(7)]
PAYLOADS = [b"honest", b"liar", b""]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class BoardMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.now = 0.0
        self.spares: list[str | None] = []
        self.board = TaskBoard(lambda: self.now, spare=self._spare, reveal_seconds=6)
        self.tasks = 0
        self.revealed = 0
        self.wanted: dict[str, int] = {}
        self.leases: list[tuple[str, str, str]] = []  # (account, lease id, task id)
        self.issued: set[tuple[str, str]] = set()  # (task, account)
        self.commits: dict[str, str] = {}  # lease id -> digest
        self.committed: dict[str, bytes] = {}  # lease id -> the payload committed

    def _spare(self, task_id: str, failed: str) -> str | None:
        return self.spares.pop(0) if self.spares else None

    def _in_state(self, state: str) -> list[tuple[str, str, str]]:
        """Leases in ``state`` if there are any (mostly), else all of them (stale ones too)."""
        live = [lease for lease in self.leases if any(
            lid == lease[1] and s == state for lid, s, _ in self.board.leases_of(lease[0]))]
        return live or self.leases

    def _status(self, task_id: str):
        return self.board.status([task_id])[0]

    @precondition(lambda self: self.tasks < 4)  # few tasks, so their rounds get played out
    @rule(replicas=st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True),
          lease_seconds=st.sampled_from([3.0, 10.0]))
    def post(self, replicas, lease_seconds) -> None:
        self.tasks += 1
        self.wanted[f"t{self.tasks}"] = len(replicas)
        self.board.post(f"t{self.tasks}", b"spec", frozenset({"c"}), tuple(replicas),
                        lease_seconds)

    @rule(choices=st.lists(st.sampled_from([*POOL, None]), max_size=4))
    def offer_spares(self, choices) -> None:
        self.spares = choices

    @rule(account=st.sampled_from(POOL))
    def lease(self, account) -> None:
        before = {s.task_id for s in self.board.status()
                  if s.replicas.get(account) == "assigned"}
        got = self.board.lease(account)
        if got is None:
            assert not before
            return
        assert got.account == account
        assert got.task_id in before, "a task leased to an account that is not its replica"
        assert (got.task_id, account) not in self.issued, "two leases of one (task, account)"
        self.issued.add((got.task_id, account))
        self.leases.append((account, got.lease_id, got.task_id))

    @rule(data=st.data())
    def lease_a_waiting_replica(self, data) -> None:
        waiting = sorted({a for s in self.board.status() for a, state in s.replicas.items()
                          if state == "assigned"})
        if waiting:
            self.lease(data.draw(st.sampled_from(waiting)))

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), payload=st.sampled_from(PAYLOADS))
    def commit(self, data, payload) -> None:
        account, lease_id, _ = data.draw(st.sampled_from(self._in_state("leased")))
        try:
            self.board.commit(account, lease_id, sha(payload))
        except BoardError:
            return
        assert lease_id not in self.commits
        self.commits[lease_id] = sha(payload)
        self.committed[lease_id] = payload

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), payload=st.sampled_from(PAYLOADS), honest=st.booleans())
    def reveal(self, data, payload, honest) -> None:
        account, lease_id, task_id = data.draw(st.sampled_from(self._in_state("committed")))
        if honest and lease_id in self.committed:
            payload = self.committed[lease_id]
        before = self._status(task_id)
        try:
            self.board.reveal(account, lease_id, payload)
        except BoardError:
            return
        assert all(state in ("committed", "revealed") for state in before.replicas.values()), \
            f"a reveal accepted before every replica committed: {before}"
        assert sha(payload) == self.commits[lease_id]
        self.revealed += 1

    @rule(payload=st.sampled_from(PAYLOADS))
    def everyone_leases_and_commits(self, payload) -> None:
        for account in POOL:
            self.lease(account)
        for account, lease_id, _ in list(self.leases):
            if lease_id not in self.commits:
                try:
                    self.board.commit(account, lease_id, sha(payload))
                except BoardError:
                    continue
                self.commits[lease_id] = sha(payload)
                self.committed[lease_id] = payload

    @rule()
    def everyone_reveals(self) -> None:
        for account, lease_id, task_id in list(self.leases):
            if lease_id in self.committed:
                before = self._status(task_id) if task_id in self._ids() else None
                try:
                    self.board.reveal(account, lease_id, self.committed[lease_id])
                except BoardError:
                    continue
                assert before is not None and all(
                    s in ("committed", "revealed") for s in before.replicas.values()), before
                self.revealed += 1

    def _ids(self) -> set[str]:
        return {s.task_id for s in self.board.status()}

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 4.0, 11.0]))
    def advance(self, seconds) -> None:
        self.now += seconds

    @invariant()
    def replicas_are_distinct_and_results_are_the_reveals(self) -> None:
        if not hasattr(self, "board"):
            return
        for status in self.board.status():
            assert not set(status.replicas) & set(status.failed)
            assert len(status.replicas) + status.missing == self.wanted[status.task_id]
            results = self.board.results(status.task_id)
            revealed = {a for a, s in status.replicas.items() if s == "revealed"}
            if status.done:
                assert results is not None and set(results) == revealed
            else:
                assert results is None


BoardMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60,
                                          deadline=None)
TestBoardInvariants = BoardMachine.TestCase
