"""The scheduler's choices a coordinator relies on: which class, which accounts, the refusals."""

from __future__ import annotations

import pytest

from databright.compute.exposure import ExposureLedger
from databright.compute.scheduler import (
    DatasetTooSmallError,
    PoolTooSmall,
    WorkerInfo,
    plan,
)
from databright.errors import UsageError


def workers(count: int, cls: str, start: int = 1, fee: int = 0) -> list[WorkerInfo]:
    return [WorkerInfo("0x" + f"{start + k:040x}", cls, fee) for k in range(count)]


@pytest.fixture
def ledger() -> ExposureLedger:
    return ExposureLedger(":memory:")


def test_sixty_workers_serve_a_thousand_items_at_five_percent(ledger: ExposureLedger) -> None:
    pool = workers(60, "avx2-t1")
    p = plan("d", 1000, pool, ledger, cap_bps=500, seed=7)
    assert p.cap == 50 and p.determinism_class == "avx2-t1"
    assert [len(s.items) for s in p.shards] == [50] * 20  # few, large shards
    assert all(p.projected_exposure(w.account) == 50 for w in pool)
    with pytest.raises(PoolTooSmall) as refused:
        plan("d", 1000, pool[:59], ledger, cap_bps=500, seed=7)
    assert refused.value.needed == 1 and refused.value.determinism_class == "avx2-t1"
    assert "needs 1 more worker" in str(refused.value) and "50 items per account" in str(
        refused.value)


def test_a_lower_cap_needs_a_larger_pool(ledger: ExposureLedger) -> None:
    with pytest.raises(PoolTooSmall) as refused:
        plan("d", 1000, workers(60, "c"), ledger, cap_bps=250, seed=0)  # 25 items each
    assert refused.value.needed == 60
    plan("d", 1000, workers(120, "c"), ledger, cap_bps=250, seed=0)
    with pytest.raises(UsageError):
        plan("d", 1000, workers(60, "c"), ledger, cap_bps=600, seed=0)  # never higher than 5 %


def test_a_dataset_too_small_for_any_worker(ledger: ExposureLedger) -> None:
    with pytest.raises(DatasetTooSmallError, match="at least 20 items"):
        plan("d", 19, workers(100, "c"), ledger, cap_bps=500, seed=0)


def test_one_class_per_job_the_largest_that_can_serve_it(ledger: ExposureLedger) -> None:
    pool = workers(61, "gpu-a", start=1) + workers(70, "cpu-b", start=100) + workers(
        10, "cpu-c", start=200)
    p = plan("d", 1000, pool, ledger, cap_bps=500, seed=1)
    assert p.determinism_class == "cpu-b"
    classes = {w.account: w.determinism_class for w in pool}
    assert {classes[a] for s in p.shards for a in s.replicas} == {"cpu-b"}
    assert plan("d", 1000, pool, ledger, cap_bps=500, seed=1,
                determinism_class="gpu-a").determinism_class == "gpu-a"
    with pytest.raises(PoolTooSmall) as refused:
        plan("d", 1000, pool, ledger, cap_bps=500, seed=1, determinism_class="cpu-c")
    assert refused.value.needed == 50 and refused.value.determinism_class == "cpu-c"


def test_refused_pool_names_the_class_needing_fewest(ledger: ExposureLedger) -> None:
    pool = workers(40, "a", start=1) + workers(55, "b", start=100)
    with pytest.raises(PoolTooSmall) as refused:
        plan("d", 1000, pool, ledger, cap_bps=500, seed=1)
    assert (refused.value.determinism_class, refused.value.needed) == ("b", 5)
    with pytest.raises(PoolTooSmall) as empty:
        plan("d", 1000, [], ledger, cap_bps=500, seed=1)
    assert (empty.value.determinism_class, empty.value.needed) == (None, 60)


def test_banned_and_too_expensive_workers_are_left_out(ledger: ExposureLedger) -> None:
    pool = workers(60, "c", fee=10) + workers(5, "c", start=500, fee=10**18)
    banned = pool[0].account
    with pytest.raises(PoolTooSmall) as refused:
        plan("d", 1000, pool, ledger, cap_bps=500, seed=1, exclude=[banned], max_fee=100)
    assert refused.value.needed == 1
    p = plan("d", 1000, pool, ledger, cap_bps=500, seed=1, exclude=[banned])
    used = {a for s in p.shards for a in s.replicas}
    assert banned not in used
    assert p.spare(p.shards[0], exclude=[]) not in {banned, None}


def test_deterministic_given_the_seed(ledger: ExposureLedger) -> None:
    pool = workers(75, "c")
    a = plan("d", 1234, pool, ledger, cap_bps=500, seed=42).as_dict()
    b = plan("d", 1234, list(reversed(pool)), ledger, cap_bps=500, seed=42).as_dict()
    c = plan("d", 1234, pool, ledger, cap_bps=500, seed=43).as_dict()
    assert a == b  # the order the pool is listed in does not matter, the seed does
    assert a["shards"] != c["shards"]
