"""The ComputeMarket wrapper and its EIP-712 receipts against the contract, on both providers.

Receipts are signed in Python with the coordinator's enclave key
(``databright.chain.compute_market``); the chain must accept them exactly and refuse them when
any signed field differs. The gas of every function is measured here from real receipts (the
table in docs/compute-market.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from databright.chain.compile import compile_contract, compile_file
from databright.chain.compute_market import (
    ComputeMarket,
    Receipt,
    receipt_digest,
    receipt_signed_by,
    recover_receipt,
    sign_receipt,
)
from databright.chain.deploy import deploy_contract
from databright.chain.provider import Chain
from databright.chain.share_token import ShareToken
from databright.errors import (
    ContractNotFoundError,
    InvalidArgumentError,
    NameTakenError,
    PermissionDenied,
    TooEarlyError,
    UsageError,
    WrongStakeError,
)

MOCK_TERMS = Path(__file__).resolve().parents[1] / "contracts" / "MockDataTerms.vy"
ETHER = 10**18
FEE = ETHER // 10
BUDGET = ETHER // 2
MIN_STAKE = ETHER // 5
MIN_FEE = 10**15
COOLDOWN = 60
CLASS = b"\xc1" * 32
PROGRAM = b"\x77" * 32
RESULT = bytes(range(32))

#: gas ceilings (measured figures are in docs/compute-market.md; these leave ~15% headroom)
GAS_CEILING = {
    "register_worker": 108_000,
    "register_coordinator": 157_000,
    "create_job (first job)": 305_000,
    "create_job": 243_000,
    "settle (3 workers)": 161_000,
    "settle (final, 2 workers + 1 liar)": 163_000,
    "settle (64 workers)": 2_270_000,
    "settle (64 workers paid before)": 1_020_000,
    "cancel": 43_000,
    "unregister": 40_000,
    "withdraw_stake": 37_000,
    "withdraw": 35_000,
}


class World:
    """A market over mock terms for dataset 1 (a real ShareToken with one holder)."""

    def __init__(self, chain: Chain, new_account: Callable[..., LocalAccount]) -> None:
        self.chain = chain
        self.new_account = new_account
        self.deployer, self.consumer, self.operator = new_account(), new_account(), new_account()
        self.enclave, self.holder = new_account(0), new_account(0)
        self.workers = sorted(
            (new_account(ETHER) for _ in range(3)), key=lambda a: int(a.address, 16)
        )
        terms = compile_file(MOCK_TERMS)
        self.terms_address = deploy_contract(chain, terms, self.deployer)
        terms_contract = chain.w3.eth.contract(address=self.terms_address, abi=terms.abi)
        token_address = deploy_contract(
            chain,
            compile_contract("ShareToken"),
            self.deployer,
            "Shares",
            "SHR",
            self.deployer.address,
        )
        self.token = ShareToken(chain, token_address)
        chain.send(self.token.contract.functions.mint(self.holder.address, ETHER), self.deployer)
        chain.send(
            terms_contract.functions.set_terms(1, token_address, self.enclave.address, FEE, 0, 3),
            self.deployer,
        )
        self.registry_address = deploy_contract(
            chain, compile_contract("ModelRegistry"), self.deployer, self.terms_address, 3_600
        )
        address = deploy_contract(
            chain,
            compile_contract("ComputeMarket"),
            self.deployer,
            self.terms_address,
            self.registry_address,
            MIN_STAKE,
            COOLDOWN,
        )
        self.market = ComputeMarket(chain, address)
        self.gas: dict[str, int] = {}

    def note(self, name: str, receipt: object) -> None:
        self.gas[name] = int(receipt["gasUsed"])  # type: ignore[index]

    def setup_pool(self) -> None:
        if self.gas.get("register_coordinator"):
            return  # test_gas runs several tests on one world
        coordinator, receipt = self.market.register_coordinator(
            self.operator, self.enclave.address, "bafkreievidence", "software"
        )
        self.note("register_coordinator", receipt)
        assert (coordinator.operator, coordinator.kind) == (self.operator.address, "software")
        for worker in self.workers:
            info, receipt = self.market.register_worker(
                worker, MIN_FEE, CLASS, self.enclave.address, MIN_STAKE
            )
            self.note("register_worker", receipt)
            assert (info.status, info.stake, info.min_fee) == ("active", MIN_STAKE, MIN_FEE)
            assert info.coordinator == self.enclave.address

    def create_job(self, deadline_in: int = 3_600) -> int:
        job_id, receipt = self.market.create_job(
            self.consumer,
            1,
            self.enclave.address,
            PROGRAM,
            "bafkreispec",
            self.chain.now() + deadline_in,
            value=FEE + BUDGET,
        )
        first = "create_job (first job)"
        self.note("create_job" if first in self.gas else first, receipt)
        return job_id


@pytest.fixture
def world(chain: Chain, new_account: Callable[..., LocalAccount]) -> World:
    return World(chain, new_account)


def test_python_receipt_is_accepted_and_a_changed_field_is_not(world: World) -> None:
    world.setup_pool()
    a, b, c = (w.address for w in world.workers)
    job_id = world.create_job()
    job = world.market.get_job(job_id)
    assert (job.consumer, job.coordinator, job.training_fee, job.budget, job.status) == (
        world.consumer.address,
        world.enclave.address,
        FEE,
        BUDGET,
        "open",
    )
    r = world.market.receipt(job_id, 0, {c: 2 * MIN_FEE, a: MIN_FEE, b: MIN_FEE}, [], RESULT)
    assert list(r.workers) == [a, b, c]  # sorted as the contract wants
    assert world.market.receipt_digest(r) == receipt_digest(r)
    sig = sign_receipt(r, world.enclave)
    assert recover_receipt(r, sig) == world.enclave.address
    assert receipt_signed_by(r, sig, world.enclave.address)
    assert not receipt_signed_by(replace(r, part=1), sig, world.enclave.address)
    assert not receipt_signed_by(r, b"\x01" * 3, world.enclave.address)
    with pytest.raises(UsageError):
        recover_receipt(r, b"\x00" * 10)
    for wrong in (
        replace(r, fees=(MIN_FEE, MIN_FEE, 3 * MIN_FEE)),
        replace(r, receipt_hash=b"\x01" * 32),
        replace(r, final=True),
    ):
        with pytest.raises(PermissionDenied, match="compute: bad receipt"):
            world.market.settle(world.consumer, wrong, sig)
    with pytest.raises(PermissionDenied, match="compute: bad receipt"):
        world.market.settle(world.consumer, r, sign_receipt(r, world.operator))
    part, receipt = world.market.settle(world.operator, r, sig)  # anyone may deliver it
    world.note("settle (3 workers)", receipt)
    assert (part.part, part.paid, part.slashed, part.final) == (0, 4 * MIN_FEE, 0, False)
    with pytest.raises(InvalidArgumentError, match="compute: wrong part"):
        world.market.settle(world.operator, r, sig)

    final = world.market.receipt(job_id, 1, {a: MIN_FEE, b: MIN_FEE}, [c], RESULT, final=True)
    distributed = world.token.total_distributed()
    part, receipt = world.market.settle(world.operator, final, sign_receipt(final, world.enclave))
    world.note("settle (final, 2 workers + 1 liar)", receipt)
    assert (part.paid, part.slashed, part.final) == (2 * MIN_FEE, MIN_STAKE, True)
    assert part.slashed_workers == {c: MIN_STAKE}
    assert part.refund == BUDGET - 6 * MIN_FEE
    assert world.token.total_distributed() == distributed + FEE
    assert world.market.get_worker(c).status == "banned"
    assert world.market.owed_of(world.consumer.address) == MIN_STAKE + BUDGET - 6 * MIN_FEE
    job = world.market.get_job(job_id)
    assert (job.status, job.spent, job.next_part, job.remaining) == (
        "final",
        6 * MIN_FEE,
        2,
        BUDGET - 6 * MIN_FEE,
    )
    before = world.chain.balance(a)
    paid, receipt = world.market.withdraw(world.workers[0])
    world.note("withdraw", receipt)
    assert paid == 2 * MIN_FEE
    assert world.chain.balance(a) - before == paid - receipt["gasUsed"] * receipt[
        "effectiveGasPrice"
    ]


def test_receipt_for_another_market_or_chain_is_refused(world: World) -> None:
    world.setup_pool()
    job_id = world.create_job()
    r = world.market.receipt(job_id, 0, {world.workers[0].address: MIN_FEE})
    with pytest.raises(PermissionDenied, match="compute: bad receipt"):
        world.market.settle(
            world.consumer, r, sign_receipt(replace(r, chain_id=r.chain_id + 1), world.enclave)
        )
    with pytest.raises(UsageError):
        world.market.settle(
            world.consumer, replace(r, market=world.terms_address), sign_receipt(r, world.enclave)
        )
    with pytest.raises(UsageError):
        Receipt.of(1, world.market.address, 1, 0, {}, ["0x" + "11" * 20] * 2)


def test_workers_coordinators_and_cancel_through_the_wrapper(world: World) -> None:
    world.setup_pool()
    with pytest.raises(NameTakenError, match="compute: coordinator exists"):
        world.market.register_coordinator(world.consumer, world.enclave.address, "q", "sgx-dcap")
    with pytest.raises(UsageError):
        world.market.register_coordinator(world.operator, world.consumer.address, "q", "tdx")
    with pytest.raises(ContractNotFoundError, match="compute: unknown coordinator"):
        world.market.get_coordinator(world.consumer.address)
    newcomer = world.new_account(ETHER)
    with pytest.raises(WrongStakeError, match="compute: stake too low"):
        world.market.register_worker(newcomer, 0, CLASS, world.enclave.address, MIN_STAKE - 1)
    job_id = world.create_job(deadline_in=600)
    worker = world.workers[0]
    release_at, receipt = world.market.unregister(worker)
    world.note("unregister", receipt)
    # the open job may still name the worker until its deadline, past the 60 s cool-down
    latest = world.market.latest_deadline_of(world.enclave.address)
    assert release_at == latest >= world.market.get_job(job_id).deadline
    assert world.market.get_worker(worker.address).last_job == job_id
    world.chain.advance_time(COOLDOWN + 1)
    with pytest.raises(TooEarlyError, match="compute: stake locked"):
        world.market.withdraw_stake(worker)
    with pytest.raises(TooEarlyError, match="compute: deadline not passed"):
        world.market.cancel(world.consumer, job_id)
    world.chain.advance_time(600)
    with pytest.raises(PermissionDenied, match="compute: only consumer"):
        world.market.cancel(world.operator, job_id)
    refund, receipt = world.market.cancel(world.consumer, job_id)
    world.note("cancel", receipt)
    assert refund == FEE + BUDGET and world.market.get_job(job_id).status == "cancelled"
    world.chain.advance_time(max(1, release_at - world.chain.now()))
    amount, receipt = world.market.withdraw_stake(worker)
    world.note("withdraw_stake", receipt)
    assert amount == MIN_STAKE and world.market.get_worker(worker.address).status == "none"
    with pytest.raises(ContractNotFoundError, match="compute: unknown job"):
        world.market.get_job(job_id + 1)


def test_settle_64_workers(world: World) -> None:
    """The largest part: 64 workers credited in one transaction (fresh owed_of slots)."""
    world.setup_pool()
    job_id = world.create_job()
    many = [world.new_account(ETHER) for _ in range(64)]
    for account in many:
        world.market.register_worker(account, 1, CLASS, world.enclave.address, MIN_STAKE)
    r = world.market.receipt(job_id, 0, {a.address: 10**12 for a in many})
    part, receipt = world.market.settle(world.operator, r, sign_receipt(r, world.enclave))
    world.note("settle (64 workers)", receipt)
    assert part.paid == 64 * 10**12
    assert all(world.market.owed_of(a.address) == 10**12 for a in many[:3])
    # the same pool again: every owed_of slot is non-zero already
    again = world.market.receipt(job_id, 1, {a.address: 10**12 for a in many})
    part, receipt = world.market.settle(world.operator, again, sign_receipt(again, world.enclave))
    world.note("settle (64 workers paid before)", receipt)
    assert part.paid == 64 * 10**12 and world.market.get_job(job_id).spent == 128 * 10**12


def test_gas(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Every market function within its ceiling (figures printed with -s)."""
    test_python_receipt_is_accepted_and_a_changed_field_is_not(world)
    test_workers_coordinators_and_cancel_through_the_wrapper(world)
    test_settle_64_workers(world)
    with capsys.disabled():
        print()
        for name, gas in world.gas.items():
            print(f"  {name:40s} {gas:>10,}")
    assert set(world.gas) == set(GAS_CEILING)
    over = {n: g for n, g in world.gas.items() if g > GAS_CEILING[n]}
    assert not over, over
