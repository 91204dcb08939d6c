"""Plan a job's shards over the worker pool under the exposure cap.

Every item of the dataset goes to exactly one *shard*; every shard goes to ``replicas`` (3)
distinct worker accounts of one determinism class, so triple modular redundancy can compare
their results bit for bit. No account may ever hold more than the dataset's cap of distinct
items (:mod:`databright.compute.exposure`), counting what earlier jobs already sent it, so:

1. **Sticky first.** An item goes back to accounts that already hold it (at no cost to their
   headroom), so running another job on the same dataset with the same pool sends nobody a new
   item and exposure does not grow.
2. **Fill.** The remaining replica slots are filled replica round by replica round, item by item,
   over the accounts in a seeded order, each account until its headroom is spent: consecutive
   items share their three accounts, so shards are few and large.
3. **Augment.** A slot the fill could not place (every account left with headroom already holds
   that item's task) is placed by an augmenting path that moves other items between accounts.
   This is a maximum flow, so a job is refused only if no assignment exists; then
   :class:`PoolTooSmall` says how many fresh workers of the class would make it plannable (the
   fewest: it is found by re-planning with them).

The plan reserves, it does not record: the coordinator calls ``ledger.record`` when it actually
sends a task, and the ledger refuses anything past the cap even if two plans raced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from databright.compute.exposure import (
    DatasetId,
    ExposureLedger,
    cap_items,
    normalize_account,
)
from databright.errors import DataBrightError, UsageError


class PoolTooSmall(DataBrightError):
    """The registered pool cannot serve the job under the exposure cap."""

    http_status = 409

    def __init__(self, message: str, *, needed: int, determinism_class: str | None) -> None:
        super().__init__(message)
        self.needed = needed
        self.determinism_class = determinism_class


class DatasetTooSmallError(UsageError):
    """The cap rounds down to zero items per account: no pool can ever train on the dataset."""


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker as the scheduler sees it (from ComputeMarket)."""

    account: str
    determinism_class: str
    min_fee: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "account", normalize_account(self.account))


@dataclass(frozen=True)
class Shard:
    """Items trained together by the same replica accounts, fixed for a whole job."""

    index: int
    items: tuple[int, ...]
    replicas: tuple[str, ...]


def _rank(seed: int | str, account: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{account}".encode()).digest()


@dataclass
class _Assignment:
    """Result of the max-flow assignment: per item its accounts, and the slots left unplaced."""

    accounts: list[list[str]]
    unmet: list[int]

    @property
    def deficit(self) -> int:
        return sum(self.unmet)


def _assign(n_items: int, order: Sequence[str], held: Mapping[str, set[int]], cap: int,
            replicas: int) -> _Assignment:
    """Give every item ``replicas`` distinct accounts of ``order`` within each one's headroom."""
    usable = [a for a in order if len(held.get(a, ())) <= cap]
    headroom = {a: cap - len(held.get(a, ())) for a in usable}
    accounts: list[list[str]] = [[] for _ in range(n_items)]
    for a in usable:  # 1. sticky, in seeded order
        for i in held.get(a, ()):
            if i < n_items and len(accounts[i]) < replicas:
                accounts[i].append(a)
    taken = [set(acc) for acc in accounts]
    new: dict[str, dict[int, None]] = {a: {} for a in usable}  # insertion-ordered sets

    def give(i: int, a: str) -> None:
        accounts[i].append(a)
        taken[i].add(a)
        new[a][i] = None
        headroom[a] -= 1

    # 2. fill: round r places the (r+1)-th account of every item that has r, over a cursor.
    open_ = [a for a in usable if headroom[a] > 0]
    cursor = 0
    stuck: list[int] = []
    for r in range(replicas):
        for i in range(n_items):
            if len(accounts[i]) != r:
                continue
            j = cursor
            while j < len(open_) and (headroom[open_[j]] == 0 or open_[j] in taken[i]):
                j += 1
            if j == len(open_):
                stuck.append(i)
                continue
            give(i, open_[j])
            while cursor < len(open_) and headroom[open_[cursor]] == 0:
                cursor += 1

    # 3. augmenting paths for what the fill could not place. Accounts a failed search reached
    # cannot reach headroom until an augmentation changes the assignment: `dead` skips them.
    dead: set[str] = set()

    def augment(i: int) -> bool:
        parent: dict[str, tuple[str, int] | None] = {}
        queue = [a for a in usable if a not in taken[i] and a not in dead]
        for a in queue:
            parent[a] = None
        head = 0
        while head < len(queue):
            a = queue[head]
            head += 1
            if headroom[a] > 0:
                cur = a
                while (step := parent[cur]) is not None:
                    prev, j = step  # move item j from prev to cur
                    accounts[j][accounts[j].index(prev)] = cur
                    taken[j].discard(prev)
                    taken[j].add(cur)
                    del new[prev][j]
                    new[cur][j] = None
                    cur = prev
                headroom[a] -= 1
                accounts[i].append(cur)
                taken[i].add(cur)
                new[cur][i] = None
                dead.clear()
                return True
            for b in usable:
                if b in parent or b in dead:
                    continue
                for j in new[a]:
                    if b not in taken[j]:
                        parent[b] = (a, j)
                        queue.append(b)
                        break
        dead.update(parent)
        return False

    room = sum(headroom.values())  # an augmenting path ends at an account with headroom
    for i in stuck:
        while room and len(accounts[i]) < replicas and augment(i):
            room -= 1
    return _Assignment(accounts, [replicas - len(acc) for acc in accounts])


class Plan:
    """A job's shards, their replica accounts, and what they reserve of each account's cap."""

    def __init__(self, *, dataset: DatasetId, n_items: int, cap_bps: int, determinism_class: str,
                 seed: int | str, shards: list[Shard], candidates: Sequence[str],
                 ledger: ExposureLedger) -> None:
        self.dataset = dataset
        self.n_items = n_items
        self.cap_bps = cap_bps
        self.cap = cap_items(n_items, cap_bps)
        self.determinism_class = determinism_class
        self.seed = seed
        self.shards = shards
        self._candidates = list(candidates)  # the class's eligible accounts, seeded order
        self._ledger = ledger
        self._reserved: dict[str, set[int]] = {}
        self._shard_of: dict[int, int] = {}
        for s in shards:
            for a in s.replicas:
                self._reserved.setdefault(a, set()).update(s.items)
            for i in s.items:
                self._shard_of[i] = s.index

    def shard_of(self, item: int) -> Shard:
        """The shard an item belongs to."""
        return self.shards[self._shard_of[item]]

    def reserved(self, account: str) -> set[int]:
        """The items this plan may send the account (its shards' and spare leases' items)."""
        return set(self._reserved.get(normalize_account(account), ()))

    def projected_exposure(self, account: str) -> int:
        """The account's exposure once everything this plan reserves for it has been sent."""
        acc = normalize_account(account)
        return len(self._ledger.items(acc, self.dataset) | self._reserved.get(acc, set()))

    def spare(self, shard: Shard | int, exclude: Iterable[str] = ()) -> str | None:
        """A replacement replica for a re-lease of ``shard``, or None if no account can take it.

        The spare is of the plan's class, not one of the shard's replicas nor in ``exclude``
        (failed, silent or banned accounts), and stays within the cap counting the ledger as it
        is now and everything this plan already reserved for it. Accounts that already hold most
        of the shard's items come first (the re-lease then grows exposure least). The shard's
        items are reserved for the spare; the caller records them when it sends the task.
        """
        s = self.shards[shard if isinstance(shard, int) else shard.index]
        skip = set(s.replicas) | {normalize_account(a) for a in exclude}
        holdings = self._ledger.holdings(self.dataset)
        items = set(s.items)
        best: tuple[int, int, str] | None = None
        for pos, acc in enumerate(self._candidates):
            if acc in skip:
                continue
            before = holdings.get(acc, set()) | self._reserved.get(acc, set())
            after = len(before | items)
            if after <= self.cap and (best is None or (after - len(before), pos) < best[:2]):
                best = (after - len(before), pos, acc)
        if best is None:
            return None
        self._reserved.setdefault(best[2], set()).update(items)
        return best[2]

    def as_dict(self) -> dict[str, object]:
        """The plan as JSON-ready data."""
        return {"dataset": str(self.dataset), "n_items": self.n_items, "cap_bps": self.cap_bps,
                "cap_items": self.cap, "determinism_class": self.determinism_class,
                "seed": self.seed,
                "shards": [{"index": s.index, "items": list(s.items),
                            "replicas": list(s.replicas)} for s in self.shards]}


@dataclass
class _ClassTry:
    determinism_class: str | None
    order: list[str]
    assignment: _Assignment
    needed: int = field(default=0)


def _needed(n_items: int, order: list[str], held: Mapping[str, set[int]], cap: int,
            replicas: int, first: _Assignment) -> int:
    """The fewest fresh accounts that, added to ``order``, make the assignment complete."""
    # Removing k accounts of capacity `cap` costs a flow at most k·cap, so k ≥ deficit / cap;
    # k = max(that, the largest per-item shortfall) is always enough (slots dealt round-robin).
    low = max(1, -(-first.deficit // cap))
    high = max(low, max(first.unmet))
    for k in range(low, high):
        fresh = [f"fresh:{n}" for n in range(k)]
        if _assign(n_items, order + fresh, held, cap, replicas).deficit == 0:
            return k
    return high


def plan(dataset: DatasetId, n_items: int, pool: Iterable[WorkerInfo], ledger: ExposureLedger,
         *, cap_bps: int, replicas: int = 3, seed: int | str, determinism_class: str | None = None,
         max_fee: int | None = None, exclude: Iterable[str] = ()) -> Plan:
    """Shard a job on ``dataset`` over ``pool`` under the cap; deterministic given ``seed``.

    Args:
        dataset: the dataset id (the ledger's key).
        n_items: the dataset's items, indices ``0..n_items-1``, each in exactly one shard.
        pool: the registered workers; the job runs on one determinism class of them.
        ledger: what every account has already been sent of the dataset.
        cap_bps: the dataset's cap (≤ ``MAX_CAP_BPS``).
        replicas: distinct accounts per shard (3 for TMR).
        seed: orders the accounts (so which accounts pair up is not chosen by anyone); it must
            be secret until the plan is fixed (drawn by the coordinator, not the program's
            public seed), or colluders could pick addresses that land in one shard.
        determinism_class: run on this class; by default the feasible class with the most
            eligible workers (ties by name).
        max_fee: leave out workers whose minimum fee per task is above it.
        exclude: accounts not to use (banned).

    Raises:
        PoolTooSmall: no class can serve the job; ``needed`` more workers of
            ``determinism_class`` (the class needing fewest) would make it plannable.
        DatasetTooSmallError: the cap allows no item at all to any account.
    """
    if replicas < 1:
        raise UsageError(f"replicas must be at least 1: {replicas}")
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise UsageError(f"a job needs a dataset with items: {n_items!r}")
    cap = cap_items(n_items, cap_bps)
    if cap == 0 and n_items > 0:
        raise DatasetTooSmallError(
            f"dataset {dataset} has {n_items} items: a cap of {cap_bps} bps allows no worker "
            f"any item (it needs at least {-(-10_000 // cap_bps)} items)")
    banned = {normalize_account(a) for a in exclude}
    classes: dict[str, list[str]] = {}
    for w in pool:
        if w.account in banned or (max_fee is not None and w.min_fee > max_fee):
            continue
        members = classes.setdefault(w.determinism_class, [])
        if w.account not in members:
            members.append(w.account)
    if determinism_class is not None:
        names = [determinism_class]
    else:
        names = sorted(classes, key=lambda c: (-len(classes[c]), c))
    holdings = ledger.holdings(dataset)
    tries: list[_ClassTry] = []
    for name in names:
        order = sorted(classes.get(name, []), key=lambda a: _rank(seed, a))
        assignment = _assign(n_items, order, holdings, cap, replicas)
        if assignment.deficit == 0:
            return Plan(dataset=dataset, n_items=n_items, cap_bps=cap_bps,
                        determinism_class=name, seed=seed,
                        shards=_shards(assignment.accounts, order), candidates=order,
                        ledger=ledger)
        tries.append(_ClassTry(name, order, assignment))
    if not tries:  # no worker at all: a fresh class
        tries.append(_ClassTry(None, [], _assign(n_items, [], holdings, cap, replicas)))
    for t in tries:
        t.needed = _needed(n_items, t.order, holdings, cap, replicas, t.assignment)
    best = min(tries, key=lambda t: t.needed)
    which = f"class {best.determinism_class}" if best.determinism_class else "a determinism class"
    raise PoolTooSmall(
        f"the pool cannot serve dataset {dataset} ({n_items} items × {replicas} replicas) under "
        f"its exposure cap of {cap} items per account ({cap_bps} bps): {which} needs "
        f"{best.needed} more worker{'s' if best.needed != 1 else ''}",
        needed=best.needed, determinism_class=best.determinism_class)


def _shards(accounts: list[list[str]], order: list[str]) -> list[Shard]:
    """Group items by their replica set; shards numbered by their first item."""
    pos = {a: n for n, a in enumerate(order)}
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, accs in enumerate(accounts):
        groups.setdefault(tuple(sorted(accs, key=pos.__getitem__)), []).append(i)
    ordered = sorted(groups.items(), key=lambda kv: kv[1][0])
    return [Shard(n, tuple(items), replicas) for n, (replicas, items) in enumerate(ordered)]
