"""The task board: leases only to replicas, commit before reveal, reveals gated on every commit,
expiry and re-issue to a spare, a worker dying mid-task losing only its lease."""

from __future__ import annotations

import hashlib

import pytest

from databright.compute.board import BoardError, TaskBoard

A, B, C, D, E = "0xA", "0xB", "0xC", "0xD", "0xE"
CIDS = frozenset({"cid-1", "cid-2"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def board_with(spares=(), **kw):
    clock = Clock()
    asked: list[tuple[str, str]] = []
    queue = list(spares)

    def spare(task_id, failed):
        asked.append((task_id, failed))
        return queue.pop(0) if queue else None

    board = TaskBoard(clock, spare=spare, **kw)
    return board, clock, asked


def code_of(excinfo) -> str:
    return excinfo.value.code


def test_a_task_is_leased_once_to_each_replica_and_to_nobody_else():
    board, _, _ = board_with()
    board.post("t1", b'{"k":1}', CIDS, (A, B, C), lease_seconds=10)
    assert board.lease(D) is None
    lease = board.lease(A)
    assert lease is not None
    assert (lease.task_id, lease.account, lease.spec, lease.cids) == ("t1", A, b'{"k":1}', CIDS)
    assert lease.deadline == 1010.0
    assert board.lease(A) is None  # one lease per (task, account)
    assert board.lease(B).task_id == "t1"
    assert board.allowed_cids(A) == CIDS
    assert board.allowed_cids(D) == set()


def test_leases_come_oldest_task_first():
    board, _, _ = board_with()
    board.post("t1", b"1", CIDS, (A, B, C), 10)
    board.post("t2", b"2", CIDS, (A, D, E), 10)
    assert [board.lease(A).task_id, board.lease(A).task_id, board.lease(A)] == ["t1", "t2", None]


def test_reveals_open_only_after_every_replica_commits():
    board, _, _ = board_with()
    board.post("t1", b"s", CIDS, (A, B, C), 10)
    la, lb, lc = board.lease(A), board.lease(B), board.lease(C)
    assert board.commit(A, la.lease_id, sha(b"ra")) is False
    with pytest.raises(BoardError) as e:
        board.reveal(A, la.lease_id, b"ra")
    assert code_of(e) == "reveal_too_early"
    assert board.commit(B, lb.lease_id, sha(b"rb")) is False
    with pytest.raises(BoardError) as e:
        board.reveal(C, lc.lease_id, b"rc")
    assert code_of(e) == "not_committed"
    assert board.commit(C, lc.lease_id, sha(b"rc")) is True
    assert board.results("t1") is None
    board.reveal(A, la.lease_id, b"ra")
    board.reveal(B, lb.lease_id, b"rb")
    assert board.results("t1") is None
    board.reveal(C, lc.lease_id, b"rc")
    assert board.results("t1") == {A: b"ra", B: b"rb", C: b"rc"}
    # leases are spent: no blobs, no second reveal
    assert board.allowed_cids(A) == set()
    with pytest.raises(BoardError) as e:
        board.reveal(A, la.lease_id, b"ra")
    assert code_of(e) == "already_revealed"


def test_a_reveal_that_does_not_match_its_commit_is_refused_and_the_commit_stands():
    board, _, _ = board_with()
    board.post("t1", b"s", CIDS, (A,), 10)
    la = board.lease(A)
    board.commit(A, la.lease_id, sha(b"honest"))
    with pytest.raises(BoardError) as e:
        board.reveal(A, la.lease_id, b"other")
    assert (code_of(e), e.value.http_status) == ("reveal_mismatch", 409)
    assert board.results("t1") is None
    board.reveal(A, la.lease_id, b"honest")
    assert board.results("t1") == {A: b"honest"}


def test_commits_are_checked():
    board, _, _ = board_with()
    board.post("t1", b"s", CIDS, (A, B), 10)
    la = board.lease(A)
    for bad in ("00" * 31, "G" * 64, sha(b"x").upper(), 7):
        with pytest.raises(BoardError) as e:
            board.commit(A, la.lease_id, bad)
        assert (code_of(e), e.value.http_status) == ("malformed", 422)
    with pytest.raises(BoardError) as e:
        board.commit(B, la.lease_id, sha(b"x"))  # someone else's lease
    assert (code_of(e), e.value.http_status) == ("unknown_lease", 404)
    board.commit(A, la.lease_id, sha(b"x"))
    with pytest.raises(BoardError) as e:
        board.commit(A, la.lease_id, sha(b"y"))
    assert code_of(e) == "already_committed"


def test_an_oversize_reveal_is_refused():
    board, _, _ = board_with(max_payload_bytes=8)
    board.post("t1", b"s", CIDS, (A,), 10)
    la = board.lease(A)
    big = b"x" * 9
    board.commit(A, la.lease_id, sha(big))
    with pytest.raises(BoardError) as e:
        board.reveal(A, la.lease_id, big)
    assert (code_of(e), e.value.http_status) == ("payload_too_large", 413)


def test_an_expired_lease_is_dropped_and_reissued_to_the_spare():
    board, clock, asked = board_with(spares=[D])
    board.post("t1", b"s", CIDS, (A, B, C), lease_seconds=10)
    la, lb, lc = board.lease(A), board.lease(B), board.lease(C)
    board.commit(B, lb.lease_id, sha(b"r"))
    board.commit(C, lc.lease_id, sha(b"r"))
    clock.now += 10.5
    assert board.lease(D).task_id == "t1"  # the sweep asked the scheduler for a spare
    assert asked == [("t1", A)]
    with pytest.raises(BoardError) as e:
        board.commit(A, la.lease_id, sha(b"r"))
    assert (code_of(e), e.value.http_status) == ("lease_expired", 410)
    assert board.allowed_cids(A) == set()
    [status] = board.status()
    assert status.failed == (A,) and status.replicas == {B: "committed", C: "committed",
                                                         D: "leased"}
    assert not status.reveals_open


def test_without_a_spare_the_task_waits_with_a_missing_replica_until_one_is_assigned():
    board, clock, asked = board_with(spares=[])
    board.post("t1", b"s", CIDS, (A, B, C), lease_seconds=10)
    board.lease(A)
    clock.now += 11  # B and C never claimed, A never committed
    [status] = board.status()
    assert status.missing == 3 and set(status.failed) == {A, B, C}
    assert sorted(f for _, f in asked) == [A, B, C]
    with pytest.raises(BoardError):
        board.assign("t1", A)  # a replica that failed the task does not get it back
    board.assign("t1", D)
    assert board.lease(D).task_id == "t1"


def test_a_spare_that_is_already_a_replica_is_not_taken():
    board, clock, _ = board_with(spares=[B])
    board.post("t1", b"s", CIDS, (A, B), lease_seconds=10)
    board.lease(A)
    board.lease(B)
    clock.now += 11
    [status] = board.status()
    assert status.replicas == {} and status.missing == 2


def test_a_committed_replica_that_never_reveals_is_dropped_after_the_reveal_time():
    board, clock, asked = board_with(spares=[D], reveal_seconds=5)
    board.post("t1", b"s", CIDS, (A, B), lease_seconds=10)
    la, lb = board.lease(A), board.lease(B)
    board.commit(A, la.lease_id, sha(b"r"))
    clock.now += 8  # waiting for B's commit does not run down A's reveal time
    assert board.commit(B, lb.lease_id, sha(b"r")) is True
    board.reveal(B, lb.lease_id, b"r")
    clock.now += 6
    assert board.lease(D).task_id == "t1"
    assert asked == [("t1", A)]


def test_a_worker_killed_mid_task_loses_only_that_lease():
    board, clock, _ = board_with(spares=[D])
    board.post("t1", b"1", CIDS, (A, B, C), lease_seconds=10)
    board.post("t2", b"2", CIDS, (A, B, C), lease_seconds=30)
    leases = {acc: board.lease(acc) for acc in (A, B, C)}
    for acc in (B, C):
        board.commit(acc, leases[acc].lease_id, sha(b"r1"))
    # A dies holding t1's lease; it comes back after the deadline
    clock.now += 11
    la2 = board.lease(A)
    assert la2.task_id == "t2"  # its other work is untouched
    board.commit(A, la2.lease_id, sha(b"r2"))
    ld = board.lease(D)
    assert ld.task_id == "t1"
    board.commit(D, ld.lease_id, sha(b"r1"))
    for acc, lease in ((B, leases[B]), (C, leases[C]), (D, ld)):
        board.reveal(acc, lease.lease_id, b"r1")  # the survivors' commits stood
    assert board.results("t1") == {B: b"r1", C: b"r1", D: b"r1"}


def test_post_refuses_repeated_or_empty_replicas_and_reused_ids():
    board, _, _ = board_with()
    for replicas in ((A, A, B), ()):
        with pytest.raises(BoardError):
            board.post("t", b"s", CIDS, replicas, 10)
    board.post("t", b"s", CIDS, (A,), 10)
    with pytest.raises(BoardError):
        board.post("t", b"s", CIDS, (B,), 10)
    board.remove("t")
    with pytest.raises(BoardError) as e:
        board.results("t")
    assert code_of(e) == "unknown_task"


def test_concurrent_workers_each_get_their_tasks_once():
    import threading

    board = TaskBoard()
    accounts = [f"0x{i}" for i in range(6)]
    tasks = {f"t{i}": tuple(accounts[(i + k) % 6] for k in range(3)) for i in range(60)}
    for tid, replicas in tasks.items():
        board.post(tid, tid.encode(), CIDS, replicas, lease_seconds=60)
    got: dict[str, list[str]] = {a: [] for a in accounts}
    pending: dict[str, list] = {a: [] for a in accounts}

    def work(account: str) -> None:
        while (lease := board.lease(account)) is not None:
            got[account].append(lease.task_id)
            board.commit(account, lease.lease_id, sha(lease.spec))
            pending[account].append(lease)
        # reveal once everyone has committed (retrying the early ones)
        while pending[account]:
            lease = pending[account].pop(0)
            try:
                board.reveal(account, lease.lease_id, lease.spec)
            except BoardError as exc:
                assert exc.code == "reveal_too_early"
                pending[account].append(lease)

    threads = [threading.Thread(target=work, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for account in accounts:
        assert sorted(got[account]) == sorted(t for t, r in tasks.items() if account in r)
    for tid, replicas in tasks.items():
        assert board.results(tid) == {a: tid.encode() for a in replicas}


def test_wait_answer_wakes_on_a_commit_and_times_out_without_one():
    import threading
    import time as _time

    from databright.compute.board import TaskBoard

    board = TaskBoard()
    board.post("t", b"{}", frozenset(), ("0xa",), lease_seconds=30)
    lease = board.lease("0xa")
    assert lease is not None
    t0 = _time.monotonic()
    assert board.wait_answer(0.2) is False
    assert _time.monotonic() - t0 >= 0.2
    timer = threading.Timer(0.1, lambda: board.commit("0xa", lease.lease_id, "ab" * 32))
    timer.start()
    t0 = _time.monotonic()
    assert board.wait_answer(5.0) is True
    assert _time.monotonic() - t0 < 4.0
