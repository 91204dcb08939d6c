"""Stateful property test: random create/commit/propose/vote/score/transfer/finalize/dividends.

A plain-Python model follows every step; after each step the invariants are checked: balances
sum to the supply; vote weights equal (so never exceed) balances at the snapshot (the commit
block) and shares moved after it add no weight; no double vote; withdrawn + withdrawable matches
the per-share allocation up to the documented dust, and the allocation plus the carried rounding
matches what was distributed; nobody is paid more than earned; every accepted batch earns at
most its price at its place in proposal order; finalized proposals never change; no ether is
stuck or created (held dividends included). Rules include maximal scores, copycat attempts
(someone else's commitment, a pending or registered root), distribute/withdraw loops and
zero-amount moves by third parties.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import boa
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.contracts.conftest import (
    ACCEPTED,
    ETHER,
    EXPIRED,
    OPEN,
    REJECTED,
    ZERO,
    create_dataset,
    deploy_market,
    new_account,
)

USERS = 4
FUNDS = 10**6 * ETHER
PERIOD = 1800
BPS = 10_000
MAG = 2**32
COMMIT_TTL = 86400


@dataclass
class DatasetModel:
    token: Any
    quorum: int
    approval: int
    stake: int
    r0: int
    n0: int
    evaluator: str
    items: int
    balances: dict[str, int]
    pending: int = 0
    roots: dict[bytes, int] = field(default_factory=dict)  # 1 pending, 2 registered
    earned: dict[str, Fraction] = field(default_factory=dict)
    distributions: int = 0
    carry: int = 0
    allocated: Fraction = Fraction(0)
    distributed: int = 0


@dataclass
class CommitModel:
    user: str
    dataset_id: int
    root: bytes
    items: int
    block: int
    timestamp: int
    snapshot: dict[str, int] | None = None
    supply: int | None = None


@dataclass
class ProposalModel:
    dataset_id: int
    proposer: str
    root: bytes
    items: int
    stake: int
    block: int  # the snapshot: the commit block
    deadline: int
    position: int
    snapshot: dict[str, int]
    supply: int
    votes: dict[str, tuple[bool, int]] = field(default_factory=dict)
    score: int | None = None
    status: int = OPEN


def price(r0: int, n0: int, n: int, c: int, score: int = BPS) -> int:
    return r0 * n0 * n0 * c // ((n0 + n) * (n0 + n + c)) * score // BPS


class MarketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.market = deploy_market()
        self.users = [new_account(FUNDS) for _ in range(USERS)]
        self.datasets: dict[int, DatasetModel] = {}
        self.proposals: dict[int, ProposalModel] = {}
        self.commits: list[CommitModel] = []
        self.frozen: dict[int, Any] = {}
        self.checked: set[int] = set()
        self.refunds = {u: 0 for u in self.users}
        self.roots_made = 0
        self.total_ether = self._ether_total()

    # --- helpers ------------------------------------------------------------------------------

    def _ether_total(self) -> int:
        accounts = [*self.users, self.market.address]
        accounts += [d.token.address for d in self.datasets.values()]
        return sum(boa.env.get_balance(a) for a in accounts)

    def _block(self) -> int:
        return boa.env.evm.patch.block_number

    def _now(self) -> int:
        return boa.env.evm.patch.timestamp

    def _advance(self, seconds: int) -> None:
        """Every block change goes through here: freeze snapshots taken in this block first."""
        for c in self.commits:
            if c.snapshot is None:
                d = self.datasets[c.dataset_id]
                c.snapshot = dict(d.balances)
                c.supply = sum(d.balances.values())
        boa.env.time_travel(seconds=max(seconds, 12))

    def _dataset(self, which: int) -> tuple[int, DatasetModel]:
        dataset_id = sorted(self.datasets)[which % len(self.datasets)]
        return dataset_id, self.datasets[dataset_id]

    def _pay_dividend(self, d: DatasetModel, value: int) -> None:
        """The contract's allocation, exactly: growth of the per-share total, carry."""
        supply = sum(d.balances.values())
        total = value + d.carry
        growth = total * MAG // supply
        d.carry = total - -(-growth * supply // MAG)
        for u, bal in d.balances.items():
            d.earned[u] = d.earned.get(u, Fraction(0)) + Fraction(bal * growth, MAG)
        d.allocated += Fraction(growth * supply, MAG)
        d.distributed += value
        d.distributions += 1

    def _fresh_root(self) -> bytes:
        self.roots_made += 1
        return (2**160 + self.roots_made).to_bytes(32, "big")

    # --- datasets -----------------------------------------------------------------------------

    def _create(self, initiator, quorum, approval, stake, seed, evaluator):
        user = self.users[initiator]
        name = f"ds{len(self.datasets)}"
        r0, n0 = 10 * ETHER, 1000
        judge = ZERO if evaluator is None else self.users[evaluator]
        dataset_id, token = create_dataset(
            self.market,
            user,
            name,
            quorum_bps=quorum,
            approval_bps=approval,
            stake=stake,
            seed_count=seed,
            seed_root=b"\x01" * 32,
            reward_r0=r0,
            reward_n0=n0,
            voting_period=PERIOD,
            evaluator=judge,
        )
        balances = {u: 0 for u in self.users}
        balances[user] = price(r0, n0, 0, seed)
        d = DatasetModel(token, quorum, approval, stake, r0, n0, judge, seed, balances)
        d.roots[b"\x01" * 32] = 2
        self.datasets[dataset_id] = d
        return d

    rules_strategy: ClassVar[dict[str, Any]] = {
        "initiator": st.integers(0, USERS - 1),
        "quorum": st.sampled_from([1, 2000, 5000, 10_000]),
        "approval": st.sampled_from([0, 5000, 6667, 10_000]),
        "stake": st.sampled_from([0, 1, 10**16]),
        "seed": st.integers(1, 500),
        "evaluator": st.one_of(st.none(), st.integers(0, USERS - 1)),
    }

    @initialize(
        spread=st.lists(st.integers(0, 60), min_size=USERS - 1, max_size=USERS - 1),
        **rules_strategy,
    )
    def first_dataset(self, spread, initiator, quorum, approval, stake, seed, evaluator):
        """Every run starts with a dataset whose shares are spread over the users."""
        d = self._create(initiator, quorum, approval, stake, seed, evaluator)
        a = self.users[initiator]
        others = [u for u in self.users if u != a]
        for b, pct in zip(others, spread):
            amount = d.balances[a] * pct // 100
            with boa.env.prank(a):
                d.token.transfer(b, amount)
            d.balances[a] -= amount
            d.balances[b] += amount

    @precondition(lambda self: len(self.datasets) < 2)
    @rule(**rules_strategy)
    def create(self, initiator, quorum, approval, stake, seed, evaluator):
        self._create(initiator, quorum, approval, stake, seed, evaluator)

    # --- commit / propose ---------------------------------------------------------------------

    @precondition(lambda self: self.datasets)
    @rule(
        which=st.integers(0, 1),
        proposer=st.integers(0, USERS - 1),
        items=st.integers(1, 10**5),
        copy=st.integers(0, 10**6),
        copy_root=st.booleans(),
    )
    def commit(self, which, proposer, items, copy, copy_root):
        """Commit to a batch: a fresh root, or (copycat) the root of an existing proposal."""
        self._commit(which, proposer, items, copy, copy_root)

    def _commit(self, which, proposer, items, copy, copy_root) -> CommitModel:
        dataset_id, _ = self._dataset(which)
        user = self.users[proposer]
        same = [p for p in self.proposals.values() if p.dataset_id == dataset_id]
        if copy_root and same:
            root = same[copy % len(same)].root
            event("copycat commit")
        else:
            root = self._fresh_root()
        c = self.market.commitment_of(user, dataset_id, "bafkreim", root, items)
        with boa.env.prank(user):
            self.market.commit(dataset_id, c)
        self.commits = [
            x
            for x in self.commits
            if not (x.user == user and (x.dataset_id, x.root, x.items) == (dataset_id, root, items))
        ]
        self.commits.append(CommitModel(user, dataset_id, root, items, self._block(), self._now()))
        return self.commits[-1]

    @precondition(lambda self: self.commits)
    @rule(which=st.integers(0, 10**6), thief=st.integers(0, USERS - 1))
    def reveal(self, which, thief):
        """Reveal a commitment; as someone else than its author, it must fail."""
        c = self.commits[which % len(self.commits)]
        user = self.users[thief]
        if user != c.user:
            with boa.env.prank(user), boa.reverts("market: no commitment"):
                self.market.propose(c.dataset_id, "bafkreim", c.root, c.items, value=self._stake(c))
            event("copycat reveal refused")
            return
        self._reveal(c)

    def _stake(self, c: CommitModel) -> int:
        return self.datasets[c.dataset_id].stake

    def _reveal(self, c: CommitModel) -> int | None:
        d = self.datasets[c.dataset_id]
        reason = None
        if c.block >= self._block():
            reason = "market: commitment too new"
        elif self._now() > c.timestamp + COMMIT_TTL:
            reason = "market: commitment expired"
        elif d.roots.get(c.root) == 1:
            reason = "market: root pending"
        elif d.roots.get(c.root) == 2:
            reason = "market: root registered"
        if reason:
            with boa.env.prank(c.user), boa.reverts(reason):
                self.market.propose(c.dataset_id, "bafkreim", c.root, c.items, value=d.stake)
            event(reason)
            return None
        with boa.env.prank(c.user):
            pid = self.market.propose(c.dataset_id, "bafkreim", c.root, c.items, value=d.stake)
        self.commits.remove(c)
        assert c.snapshot is not None and c.supply is not None
        position = d.items + d.pending
        d.pending += c.items
        d.roots[c.root] = 1
        self.proposals[pid] = ProposalModel(
            c.dataset_id,
            c.user,
            c.root,
            c.items,
            d.stake,
            c.block,
            self._now() + PERIOD,
            position,
            c.snapshot,
            c.supply,
        )
        assert self.market.get_proposal(pid).position == position
        return pid

    @precondition(lambda self: self.datasets)
    @rule(
        which=st.integers(0, 1),
        proposer=st.integers(0, USERS - 1),
        items=st.integers(1, 10**5),
        mine=st.booleans(),
    )
    def propose(self, which, proposer, items, mine):
        """Commit, mine a block, reveal (what the Python wrapper does)."""
        c = self._commit(which, proposer, items, 0, False)
        self._advance(12)
        self._reveal(c)
        if mine:
            self._advance(12)

    # --- shares -------------------------------------------------------------------------------

    @precondition(lambda self: self.datasets)
    @rule(
        which=st.integers(0, 1),
        src=st.integers(0, USERS - 1),
        dst=st.integers(0, USERS - 1),
        fraction=st.sampled_from([0, 1, 3, 50, 100]),
    )
    def transfer(self, which, src, dst, fraction):
        _, d = self._dataset(which)
        a, b = self.users[src], self.users[dst]
        amount = d.balances[a] * fraction // 100
        with boa.env.prank(a):
            d.token.transfer(b, amount)
        d.balances[a] -= amount
        d.balances[b] += amount

    @precondition(lambda self: self.datasets)
    @rule(
        which=st.integers(0, 1),
        caller=st.integers(0, USERS - 1),
        victim=st.integers(0, USERS - 1),
        dst=st.integers(0, USERS - 1),
    )
    def zero_transfer_from(self, which, caller, victim, dst):
        """A third party's zero-amount transferFrom: no allowance needed, nothing changes."""
        _, d = self._dataset(which)
        with boa.env.prank(self.users[caller]):
            assert d.token.transferFrom(self.users[victim], self.users[dst], 0)

    # --- votes and scores ---------------------------------------------------------------------

    @precondition(lambda self: self.proposals)
    @rule(which=st.integers(0, 10**6), voter=st.integers(0, USERS - 1), support=st.booleans())
    def vote(self, which, voter, support):
        self._vote(self._pick(which), voter, support)

    @precondition(lambda self: self.proposals)
    @rule(supports=st.lists(st.booleans(), min_size=USERS, max_size=USERS))
    def everyone_votes(self, supports):
        """All users vote on the newest proposal (drives proposals to a decision)."""
        pid = max(self.proposals)
        for voter, support in enumerate(supports):
            self._vote(pid, voter, support)

    @precondition(lambda self: self.proposals)
    @rule(
        which=st.integers(0, 10**6),
        poster=st.integers(0, USERS - 1),
        score=st.sampled_from([0, 1, 5000, 10_000, 19_999, 20_000, 20_000, 20_001]),
    )
    def post_score(self, which, poster, score):
        pid = self._pick(which)
        p = self.proposals[pid]
        d = self.datasets[p.dataset_id]
        user = self.users[poster]
        # the evaluator is the poster most of the time
        if d.evaluator != ZERO and which % 3:
            user = d.evaluator
        reason = None
        if p.status != OPEN:
            reason = "market: proposal not open"
        elif self._now() >= p.deadline:
            reason = "market: voting closed"
        elif user != d.evaluator:
            reason = "market: only evaluator"
        elif p.score is not None:
            reason = "market: already scored"
        elif score > 20_000:
            reason = "market: score out of range"
        if reason:
            with boa.env.prank(user), boa.reverts(reason):
                self.market.post_score(pid, score)
            return
        with boa.env.prank(user):
            self.market.post_score(pid, score)
        p.score = score
        event("scored")

    @rule(
        which=st.integers(0, 1),
        proposer=st.integers(0, USERS - 1),
        items=st.integers(1, 10**5),
        supports=st.lists(st.booleans(), min_size=USERS, max_size=USERS),
        score=st.sampled_from([None, 20_000, 10_000, 0]),
        travel=st.booleans(),
    )
    def full_round(self, which, proposer, items, supports, score, travel):
        """Propose, score, let everyone vote, finalize (early or after the deadline)."""
        if not self.datasets:
            return
        before = set(self.proposals)
        self.propose(which, proposer, items, mine=False)
        new = set(self.proposals) - before
        if not new:
            return
        (pid,) = new
        d = self.datasets[self.proposals[pid].dataset_id]
        if score is not None and d.evaluator != ZERO:
            with boa.env.prank(d.evaluator):
                self.market.post_score(pid, score)
            self.proposals[pid].score = score
        for voter, support in enumerate(supports):
            self._vote(pid, voter, support)
        self._finalize(pid, travel)

    def _pick(self, which: int) -> int:
        """A proposal id, preferring open ones."""
        open_ids = sorted(i for i, p in self.proposals.items() if p.status == OPEN)
        ids = open_ids if open_ids and which % 4 else sorted(self.proposals)
        return ids[which % len(ids)]

    def _vote(self, pid: int, voter: int, support: bool) -> None:
        p = self.proposals[pid]
        user = self.users[voter]
        reason = None
        if p.status != OPEN:
            reason = "market: proposal not open"
        elif self._now() >= p.deadline:
            reason = "market: voting closed"
        elif user in p.votes:
            reason = "market: already voted"
        elif p.snapshot[user] == 0:
            reason = "market: no voting power"
        if reason:
            with boa.env.prank(user), boa.reverts(reason):
                self.market.vote(pid, support)
            return
        with boa.env.prank(user):
            self.market.vote(pid, support)
        p.votes[user] = (support, p.snapshot[user])
        event("voted")

    # --- finalize -----------------------------------------------------------------------------

    @precondition(lambda self: self.proposals)
    @rule(which=st.integers(0, 10**6), travel=st.booleans())
    def finalize(self, which, travel):
        self._finalize(self._pick(which), travel)

    def _finalize(self, pid: int, travel: bool) -> None:
        p = self.proposals[pid]
        if travel and p.status == OPEN and self._now() < p.deadline:
            self._advance(p.deadline - self._now())
        expected = self._predict(p)
        if expected in ("market: proposal not open", "market: outcome not final"):
            with boa.reverts(expected):
                self.market.finalize(pid)
            return
        self.market.finalize(pid)
        d = self.datasets[p.dataset_id]
        p.status = expected
        d.pending -= p.items
        if expected == ACCEPTED:
            score = BPS if p.score is None else p.score
            # the place at propose, or accepted + pending - own now if smaller (d.pending no
            # longer counts this batch)
            position = min(p.position, d.items + d.pending)
            shares = price(d.r0, d.n0, position, p.items, score)
            d.items += p.items
            d.balances[p.proposer] += shares
            d.roots[p.root] = 2
            assert self.market.get_proposal(pid).shares_minted == shares
        else:
            d.roots.pop(p.root, None)
        if expected in (ACCEPTED, EXPIRED):
            self.refunds[p.proposer] += p.stake
        if expected == REJECTED and p.stake:
            self._pay_dividend(d, p.stake)
        self.frozen[pid] = self.market.get_proposal(pid)
        assert self.frozen[pid].status == expected
        event(f"finalized {['', 'open', 'accepted', 'rejected', 'expired'][expected]}")

    def _predict(self, p: ProposalModel) -> Any:
        if p.status != OPEN:
            return "market: proposal not open"
        d = self.datasets[p.dataset_id]
        yes = sum(w for s, w in p.votes.values() if s)
        no = sum(w for s, w in p.votes.values() if not s)
        supply = p.supply
        quorum = (yes + no) * BPS >= d.quorum * supply
        if self._now() >= p.deadline:
            if not quorum:
                return EXPIRED
            return ACCEPTED if yes * BPS >= d.approval * (yes + no) else REJECTED
        if quorum and yes * BPS >= d.approval * supply:
            if p.score is not None or d.evaluator == ZERO:
                return ACCEPTED
            return "market: outcome not final"
        if quorum and (supply - no) * BPS < d.approval * supply:
            return REJECTED
        return "market: outcome not final"

    # --- dividends and refunds ----------------------------------------------------------------

    @precondition(lambda self: self.datasets)
    @rule(
        which=st.integers(0, 1),
        payer=st.integers(0, USERS - 1),
        value=st.sampled_from([1, 7, 10**9 + 3, ETHER]),
    )
    def distribute(self, which, payer, value):
        _, d = self._dataset(which)
        with boa.env.prank(self.users[payer]):
            d.token.distribute(value=value)
        self._pay_dividend(d, value)

    @precondition(lambda self: self.datasets)
    @rule(
        which=st.integers(0, 1),
        user=st.integers(0, USERS - 1),
        value=st.sampled_from([ETHER, 1000 * ETHER]),
        loops=st.integers(1, 20),
    )
    def distribute_withdraw_loop(self, which, user, value, loops):
        """A holder recycles ether through distribute + withdraw (the per-share cap attack)."""
        _, d = self._dataset(which)
        account = self.users[user]
        for _ in range(loops):
            with boa.env.prank(account):
                d.token.distribute(value=value)
            self._pay_dividend(d, value)
            self._withdraw(d, account)

    def _withdraw(self, d: DatasetModel, account: str) -> None:
        owed = d.token.dividends_of(account)
        if owed == 0:
            with boa.env.prank(account), boa.reverts("shares: nothing to withdraw"):
                d.token.withdraw()
            return
        before = boa.env.get_balance(account)
        with boa.env.prank(account):
            assert d.token.withdraw() == owed
        assert boa.env.get_balance(account) == before + owed

    @precondition(lambda self: self.datasets)
    @rule(which=st.integers(0, 1), user=st.integers(0, USERS - 1))
    def withdraw(self, which, user):
        _, d = self._dataset(which)
        self._withdraw(d, self.users[user])
        event("withdrew dividends")

    @rule(user=st.integers(0, USERS - 1))
    def withdraw_refund(self, user):
        account = self.users[user]
        if self.refunds[account] == 0:
            with boa.env.prank(account), boa.reverts("market: nothing to refund"):
                self.market.withdraw_refund()
            return
        with boa.env.prank(account):
            assert self.market.withdraw_refund() == self.refunds[account]
        self.refunds[account] = 0

    @rule(seconds=st.sampled_from([12, 120, PERIOD // 2]))
    def wait(self, seconds):
        self._advance(seconds)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def balances_sum_to_supply(self):
        for d in self.datasets.values():
            onchain = {u: d.token.balanceOf(u) for u in self.users}
            assert onchain == d.balances
            assert sum(onchain.values()) == d.token.totalSupply()
            assert d.token.totalSupply() <= 2 * d.r0 * d.n0

    @invariant()
    def votes_match_snapshot_balances(self):
        for pid, p in self.proposals.items():
            if p.status != OPEN and pid in self.checked:
                continue  # a finalized proposal is compared whole by finalized_never_change
            d = self.datasets[p.dataset_id]
            for u in self.users:
                voted, support, weight = self.market.vote_of(pid, u)
                assert voted == (u in p.votes)
                if voted:
                    # exactly the balance at the end of the commit block: later moves add nothing
                    assert weight == p.snapshot[u] == d.token.balance_at(u, p.block)
                    assert support == p.votes[u][0]
            onchain = self.market.get_proposal(pid)
            assert onchain.snapshot == p.block
            assert onchain.yes + onchain.no == sum(w for _, w in p.votes.values())
            assert onchain.snapshot_supply == p.supply
            if p.status != OPEN:
                self.checked.add(pid)

    @invariant()
    def roots_and_pending_items(self):
        for dataset_id, d in self.datasets.items():
            info = self.market.get_dataset(dataset_id)
            assert (info.item_count, info.pending_items) == (d.items, d.pending)
            for root, state in d.roots.items():
                assert self.market.root_state(dataset_id, root) == state

    @invariant()
    def nobody_earns_more_than_their_place(self):
        """Each accepted batch earned at most its price at its place among the accepted
        batches in proposal order (which only moves later as more are accepted)."""
        for dataset_id, d in self.datasets.items():
            ahead = d.items - sum(
                p.items
                for p in self.proposals.values()
                if p.dataset_id == dataset_id and p.status == ACCEPTED
            )  # the seed
            for pid in sorted(self.proposals):
                p = self.proposals[pid]
                if p.dataset_id != dataset_id or p.status != ACCEPTED:
                    continue
                score = BPS if p.score is None else p.score
                minted = self.frozen[pid].shares_minted
                assert minted <= price(d.r0, d.n0, ahead, p.items, score)
                ahead += p.items

    @invariant()
    def finalized_never_change(self):
        for pid, frozen in self.frozen.items():
            assert self.market.get_proposal(pid) == frozen

    @invariant()
    def dividends_match_distributions(self):
        for d in self.datasets.values():
            token = d.token
            withdrawn = {u: token.withdrawn_of(u) for u in self.users}
            owed = {u: token.dividends_of(u) for u in self.users}
            assert sum(withdrawn.values()) == token.total_withdrawn()
            assert token.total_distributed() == d.distributed
            assert token.carried() == d.carry
            # what was paid in = what was allocated + what is carried + under 1 wei a payment
            assert 0 <= d.distributed - d.allocated - d.carry < d.distributions + 1
            assert d.carry <= sum(d.balances.values()) // MAG + 1
            for u in self.users:
                exact = d.earned.get(u, Fraction(0))
                got = withdrawn[u] + owed[u]
                # never more than allocated; less by under 1 wei per distribution
                assert got <= exact
                assert exact - got < d.distributions + 1

    @invariant()
    def ether_is_conserved(self):
        open_stakes = sum(p.stake for p in self.proposals.values() if p.status == OPEN)
        held = sum(self.market.held_dividends(i) for i in self.datasets)
        assert held == 0  # distribute never fails here: nothing is held
        assert boa.env.get_balance(self.market.address) == (
            sum(self.refunds.values()) + open_stakes + held
        )
        for u in self.users:
            assert self.market.refund_of(u) == self.refunds[u]
        for d in self.datasets.values():
            balance = boa.env.get_balance(d.token.address)
            assert balance == d.token.total_distributed() - d.token.total_withdrawn()
            assert balance >= sum(d.token.dividends_of(u) for u in self.users) + d.carry
        assert self._ether_total() == self.total_ether


MarketMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMarketProperties = MarketMachine.TestCase


@pytest.mark.slow
def test_market_properties_long():
    """The same machine with many more and longer runs (CI's slow job)."""
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        MarketMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
