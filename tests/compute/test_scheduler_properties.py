"""Invariants the exposure cap and TMR depend on, under random pools, datasets, jobs, failures
and re-leases: no account ever past the cap (the plan and the ledger agree), every item in
exactly one shard on three distinct accounts of one class, and a refused job refused with a
``needed`` that is enough and not more than enough.
"""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from databright.compute.exposure import CapExceededError, ExposureLedger, cap_items
from databright.compute.scheduler import Plan, PoolTooSmall, WorkerInfo, _assign, _needed, plan

CLASSES = ["cpu-avx2-t1", "cpu-avx512-t1", "cpu-avx2-t2"]


def account(n: int) -> str:
    return "0x" + f"{n:040x}"


def fresh_workers(start: int, count: int, cls: str) -> list[WorkerInfo]:
    return [WorkerInfo(account(start + k), cls) for k in range(count)]


def check_plan(p: Plan, n_items: int, pool: list[WorkerInfo], ledger: ExposureLedger,
               banned: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    classes = {w.account: w.determinism_class for w in pool}
    seen: list[int] = sorted(i for s in p.shards for i in s.items)
    assert seen == list(range(n_items)), "an item is in no shard or in two"
    for s in p.shards:
        assert len(s.replicas) == 3 == len(set(s.replicas)), s.replicas
        assert {classes[a] for a in s.replicas} == {p.determinism_class}
        assert not banned & set(s.replicas)
        assert p.shard_of(s.items[0]) is s
    for a in classes:
        assert p.projected_exposure(a) <= p.cap
        assert ledger.exposure(a, p.dataset) <= p.cap


class SchedulerMachine(RuleBasedStateMachine):
    """Pools grow, datasets grow, jobs run with failed and banned replicas re-leased."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = ExposureLedger(":memory:")
        self.pool: list[WorkerInfo] = []
        self.datasets: dict[int, list[int]] = {}  # id -> [n_items, cap_bps]
        self.banned: set[str] = set()
        self.next_account = 1
        self.jobs = 0

    @initialize(spare=st.integers(-4, 40), cls=st.sampled_from(CLASSES),
                cap_bps=st.sampled_from([500, 400]), extra=st.integers(0, 1200))
    def start(self, spare: int, cls: str, cap_bps: int, extra: int) -> None:
        self.add_dataset(cap_bps, extra)
        n_items, _ = self.datasets[0]
        self.add_workers(max(1, -(-3 * n_items // cap_items(n_items, cap_bps)) + spare), cls)

    @rule(count=st.integers(1, 25), cls=st.sampled_from(CLASSES))
    def add_workers(self, count: int, cls: str) -> None:
        self.pool += fresh_workers(self.next_account, count, cls)
        self.next_account += count

    @rule(cap_bps=st.sampled_from([500, 500, 500, 400, 120]), extra=st.integers(0, 1200))
    def add_dataset(self, cap_bps: int, extra: int) -> None:
        self.datasets[len(self.datasets)] = [-(-10_000 // cap_bps) + extra, cap_bps]

    @rule(data=st.data(), more=st.integers(1, 300))
    def grow_dataset(self, data: st.DataObject, more: int) -> None:
        ds = data.draw(st.sampled_from(sorted(self.datasets)))
        self.datasets[ds][0] += more  # accepted proposals add items at the end

    @rule(data=st.data(), seed=st.integers(0, 2**32), fail=st.floats(0, 0.3),
          ban=st.floats(0, 0.05), pinned=st.booleans())
    def run_job(self, data: st.DataObject, seed: int, fail: float, ban: float,
                pinned: bool) -> None:
        ds = data.draw(st.sampled_from(sorted(self.datasets)))
        n_items, cap_bps = self.datasets[ds]
        cls = data.draw(st.sampled_from(sorted({w.determinism_class for w in self.pool}))
                        ) if pinned else None
        live = [w for w in self.pool if w.account not in self.banned]
        try:
            p = plan(ds, n_items, live, self.ledger, cap_bps=cap_bps, seed=seed,
                     determinism_class=cls)
        except PoolTooSmall as e:
            event("job refused")
            self.check_needed(ds, n_items, cap_bps, live, e, cls)
            return
        event("job planned")
        self.jobs += 1
        check_plan(p, n_items, live, self.ledger, self.banned)
        rng = data.draw(st.randoms(use_true_random=False))
        for s in p.shards:
            failed: set[str] = set()
            for a in s.replicas:
                holder: str | None = a
                while holder is not None and rng.random() < fail:  # lease expired: re-lease
                    failed.add(holder)
                    if rng.random() < ban:  # or it lied and is banned for good
                        self.banned.add(holder)
                    holder = p.spare(s, exclude=failed | self.banned)
                if holder is not None:
                    # what the plan reserved, the ledger accepts: they agree on the cap
                    self.ledger.record(holder, ds, s.items, n_items=n_items, cap_bps=cap_bps)

    def check_needed(self, ds: int, n_items: int, cap_bps: int, live: list[WorkerInfo],
                     e: PoolTooSmall, cls: str | None) -> None:
        assert e.needed >= 1 and f"needs {e.needed} more worker" in str(e)
        if cls is not None:
            assert e.determinism_class == cls
        target = e.determinism_class or "new-class"
        more = fresh_workers(10**9, e.needed, target)
        p = plan(ds, n_items, live + more, self.ledger, cap_bps=cap_bps, seed=1,
                 determinism_class=target)  # enough: it is plannable now
        check_plan(p, n_items, live + more, self.ledger)
        if e.needed > 1:  # and not more than enough
            try:
                plan(ds, n_items, live + more[:-1], self.ledger, cap_bps=cap_bps, seed=1,
                     determinism_class=cls)
            except PoolTooSmall as fewer:
                assert fewer.needed == 1
            else:
                raise AssertionError(f"{e.needed - 1} more workers were already enough")

    @invariant()
    def nobody_past_the_cap(self) -> None:
        for ds, (n_items, cap_bps) in self.datasets.items():
            cap = cap_items(n_items, cap_bps)
            for acc, count in self.ledger.exposures(ds).items():
                assert count <= cap, (acc, ds, count, cap)
                assert len(self.ledger.items(acc, ds)) == count


TestScheduler = SchedulerMachine.TestCase
TestScheduler.settings = settings(max_examples=60, stateful_step_count=12, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])


def feasible(n_items: int, accounts: list[str], held: dict[str, set[int]], cap: int) -> bool:
    """An independent max flow: items need 3 distinct accounts, accounts `cap` items in all."""
    g = nx.DiGraph()
    for i in range(n_items):
        g.add_edge("s", ("i", i), capacity=3)
        for a in accounts:
            g.add_edge(("i", i), ("a", a), capacity=1)
    for a in accounts:
        h = held.get(a, set())
        if len(h) > cap:
            continue
        # an item already held costs nothing: route it through a free edge
        g.add_edge(("a", a), "t", capacity=cap - len(h))
        for i in h:
            g.add_edge(("i", i), ("a", a, "held"), capacity=1)
            g.remove_edge(("i", i), ("a", a))
        g.add_edge(("a", a, "held"), "t", capacity=len(h))
    return nx.maximum_flow_value(g, "s", "t") == 3 * n_items


@settings(max_examples=60, deadline=None)
@given(cap=st.integers(1, 6), rest=st.integers(0, 19), spare=st.integers(-2, 12),
       data=st.data())
def test_plan_exists_exactly_when_a_max_flow_says_so(cap: int, rest: int, spare: int,
                                                     data: st.DataObject) -> None:
    # Arbitrary earlier exposure (not only what this scheduler would have produced), on datasets
    # whose pool is near the 3·n/cap accounts the cap calls for.
    n_items = 20 * cap + rest
    assert cap_items(n_items, 500) == cap
    workers = -(-3 * n_items // cap) + spare
    accounts = [account(k + 1) for k in range(workers)]
    ledger = ExposureLedger(":memory:")
    held: dict[str, set[int]] = {}
    for a in accounts:
        items = data.draw(st.sets(st.integers(0, n_items - 1), max_size=cap))
        if items:
            ledger.record(a, 0, items, n_items=n_items, cap_bps=500)
            held[a] = items
    pool = [WorkerInfo(a, "c") for a in accounts]
    try:
        p = plan(0, n_items, pool, ledger, cap_bps=500, seed=data.draw(st.integers(0, 9)))
    except PoolTooSmall:
        event("refused")
        assert not feasible(n_items, accounts, held, cap)
    else:
        event("planned")
        assert feasible(n_items, accounts, held, cap)
        check_plan(p, n_items, pool, ledger)


@settings(max_examples=25, deadline=None)
@given(n_items=st.integers(200, 3000), spare_workers=st.integers(0, 20), seeds=st.tuples(
    st.integers(0, 2**32), st.integers(0, 2**32)))
def test_a_second_job_on_a_dataset_sends_nobody_a_new_item(n_items: int, spare_workers: int,
                                                           seeds: tuple[int, int]) -> None:
    cap = cap_items(n_items, 500)
    pool = fresh_workers(1, -(-3 * n_items // cap) + spare_workers, "c")
    ledger = ExposureLedger(":memory:")
    first = plan(3, n_items, pool, ledger, cap_bps=500, seed=seeds[0])
    for s in first.shards:
        for a in s.replicas:
            ledger.record(a, 3, s.items, n_items=n_items, cap_bps=500)
    before = ledger.exposures(3)
    second = plan(3, n_items, pool, ledger, cap_bps=500, seed=seeds[1])
    assert {w.account: second.projected_exposure(w.account) for w in pool if
            w.account in before} == before
    assert [s.items for s in second.shards] == [s.items for s in first.shards]
    for s in second.shards:
        for a in s.replicas:
            assert ledger.record(a, 3, s.items, n_items=n_items, cap_bps=500) == before[a]


def test_spare_refuses_rather_than_cross_the_cap() -> None:
    # 60 workers, 1000 items, cap 50: the plan itself spends every account's headroom.
    pool = fresh_workers(1, 60, "c")
    ledger = ExposureLedger(":memory:")
    p = plan(1, 1000, pool, ledger, cap_bps=500, seed=0)
    assert all(p.projected_exposure(w.account) == 50 for w in pool)
    assert p.spare(p.shards[0], exclude=[p.shards[0].replicas[0]]) is None
    # One more worker: it is the spare of the first re-lease, and then it is full too.
    extra = WorkerInfo(account(999), "c")
    q = plan(1, 1000, [*pool, extra], ledger, cap_bps=500, seed=0)
    idle = [w.account for w in [*pool, extra] if not q.reserved(w.account)]
    assert len(idle) == 1
    assert [q.spare(s) for s in q.shards] == idle + [None] * (len(q.shards) - 1)
    assert q.projected_exposure(idle[0]) == len(q.shards[0].items) <= 50
    ledger.record(idle[0], 1, q.shards[0].items, n_items=1000, cap_bps=500)
    with pytest.raises(CapExceededError):
        ledger.record(idle[0], 1, q.shards[1].items[:1], n_items=1000, cap_bps=500)
    assert ledger.exposure(idle[0], 1) == 50


def test_spare_prefers_an_account_that_already_holds_the_items() -> None:
    pool = fresh_workers(1, 70, "c")
    ledger = ExposureLedger(":memory:")
    p = plan(2, 1000, pool, ledger, cap_bps=500, seed=5)
    holder = next(w.account for w in pool if not p.reserved(w.account))
    ledger.record(holder, 2, p.shards[3].items[:10], n_items=1000, cap_bps=500)  # an earlier job
    assert p.spare(p.shards[3]) == holder
    assert p.projected_exposure(holder) == len(p.shards[3].items)


def max_flow_deficit(n_items: int, accounts: list[str], held: dict[str, set[int]], cap: int,
                     replicas: int = 3) -> int:
    """The replica slots no assignment can place, by networkx's maximum flow."""
    g = nx.DiGraph()
    g.add_nodes_from(["s", "t"])
    for i in range(n_items):
        g.add_edge("s", ("i", i), capacity=replicas)
    for a in accounts:
        h = held.get(a, set())
        if len(h) > cap:
            continue
        g.add_edge(("a", a), "t", capacity=cap - len(h))
        g.add_edge(("held", a), "t", capacity=len(h))
        for i in range(n_items):
            g.add_edge(("i", i), ("held", a) if i in h else ("a", a), capacity=1)
    return replicas * n_items - int(nx.maximum_flow_value(g, "s", "t"))


@settings(max_examples=300, deadline=None)
@given(n_items=st.integers(1, 9), cap=st.integers(1, 5), workers=st.integers(0, 9),
       data=st.data())
def test_the_assignment_is_a_maximum_flow_and_needed_is_the_fewest(
        n_items: int, cap: int, workers: int, data: st.DataObject) -> None:
    # Small instances with caps far above 5 % of the items: the geometry in which filling
    # account by account gets stuck and only moving earlier items makes room.
    accounts = [f"w{k}" for k in range(workers)]
    held = {a: data.draw(st.sets(st.integers(0, n_items - 1), max_size=cap + 1)) for a in accounts}
    got = _assign(n_items, accounts, held, cap, 3)
    assert got.deficit == max_flow_deficit(n_items, accounts, held, cap)
    for i, accs in enumerate(got.accounts):
        assert len(set(accs)) == len(accs) <= 3
        assert all(len(held[a]) <= cap for a in accs)
    for a in accounts:  # an account already past the cap gets nothing, others stay within it
        new = sum(a in accs and i not in held[a] for i, accs in enumerate(got.accounts))
        assert new == 0 or len(held[a]) + new <= cap
    if got.deficit:
        k = _needed(n_items, accounts, held, cap, 3, got)
        fresh = [f"fresh{m}" for m in range(k)]
        assert max_flow_deficit(n_items, accounts + fresh, held, cap) == 0
        assert max_flow_deficit(n_items, accounts + fresh[:-1], held, cap) > 0


def test_filling_gets_stuck_and_moving_an_earlier_item_makes_room() -> None:
    # w4 already holds items 2 and 4; filled account by account, one slot finds only accounts
    # that already serve its item, yet an assignment exists: the augmenting path finds it.
    accounts = [f"w{k}" for k in range(5)]
    held = {"w4": {2, 4}}
    got = _assign(5, accounts, held, 3, 3)
    assert max_flow_deficit(5, accounts, held, 3) == got.deficit == 0
    assert all(len(set(accs)) == 3 for accs in got.accounts)


def test_needed_counts_the_room_that_moving_items_onto_new_workers_frees() -> None:
    # Three slots cannot be placed, two of them item 3's, yet one more worker is enough: it
    # takes other items and frees room for item 3 on accounts that do not serve it yet.
    accounts = ["w0", "w1", "w2"]
    held = {"w2": {3}}
    got = _assign(4, accounts, held, 3, 3)
    assert max(got.unmet) == 2
    assert _needed(4, accounts, held, 3, 3, got) == 1
    assert max_flow_deficit(4, [*accounts, "fresh"], held, 3) == 0
