"""Stateful property test of the ComputeMarket: workers, jobs, receipts, slashing, cancel.

A plain-Python model follows every step and predicts each call's outcome, revert reason
included. After each step: ether is conserved to the wei (the market holds exactly the live
stakes, the open jobs' escrow, the credits and the held fees, and nothing is created or lost
across all accounts). On every settlement: exactly the receipt's workers are credited, each at
least its minimum fee; a slashed amount equals the liar's stake and never exceeds it. A receipt
is valid once (replays, and receipts for another job, part, chain or signer, are refused);
cancel and a final settlement exclude each other; a stake is withdrawn only after the
cool-down and after every job that could still name the worker has passed its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import boa
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from databright.chain.compute_market import Receipt, sign_receipt
from tests.contracts.conftest import ETHER, ZERO, deployers, new_account
from tests.contracts.test_compute_market import CLASS, PROGRAM, deploy_compute
from tests.contracts.test_model_registry import (
    forget_storage_traces,
    key_account,
    refusing_token,
    terms_deployer,
)

MIN_STAKE = ETHER // 4
MIN_FEE_UNIT = 10**15
COOLDOWN = 600
FEES = {1: ETHER // 10, 2: 3 * 10**15 + 1}
NONE, ACTIVE, LEAVING, BANNED = 0, 1, 2, 3
OPEN, FINAL, CANCELLED = 1, 2, 3
POOL = 6  # worker accounts (some never register)


@dataclass
class WorkerModel:
    status: int = NONE
    stake: int = 0
    min_fee: int = 0
    release_at: int = 0
    last_job: int = 0
    left_at: int = 0
    coordinator: int = -1


@dataclass
class JobModel:
    consumer: str
    coordinator: int
    dataset_id: int
    fee: int
    budget: int
    deadline: int
    spent: int = 0
    next_part: int = 0
    status: int = OPEN
    accepted_parts: list[int] = field(default_factory=list)


class ComputeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        forget_storage_traces()
        self.terms = terms_deployer().deploy()
        self.market = deploy_compute(self.terms, MIN_STAKE, COOLDOWN)
        owner, holder = new_account(), new_account()
        self.token = deployers().token.deploy("Shares", "SHR", owner)
        with boa.env.prank(owner):
            self.token.mint(holder, 3 * ETHER)
        self.flaky = refusing_token()  # dataset 2's token refuses until switched on
        self.terms.set_terms(1, self.token.address, ZERO, FEES[1], 0, 5)
        self.terms.set_terms(2, self.flaky.address, ZERO, FEES[2], 0, 5)
        self.coordinators = [key_account(0), key_account(0)]
        operator = new_account()
        for c in self.coordinators:
            with boa.env.prank(operator):
                self.market.register_coordinator(c.address, "bafkreievidence", 1)
        self.stranger = key_account(0)
        self.pool = [new_account(10**4 * ETHER) for _ in range(POOL)]
        self.consumers = [new_account(10**4 * ETHER) for _ in range(2)]
        self.relayer = new_account(ETHER)
        self.workers = {a: WorkerModel() for a in self.pool}
        self.jobs: dict[int, JobModel] = {}
        self.owed = {a: 0 for a in [*self.pool, *self.consumers]}
        self.held = 0
        self.dividends = {1: 0, 2: 0}
        self.latest_deadline = {0: 0, 1: 0}  # per coordinator
        self.last_accepted: tuple[Receipt, bytes] | None = None
        # a pool that already works, so most runs reach settlements early
        for i, account in enumerate(self.pool[:4]):
            enclave = self.coordinators[i // 3].address  # three workers of 0, one of 1
            with boa.env.prank(account):
                self.market.register_worker(i * MIN_FEE_UNIT, CLASS, enclave, value=MIN_STAKE)
            self.workers[account] = WorkerModel(
                ACTIVE, MIN_STAKE, i * MIN_FEE_UNIT, coordinator=i // 3
            )
        self.create_job(0, 0, 1, 20, 86400)
        self.watched = [
            *self.pool,
            *self.consumers,
            self.relayer,
            self.market.address,
            self.token.address,
            self.flaky.address,
        ]
        self.total = self._ether()

    # --- helpers ------------------------------------------------------------------------------

    def _ether(self) -> int:
        return sum(boa.env.get_balance(a) for a in self.watched)

    def _now(self) -> int:
        return int(boa.env.evm.patch.timestamp)

    def _may_name(self, worker: str, job_id: int) -> bool:
        w = self.workers.get(worker, WorkerModel())
        if w.coordinator != self.jobs[job_id].coordinator:
            return False
        return w.status == ACTIVE or (w.status == LEAVING and job_id <= w.last_job)

    def _expected_settle(self, job_id: int, r: Receipt, signed_ok: bool) -> str | None:
        """The revert reason the contract must give for ``r`` on job ``job_id`` (None: ok)."""
        j = self.jobs[job_id]
        if j.status != OPEN:
            return "compute: job closed"
        if self._now() >= j.deadline:
            return "compute: job expired"
        if r.part != j.next_part:
            return "compute: wrong part"
        if not signed_ok:
            return "compute: bad receipt"
        banned = {a for a, w in self.workers.items() if w.status == BANNED}
        for liar in r.liars:
            if liar in banned:
                continue
            if not self._may_name(liar, job_id):
                return "compute: liar not registered"
            banned.add(liar)
        left = j.budget - j.spent
        for worker, fee in zip(r.workers, r.fees, strict=True):
            if worker in banned:
                return "compute: worker banned"
            if not self._may_name(worker, job_id):
                return "compute: worker not registered"
            if fee < self.workers[worker].min_fee:
                return "compute: fee below minimum"
            if fee > left:
                return "compute: over budget"
            left -= fee
        return None

    def _settle_call(self, r: Receipt, sig: bytes) -> None:
        with boa.env.prank(self.relayer):
            self.market.settle(
                r.job_id, r.part, list(r.workers), list(r.fees), list(r.liars), r.receipt_hash,
                r.final, sig,
            )

    # --- workers ------------------------------------------------------------------------------

    @rule(
        who=st.integers(0, POOL - 1),
        fee_units=st.integers(0, 3),
        extra=st.integers(0, 5),
        coordinator=st.integers(0, 1),
    )
    def register_worker(self, who: int, fee_units: int, extra: int, coordinator: int) -> None:
        account = self.pool[who]
        w = self.workers[account]
        stake = MIN_STAKE + extra * 10**16
        min_fee = fee_units * MIN_FEE_UNIT
        enclave = self.coordinators[coordinator].address
        with boa.env.prank(account):
            if w.status == BANNED:
                with boa.reverts("compute: worker banned"):
                    self.market.register_worker(min_fee, CLASS, enclave, value=stake)
            elif w.status != NONE:
                with boa.reverts("compute: already registered"):
                    self.market.register_worker(min_fee, CLASS, enclave, value=stake)
            else:
                self.market.register_worker(min_fee, CLASS, enclave, value=stake)
                self.workers[account] = WorkerModel(
                    ACTIVE, stake, min_fee, coordinator=coordinator
                )

    @rule(who=st.integers(0, POOL - 1))
    def unregister(self, who: int) -> None:
        account = self.pool[who]
        w = self.workers[account]
        with boa.env.prank(account):
            if w.status != ACTIVE:
                with boa.reverts("compute: not active"):
                    self.market.unregister()
                return
            release_at = self.market.unregister()
        assert release_at == max(self._now() + COOLDOWN, self.latest_deadline[w.coordinator])
        w.status, w.release_at, w.last_job, w.left_at = (
            LEAVING,
            release_at,
            len(self.jobs),
            self._now(),
        )

    @rule(who=st.integers(0, POOL - 1))
    def withdraw_stake(self, who: int) -> None:
        account = self.pool[who]
        w = self.workers[account]
        with boa.env.prank(account):
            if w.status != LEAVING:
                with boa.reverts("compute: not leaving"):
                    self.market.withdraw_stake()
                return
            if self._now() < w.release_at:
                with boa.reverts("compute: stake locked"):
                    self.market.withdraw_stake()
                return
            assert self.market.withdraw_stake() == w.stake
        event("stake withdrawn")
        # the cool-down is respected and no job that may name the worker can still settle
        assert self._now() >= w.left_at + COOLDOWN
        for job_id in range(1, w.last_job + 1):
            j = self.jobs[job_id]
            if j.coordinator == w.coordinator:
                assert j.status != OPEN or self._now() >= j.deadline
        self.workers[account] = WorkerModel()

    # --- jobs ---------------------------------------------------------------------------------

    @rule(
        consumer=st.integers(0, 1),
        coordinator=st.integers(0, 1),
        dataset_id=st.sampled_from([1, 2]),
        budget_units=st.integers(0, 20),
        duration=st.sampled_from([60, 900, 3600, 86400]),
    )
    def create_job(
        self, consumer: int, coordinator: int, dataset_id: int, budget_units: int, duration: int
    ) -> None:
        account = self.consumers[consumer]
        budget = budget_units * MIN_FEE_UNIT + budget_units  # odd amounts too
        deadline = self._now() + duration
        with boa.env.prank(account):
            job_id = self.market.create_job(
                dataset_id,
                self.coordinators[coordinator].address,
                PROGRAM,
                "bafkreispec",
                deadline,
                value=FEES[dataset_id] + budget,
            )
        assert job_id == len(self.jobs) + 1
        self.jobs[job_id] = JobModel(
            account, coordinator, dataset_id, FEES[dataset_id], budget, deadline
        )
        self.latest_deadline[coordinator] = max(self.latest_deadline[coordinator], deadline)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def settle(self, data: Any) -> None:
        """A receipt part, signed right or (one in four) wrong."""
        self._settle(data, honest=False)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def settle_honest(self, data: Any) -> None:
        """A receipt part signed by the job's coordinator over exactly what is sent."""
        self._settle(data, honest=True)

    def _settle(self, data: Any, honest: bool) -> None:
        # everything is drawn here, not as rule arguments: hypothesis favours rules with
        # fewer arguments, and settling is the rule that matters most
        live = sorted(i for i, j in self.jobs.items() if j.status == OPEN)
        job_id = data.draw(st.sampled_from(live or sorted(self.jobs)))
        j = self.jobs[job_id]
        # mostly the workers of the job's coordinator, sometimes anyone in the pool
        mine = [
            i
            for i, a in enumerate(self.pool)
            if self.workers[a].coordinator == j.coordinator
            and self.workers[a].status in (ACTIVE, LEAVING)
        ] or [0]
        anyone = st.integers(0, POOL - 1)
        paid: set[int] = data.draw(
            st.one_of(st.sets(st.sampled_from(mine), max_size=3), st.sets(anyone, max_size=4))
        )
        liars: set[int] = data.draw(
            st.one_of(
                st.just(set()),
                st.sets(st.sampled_from(mine), max_size=1),
                st.sets(anyone, max_size=2),
            )
        )
        offsets = data.draw(st.lists(st.integers(-1, 2 * MIN_FEE_UNIT), min_size=4, max_size=4))
        final = data.draw(st.integers(0, 3)) == 0  # most jobs settle in several parts
        variant = "valid"
        if not honest and data.draw(st.integers(0, 3)) == 0:  # one in four is wrong somehow
            variant = data.draw(
                st.sampled_from(
                    ["stranger", "other-coordinator", "other-job", "other-part", "other-chain",
                     "skip-part"]
                )
            )
        payouts = {}
        for i, who in enumerate(sorted(paid)):
            account = self.pool[who]
            payouts[account] = max(0, self.workers[account].min_fee + offsets[i])
        part = j.next_part + (1 if variant == "skip-part" else 0)
        chain_id = boa.env.evm.patch.chain_id
        r = Receipt.of(
            chain_id,
            self.market.address,
            job_id,
            part,
            payouts,
            [self.pool[i] for i in liars],
            bytes([job_id % 256, part % 256]) * 16,
            final,
        )
        key = self.coordinators[j.coordinator]
        signed = r
        if variant == "stranger":
            key = self.stranger
        elif variant == "other-coordinator":
            key = self.coordinators[1 - j.coordinator]
        elif variant == "other-job":
            signed = replace(r, job_id=job_id + 1)
        elif variant == "other-part":
            signed = replace(r, part=part + 1)
        elif variant == "other-chain":
            signed = replace(r, chain_id=chain_id + 1)
        sig = sign_receipt(signed, key)
        signed_ok = variant in ("valid", "skip-part")
        self._apply_settle(job_id, r, sig, signed_ok)

    @precondition(lambda self: self.last_accepted is not None)
    @rule()
    def replay_last_receipt(self) -> None:
        """The last receipt accepted, delivered again: always refused."""
        assert self.last_accepted is not None
        r, sig = self.last_accepted
        expected = self._expected_settle(r.job_id, r, True)
        assert expected is not None
        with boa.reverts(expected):
            self._settle_call(r, sig)

    def _apply_settle(self, job_id: int, r: Receipt, sig: bytes, signed_ok: bool) -> None:
        expected = self._expected_settle(job_id, r, signed_ok)
        event(f"settle: {expected or ('accepted, liars' if r.liars else 'accepted')}")
        if expected is not None:
            with boa.reverts(expected):
                self._settle_call(r, sig)
            return
        j = self.jobs[job_id]
        stakes_before = {a: self.workers[a].stake for a in r.liars}
        owed_before = {a: self.market.owed_of(a) for a in [*r.workers, *r.liars, j.consumer]}
        self._settle_call(r, sig)
        logs = [log for log in self.market.get_logs() if log.address == self.market.address]
        paid_logs = [log for log in logs if type(log).__name__ == "WorkerPaid"]
        slash_logs = [log for log in logs if type(log).__name__ == "WorkerSlashed"]
        # exactly the receipt's workers are credited, each at least its minimum fee
        assert [(log.worker, log.fee, log.job_id) for log in paid_logs] == [
            (a, f, job_id) for a, f in zip(r.workers, r.fees, strict=True)
        ]
        for a, fee in zip(r.workers, r.fees, strict=True):
            assert fee >= self.workers[a].min_fee
            assert self.market.owed_of(a) == owed_before[a] + fee
            self.owed[a] += fee
        # a slashed amount is the liar's whole stake, never more; the liar is banned
        slashed = 0
        for log in slash_logs:
            assert log.worker in r.liars
            assert log.amount == stakes_before[log.worker] <= MIN_STAKE + 5 * 10**16
            slashed += log.amount
            self.workers[log.worker] = WorkerModel(BANNED)
        for a in r.liars:
            assert self.workers[a].status == BANNED
        spent = sum(r.fees)
        j.spent += spent
        j.next_part += 1
        j.accepted_parts.append(r.part)
        refund = 0
        if r.final:
            j.status = FINAL
            refund = j.budget - j.spent
            if j.dataset_id == 2 and self.flaky.refuse():
                self.held += j.fee
            else:
                self.dividends[j.dataset_id] += j.fee
        self.owed[j.consumer] += slashed + refund
        assert self.market.owed_of(j.consumer) == owed_before[j.consumer] + slashed + refund
        self.last_accepted = (r, sig)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), as_consumer=st.booleans())
    def cancel(self, data: Any, as_consumer: bool) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        j = self.jobs[job_id]
        sender = j.consumer if as_consumer else self.relayer
        with boa.env.prank(sender):
            if not as_consumer:
                reason = "compute: only consumer"
            elif j.status != OPEN:
                reason = "compute: job closed"
            elif self._now() < j.deadline:
                reason = "compute: deadline not passed"
            else:
                reason = None
            if reason is not None:
                with boa.reverts(reason):
                    self.market.cancel(job_id)
                return
            refund = self.market.cancel(job_id)
        assert refund == j.fee + j.budget - j.spent
        # cancel and a final settlement exclude each other: only an open job gets here
        assert j.status == OPEN and self.market.get_job(job_id).status == CANCELLED
        j.status = CANCELLED
        self.owed[j.consumer] += refund

    # --- money --------------------------------------------------------------------------------

    @rule(who=st.integers(0, POOL + 1))
    def withdraw(self, who: int) -> None:
        account = [*self.pool, *self.consumers][who]
        with boa.env.prank(account):
            if self.owed[account] == 0:
                with boa.reverts("compute: nothing to withdraw"):
                    self.market.withdraw()
            else:
                assert self.market.withdraw() == self.owed[account]
                self.owed[account] = 0

    @rule(seconds=st.sampled_from([30, 60, 300, 600, 3600, 86400]))
    def wait(self, seconds: int) -> None:
        boa.env.time_travel(seconds=seconds)

    @rule(refuse=st.booleans())
    def switch_dataset_two(self, refuse: bool) -> None:
        self.flaky.set_refuse(refuse)

    @rule()
    def release_held(self) -> None:
        if self.held == 0:
            with boa.reverts("compute: nothing held"):
                self.market.release_held(2)
        elif self.flaky.refuse():
            with boa.reverts("shares: no holders"):
                self.market.release_held(2)
        else:
            assert self.market.release_held(2) == self.held
            self.dividends[2] += self.held
            self.held = 0

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def ether_is_conserved_to_the_wei(self) -> None:
        stakes = sum(w.stake for w in self.workers.values() if w.status in (ACTIVE, LEAVING))
        escrow = sum(j.fee + j.budget - j.spent for j in self.jobs.values() if j.status == OPEN)
        for account, amount in self.owed.items():
            assert self.market.owed_of(account) == amount
        assert self.market.held_of(2) == self.held and self.market.held_of(1) == 0
        owed = sum(self.owed.values())
        assert boa.env.get_balance(self.market.address) == stakes + escrow + owed + self.held
        assert self.token.total_distributed() == self.dividends[1]
        assert self.flaky.received() == self.dividends[2]
        assert self._ether() == self.total

    @invariant()
    def chain_matches_the_model(self) -> None:
        for account, w in self.workers.items():
            info = self.market.get_worker(account)
            assert (info.status, info.stake) == (w.status, w.stake)
            if w.status in (ACTIVE, LEAVING):
                assert info.coordinator == self.coordinators[w.coordinator].address
            if w.status == LEAVING:
                assert (info.release_at, info.last_job) == (w.release_at, w.last_job)
        for job_id, j in self.jobs.items():
            info = self.market.get_job(job_id)
            assert (info.status, info.spent, info.next_part) == (j.status, j.spent, j.next_part)
            # never over budget; parts 0, 1, 2, ... each accepted once
            assert info.spent <= info.budget
            assert j.accepted_parts == list(range(len(j.accepted_parts)))


ComputeMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestComputeProperties = ComputeMachine.TestCase


@pytest.mark.slow
def test_compute_properties_long():
    """The same machine with many more and longer runs (CI's slow job)."""
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        ComputeMachine,
        settings=settings(
            max_examples=80,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
