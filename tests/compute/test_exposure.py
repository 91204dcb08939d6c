"""The exposure ledger: distinct items per (account, dataset), the cap, atomic and durable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databright.compute.exposure import (
    MAX_CAP_BPS,
    CapExceededError,
    CapTooHighError,
    ExposureLedger,
    cap_items,
)
from databright.errors import DataBrightError, UsageError

ALICE = "0x" + "ab" * 20
BOB = "0x" + "cd" * 20


@pytest.fixture
def ledger(tmp_path: Path) -> ExposureLedger:
    return ExposureLedger(tmp_path / "exposure.sqlite")


def test_distinct_items_counted_once_over_jobs(ledger: ExposureLedger) -> None:
    assert ledger.record(ALICE, 1, [0, 1, 2], n_items=100, cap_bps=500) == 3
    assert ledger.record(ALICE, 1, [2, 1, 3], n_items=100, cap_bps=500) == 4  # a second job
    assert ledger.exposure(ALICE, 1) == 4
    assert ledger.items(ALICE, 1) == {0, 1, 2, 3}
    assert ledger.exposure(ALICE, 2) == 0 and ledger.exposure(BOB, 1) == 0  # per dataset, account
    assert ledger.holdings(1) == {ALICE: {0, 1, 2, 3}}


def test_accounts_are_case_insensitive_hex(ledger: ExposureLedger) -> None:
    ledger.record(ALICE.upper().replace("0X", "0x"), 1, [5], n_items=100, cap_bps=500)
    assert ledger.items(ALICE, 1) == {5}
    with pytest.raises(UsageError):
        ledger.record("alice", 1, [5], n_items=100, cap_bps=500)


def test_the_cap_refuses_and_records_nothing(ledger: ExposureLedger) -> None:
    assert cap_items(100, 500) == 5 and cap_items(119, 500) == 5 and cap_items(10_000, 500) == 500
    ledger.record(ALICE, 1, range(4), n_items=100, cap_bps=500)
    with pytest.raises(CapExceededError) as refused:
        ledger.record(ALICE, 1, [3, 4, 5], n_items=100, cap_bps=500)  # would be 6 > 5
    assert refused.value.would_hold == 6 and refused.value.limit == 5
    assert isinstance(refused.value, DataBrightError) and "cap of 5" in str(refused.value)
    assert ledger.items(ALICE, 1) == {0, 1, 2, 3}  # nothing of the refused batch
    assert ledger.record(ALICE, 1, [0, 4], n_items=100, cap_bps=500) == 5  # exactly the cap


def test_a_dataset_may_lower_the_cap_never_raise_it(ledger: ExposureLedger) -> None:
    assert MAX_CAP_BPS == 500
    for cap in (501, 10_000, 0, -1):
        with pytest.raises(CapTooHighError):
            ledger.record(ALICE, 1, [0], n_items=1000, cap_bps=cap)
    assert ledger.exposure(ALICE, 1) == 0
    ledger.record(ALICE, 1, range(10), n_items=1000, cap_bps=100)  # 1 %: 10 items
    with pytest.raises(CapExceededError):
        ledger.record(ALICE, 1, [10], n_items=1000, cap_bps=100)


def test_indices_outside_the_dataset_are_refused(ledger: ExposureLedger) -> None:
    for bad in (100, -1, True):
        with pytest.raises(UsageError):
            ledger.record(ALICE, 1, [bad], n_items=100, cap_bps=500)
    assert ledger.exposure(ALICE, 1) == 0


def test_persisted_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "exposure.sqlite"
    with ExposureLedger(path) as first:
        first.record(ALICE, "cifar", [9_999, 0, 4_242], n_items=10_000, cap_bps=500)
    with ExposureLedger(path) as again:
        assert again.items(ALICE, "cifar") == {0, 4_242, 9_999}
        assert again.exposures("cifar") == {ALICE: 3}
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sixty_accounts_at_the_cap_of_ten_thousand_items_is_fast(ledger: ExposureLedger) -> None:
    accounts = ["0x" + f"{k:040x}" for k in range(60)]
    t0 = time.perf_counter()
    for k, acc in enumerate(accounts):
        ledger.record(acc, 1, range(k * 100, k * 100 + 500), n_items=10_000, cap_bps=500)
    holdings = ledger.holdings(1)
    took = time.perf_counter() - t0
    assert all(len(holdings[a]) == 500 for a in accounts)
    assert took < 5.0, f"{took:.2f} s for 60 records and one read of 10,000 items"


WRITER = textwrap.dedent("""
    import random, sys
    from databright.compute.exposure import CapExceededError, ExposureLedger
    ledger = ExposureLedger(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    print("ready", flush=True)
    while True:
        acc = "0x" + f"{rng.randrange(8):040x}"
        try:
            ledger.record(acc, 1, rng.sample(range(2000), rng.randint(1, 40)),
                          n_items=2000, cap_bps=500)
        except CapExceededError:
            pass
""")


@pytest.mark.slow
def test_sigkill_mid_update_leaves_a_consistent_ledger(tmp_path: Path) -> None:
    path = tmp_path / "exposure.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    seen = []
    for k in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(k)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.05 + 0.03 * k)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT account, items, count FROM exposure").fetchall()
        db.close()
        for _, blob, count in rows:  # the bitmap and its count were written together
            assert int.from_bytes(blob, "little").bit_count() == count <= 100
        with ExposureLedger(path) as reopened:  # and it can still be written
            reopened.record(ALICE, 2, [k], n_items=2000, cap_bps=500)
        seen.append(sum(c for *_, c in rows))
    assert seen == sorted(seen) and seen[-1] > seen[0]  # exposure only grew across the kills


def test_two_coordinators_racing_for_the_same_headroom(tmp_path: Path) -> None:
    # Two connections to one file, each sending Alice disjoint batches as fast as it can: the
    # cap holds because each check-and-write is one immediate transaction.
    import threading

    path = tmp_path / "exposure.sqlite"
    ledgers = [ExposureLedger(path), ExposureLedger(path)]
    accepted: list[list[int]] = [[], []]

    def send(k: int) -> None:
        for batch in range(40):
            items = [k * 1000 + batch * 5 + j for j in range(5)]
            try:
                ledgers[k].record(ALICE, 1, items, n_items=2000, cap_bps=500)  # cap: 100
                accepted[k] += items
            except CapExceededError:
                pass

    threads = [threading.Thread(target=send, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledgers[0].items(ALICE, 1) == set(accepted[0]) | set(accepted[1])
    assert len(accepted[0]) + len(accepted[1]) == 100


@settings(max_examples=60, deadline=None)
@given(sends=st.lists(st.tuples(st.sampled_from([ALICE, BOB]),
                                st.lists(st.integers(0, 79), max_size=4)), max_size=6))
def test_a_batch_records_what_its_sends_would_one_by_one_or_nothing(sends) -> None:
    batch, single = ExposureLedger(":memory:"), ExposureLedger(":memory:")
    batch.record(BOB, 1, [0], n_items=80, cap_bps=500)
    single.record(BOB, 1, [0], n_items=80, cap_bps=500)
    try:
        want = [single.record(a, 1, i, n_items=80, cap_bps=500) for a, i in sends]
    except CapExceededError:
        with pytest.raises(CapExceededError):  # one send over the cap: the batch records nothing
            batch.record_many(sends, 1, n_items=80, cap_bps=500)
        assert batch.holdings(1) == {BOB: {0}}
        return
    assert batch.record_many(sends, 1, n_items=80, cap_bps=500) == want
    assert batch.holdings(1) == single.holdings(1)
