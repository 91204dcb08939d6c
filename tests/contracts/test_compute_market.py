"""ComputeMarket: workers, coordinators, escrowed jobs, receipts, slashing, replay, reverts."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boa
import pytest
from eth_account.signers.local import LocalAccount

from databright.chain.compute_market import Receipt, receipt_digest, sign_receipt
from databright.chain.reverts import REVERTS
from tests.contracts.conftest import CONTRACTS, ETHER, ZERO, new_account
from tests.contracts.test_model_registry import (
    forget_storage_traces,
    high_s,
    key_account,
    make_token,
    refusing_token,
    terms_deployer,
)

TESTS = Path(__file__).resolve().parent
DOCS = CONTRACTS.parents[2] / "docs" / "compute-market.md"
REASON = re.compile(r'"(compute: [^"]+)"')
FEE = ETHER // 10
BUDGET = ETHER
MIN_STAKE = ETHER // 2
MIN_FEE = 10**15
COOLDOWN = 3_600
DAY = 86_400
CLASS = b"\xc1" * 32
PROGRAM = b"\x77" * 32
RESULT = b"\x99" * 32
SOFTWARE, SGX = 1, 2
W_NONE, W_ACTIVE, W_LEAVING, W_BANNED = 0, 1, 2, 3
J_OPEN, J_FINAL, J_CANCELLED = 1, 2, 3

_LOADED: dict[str, Any] = {}


def market_deployer() -> Any:
    if "market" not in _LOADED:
        _LOADED["market"] = boa.load_partial(str(CONTRACTS / "ComputeMarket.vy"))
    return _LOADED["market"]


def models_deployer() -> Any:
    """The registry stand-in (``MockModels.vy``) prediction jobs read model terms from."""
    if "models" not in _LOADED:
        _LOADED["models"] = boa.load_partial(str(TESTS / "MockModels.vy"))
    return _LOADED["models"]


def deploy_compute(terms: Any, min_stake: int, cooldown: int, models: Any = None) -> Any:
    """A ComputeMarket over ``terms`` and a model registry (a fresh stand-in by default)."""
    registry = models if models is not None else models_deployer().deploy()
    return market_deployer().deploy(terms.address, registry.address, min_stake, cooldown)


@dataclass
class World:
    market: Any
    terms: Any
    token: Any
    holder: str
    coordinator: LocalAccount  # the enclave key
    operator: str
    consumer: str
    workers: list[str]


def now() -> int:
    return int(boa.env.evm.patch.timestamp)


def register_worker(
    w: World,
    worker: str,
    min_fee: int = MIN_FEE,
    stake: int = MIN_STAKE,
    coordinator: str | None = None,
) -> None:
    with boa.env.prank(worker):
        w.market.register_worker(
            min_fee, CLASS, coordinator or w.coordinator.address, value=stake
        )


def register_coordinator(w: World, enclave: str, kind: int = SOFTWARE) -> None:
    with boa.env.prank(w.operator):
        w.market.register_coordinator(enclave, "bafkreievidence", kind)


@pytest.fixture
def w() -> World:
    forget_storage_traces()
    token_owner, holder = new_account(), new_account()
    token = make_token(token_owner, holder)
    terms = terms_deployer().deploy()
    terms.set_terms(1, token.address, ZERO, FEE, 0, 10)
    market = deploy_compute(terms, MIN_STAKE, COOLDOWN)
    world = World(
        market,
        terms,
        token,
        holder,
        key_account(),
        new_account(),
        new_account(),
        sorted((new_account() for _ in range(4)), key=lambda a: int(a, 16)),
    )
    register_coordinator(world, world.coordinator.address)
    for worker in world.workers:
        register_worker(world, worker)
    return world


def create_job(
    w: World,
    value: int = FEE + BUDGET,
    deadline: int | None = None,
    dataset_id: int = 1,
    coordinator: str | None = None,
    sender: str | None = None,
) -> int:
    with boa.env.prank(sender or w.consumer):
        return int(
            w.market.create_job(
                dataset_id,
                coordinator or w.coordinator.address,
                PROGRAM,
                "bafkreispec",
                now() + DAY if deadline is None else deadline,
                value=value,
            )
        )


def receipt(
    w: World,
    job_id: int,
    part: int,
    payouts: dict[str, int],
    liars: tuple[str, ...] = (),
    final: bool = False,
    **kw: Any,
) -> Receipt:
    r = Receipt.of(
        boa.env.evm.patch.chain_id, w.market.address, job_id, part, payouts, liars, RESULT, final
    )
    return replace(r, **kw) if kw else r


def settle(
    w: World,
    r: Receipt,
    key: LocalAccount | None = None,
    signature: bytes | None = None,
    market: Any = None,
) -> None:
    sig = sign_receipt(r, key or w.coordinator) if signature is None else signature
    with boa.env.prank(new_account()):  # anyone may deliver a receipt
        (market or w.market).settle(
            r.job_id, r.part, list(r.workers), list(r.fees), list(r.liars), r.receipt_hash,
            r.final, sig,
        )


def names(logs: list[Any]) -> list[str]:
    return [type(log).__name__ for log in logs]


def market_logs(w: World) -> list[Any]:
    return [log for log in w.market.get_logs() if log.address == w.market.address]


def balance(address: str) -> int:
    return int(boa.env.get_balance(address))


# --- deployment -----------------------------------------------------------------------------


def test_deploy_checks_its_parameters():
    terms, models = terms_deployer().deploy(), models_deployer().deploy()
    with boa.reverts("compute: terms not a contract"):
        market_deployer().deploy(new_account(), models.address, MIN_STAKE, COOLDOWN)
    with boa.reverts("compute: registry not a contract"):
        market_deployer().deploy(terms.address, new_account(), MIN_STAKE, COOLDOWN)
    with boa.reverts("compute: bad min stake"):
        deploy_compute(terms, 0, COOLDOWN, models)
    with boa.reverts("compute: bad min stake"):
        deploy_compute(terms, 2**128, COOLDOWN, models)
    with boa.reverts("compute: bad cooldown"):
        deploy_compute(terms, MIN_STAKE, 0, models)
    with boa.reverts("compute: bad cooldown"):
        deploy_compute(terms, MIN_STAKE, 365 * DAY + 1, models)
    m = deploy_compute(terms, 1, 365 * DAY, models)
    assert (m.data_terms(), m.model_registry(), m.min_stake(), m.cooldown(), m.job_count()) == (
        terms.address,
        models.address,
        1,
        365 * DAY,
        0,
    )


# --- workers --------------------------------------------------------------------------------


def test_register_worker_locks_the_stake(w):
    worker = new_account()
    before = balance(w.market.address)
    with boa.env.prank(worker):
        w.market.register_worker(7, CLASS, w.coordinator.address, value=MIN_STAKE + 1)
    (log,) = market_logs(w)
    assert (type(log).__name__, log.worker, log.stake, log.min_fee, log.determinism_class) == (
        "WorkerRegistered",
        worker,
        MIN_STAKE + 1,
        7,
        CLASS,
    )
    info = w.market.get_worker(worker)
    assert (info.stake, info.min_fee, info.determinism_class, info.status) == (
        MIN_STAKE + 1,
        7,
        CLASS,
        W_ACTIVE,
    )
    assert info.coordinator == w.coordinator.address
    assert (info.release_at, info.last_job) == (0, 0)
    assert balance(w.market.address) == before + MIN_STAKE + 1
    assert w.market.get_worker(new_account()).status == W_NONE


def test_register_worker_reverts(w):
    worker = new_account()
    with boa.env.prank(worker):
        with boa.reverts("compute: stake too low"):
            w.market.register_worker(0, CLASS, w.coordinator.address, value=MIN_STAKE - 1)
        with boa.reverts("compute: empty determinism class"):
            w.market.register_worker(0, b"\x00" * 32, w.coordinator.address, value=MIN_STAKE)
    with boa.env.prank(w.workers[0]), boa.reverts("compute: already registered"):
        w.market.register_worker(0, CLASS, w.coordinator.address, value=MIN_STAKE)
    whale = new_account(2**129)
    with boa.env.prank(whale), boa.reverts("compute: stake too large"):
        w.market.register_worker(0, CLASS, w.coordinator.address, value=2**128)
    with boa.env.prank(worker), boa.reverts("compute: min fee too large"):
        w.market.register_worker(2**96, CLASS, w.coordinator.address, value=MIN_STAKE)
    with boa.env.prank(worker), boa.reverts("compute: unknown coordinator"):
        w.market.register_worker(0, CLASS, new_account(), value=MIN_STAKE)


def test_a_coordinator_cannot_touch_the_workers_of_another(w):
    """Anyone can register a coordinator and a job; its receipts still cannot slash or pay
    workers that serve someone else."""
    thief = key_account()
    register_coordinator(w, thief.address)
    with boa.env.prank(thief.address):
        job_id = w.market.create_job(
            1, thief.address, PROGRAM, "bafkreispec", now() + DAY, value=FEE + BUDGET
        )
    r = receipt(w, job_id, 0, {}, liars=tuple(w.workers))
    with boa.reverts("compute: liar not registered"):
        settle(w, r, key=thief)
    with boa.reverts("compute: worker not registered"):
        settle(w, receipt(w, job_id, 0, {w.workers[0]: MIN_FEE}), key=thief)
    assert all(w.market.get_worker(x).stake == MIN_STAKE for x in w.workers)
    # and its long job does not delay the stakes of workers that do not serve it
    with boa.env.prank(w.workers[0]):
        assert w.market.unregister() == now() + COOLDOWN


def test_unregister_cooldown_then_withdraw_and_register_again(w):
    worker = w.workers[0]
    with boa.env.prank(worker):
        with boa.reverts("compute: not leaving"):
            w.market.withdraw_stake()
        release_at = w.market.unregister()
        assert release_at == now() + COOLDOWN
        info = w.market.get_worker(worker)
        assert (info.status, info.release_at, info.last_job) == (W_LEAVING, release_at, 0)
        with boa.reverts("compute: not active"):
            w.market.unregister()
        with boa.reverts("compute: already registered"):
            w.market.register_worker(0, CLASS, w.coordinator.address, value=MIN_STAKE)
        boa.env.time_travel(seconds=COOLDOWN - 1)
        with boa.reverts("compute: stake locked"):
            w.market.withdraw_stake()
        boa.env.time_travel(seconds=1)
        before = balance(worker)
        assert w.market.withdraw_stake() == MIN_STAKE
        assert balance(worker) == before + MIN_STAKE
        assert w.market.get_worker(worker).status == W_NONE
        assert w.market.get_worker(worker).coordinator == ZERO
        with boa.reverts("compute: not leaving"):
            w.market.withdraw_stake()
        with boa.reverts("compute: not active"):
            w.market.unregister()
        w.market.register_worker(0, CLASS, w.coordinator.address, value=MIN_STAKE)
    assert w.market.get_worker(worker).status == W_ACTIVE


def test_cooldown_covers_every_job_that_may_name_the_worker(w):
    """A job created before the worker left keeps its stake locked until the job's deadline."""
    long_job = create_job(w, deadline=now() + 10 * DAY)
    worker = w.workers[1]
    with boa.env.prank(worker):
        release_at = w.market.unregister()
    assert release_at == now() + 10 * DAY > now() + COOLDOWN
    assert w.market.get_worker(worker).last_job == long_job
    # the earlier job may still name it, as a worker or as a liar, until its deadline
    settle(w, receipt(w, long_job, 0, {worker: MIN_FEE}))
    assert w.market.owed_of(worker) == MIN_FEE
    # a job created after it left may not
    later = create_job(w)
    with boa.reverts("compute: worker not registered"):
        settle(w, receipt(w, later, 0, {worker: MIN_FEE}))
    with boa.reverts("compute: liar not registered"):
        settle(w, receipt(w, later, 0, {}, liars=(worker,)))
    boa.env.time_travel(seconds=COOLDOWN)
    with boa.env.prank(worker), boa.reverts("compute: stake locked"):
        w.market.withdraw_stake()
    boa.env.time_travel(seconds=10 * DAY - COOLDOWN)
    # at the deadline the job can no longer settle, so the stake is safe to release
    with boa.reverts("compute: job expired"):
        settle(w, receipt(w, long_job, 1, {}, liars=(worker,)))
    with boa.env.prank(worker):
        assert w.market.withdraw_stake() == MIN_STAKE


def test_a_leaving_liar_is_slashed_and_cannot_withdraw(w):
    job_id = create_job(w)
    liar = w.workers[2]
    with boa.env.prank(liar):
        w.market.unregister()
    settle(w, receipt(w, job_id, 0, {}, liars=(liar,)))
    assert w.market.get_worker(liar).status == W_BANNED
    assert w.market.get_worker(liar).stake == 0
    boa.env.time_travel(seconds=2 * DAY)
    with boa.env.prank(liar):
        with boa.reverts("compute: not leaving"):
            w.market.withdraw_stake()
        with boa.reverts("compute: worker banned"):
            w.market.register_worker(0, CLASS, w.coordinator.address, value=MIN_STAKE)


# --- coordinators ---------------------------------------------------------------------------


def test_register_coordinator_and_view(w):
    enclave = key_account().address
    with boa.env.prank(w.operator):
        w.market.register_coordinator(enclave, "bafkreiquote", SGX)
    (log,) = market_logs(w)
    assert (log.enclave, log.operator, log.kind, log.evidence_cid) == (
        enclave,
        w.operator,
        SGX,
        "bafkreiquote",
    )
    c = w.market.get_coordinator(enclave)
    assert (c.operator, c.kind, c.evidence_cid, c.registered_at) == (
        w.operator,
        SGX,
        "bafkreiquote",
        now(),
    )
    with boa.reverts("compute: unknown coordinator"):
        w.market.get_coordinator(new_account())


def test_register_coordinator_reverts(w):
    with boa.env.prank(w.operator):
        with boa.reverts("compute: zero address"):
            w.market.register_coordinator(ZERO, "bafkreiquote", SOFTWARE)
        with boa.reverts("compute: empty evidence"):
            w.market.register_coordinator(new_account(), "", SOFTWARE)
        for kind in (0, 3):
            with boa.reverts("compute: bad kind"):
                w.market.register_coordinator(new_account(), "bafkreiquote", kind)
    # an enclave key is registered once, by whoever asks first
    with boa.env.prank(new_account()), boa.reverts("compute: coordinator exists"):
        w.market.register_coordinator(w.coordinator.address, "bafkreiother", SGX)


# --- jobs -----------------------------------------------------------------------------------


def test_create_job_escrows_fee_and_budget(w):
    deadline = now() + DAY
    job_id = create_job(w, deadline=deadline)
    (log,) = market_logs(w)
    assert type(log).__name__ == "JobCreated"
    assert (log.job_id, log.dataset_id, log.consumer, log.coordinator) == (
        1,
        1,
        w.consumer,
        w.coordinator.address,
    )
    assert (log.program_digest, log.spec_cid, log.training_fee, log.budget, log.deadline) == (
        PROGRAM,
        "bafkreispec",
        FEE,
        BUDGET,
        deadline,
    )
    j = w.market.get_job(job_id)
    assert (j.consumer, j.coordinator, j.dataset_id, j.share_token) == (
        w.consumer,
        w.coordinator.address,
        1,
        w.token.address,
    )
    assert (j.program_digest, j.spec_cid, j.training_fee, j.budget, j.spent) == (
        PROGRAM,
        "bafkreispec",
        FEE,
        BUDGET,
        0,
    )
    assert (j.deadline, j.next_part, j.status) == (deadline, 0, J_OPEN)
    assert w.market.job_count() == 1 and w.market.latest_deadline_of(w.coordinator.address) == deadline
    assert balance(w.market.address) == 4 * MIN_STAKE + FEE + BUDGET
    # exactly the fee: a job with no compute budget is allowed
    assert w.market.get_job(create_job(w, value=FEE)).budget == 0
    with boa.reverts("compute: unknown job"):
        w.market.get_job(3)


def test_create_job_reverts(w):
    w.terms.set_terms(2**96, w.token.address, ZERO, FEE, 0, 10)
    with boa.reverts("compute: unknown dataset"):
        create_job(w, dataset_id=9)
    with boa.reverts("compute: unknown dataset"):
        create_job(w, dataset_id=2**96)
    with boa.reverts("compute: unknown coordinator"):
        create_job(w, coordinator=new_account())
    with boa.env.prank(w.consumer):
        with boa.reverts("compute: empty program digest"):
            w.market.create_job(1, w.coordinator.address, b"\x00" * 32, "s", now() + 1, value=FEE)
        with boa.reverts("compute: empty spec"):
            w.market.create_job(1, w.coordinator.address, PROGRAM, "", now() + 1, value=FEE)
    with boa.reverts("compute: bad deadline"):
        create_job(w, deadline=now())
    with boa.reverts("compute: bad deadline"):
        create_job(w, deadline=now() + 90 * DAY + 1)
    assert create_job(w, deadline=now() + 90 * DAY) == 1
    with boa.reverts("compute: value below training fee"):
        create_job(w, value=FEE - 1)
    whale = new_account(2**130)
    with boa.reverts("compute: budget too large"):
        create_job(w, value=FEE + 2**128, sender=whale)


# --- settle ---------------------------------------------------------------------------------


def test_settle_in_parts_pays_workers_slashes_the_liar_and_pays_the_dataset(w):
    a, b, c, d = w.workers
    job_id = create_job(w)
    settle(w, receipt(w, job_id, 0, {a: 3 * MIN_FEE, b: MIN_FEE}))
    logs = market_logs(w)
    assert names(logs) == ["WorkerPaid", "WorkerPaid", "PartSettled"]
    assert (logs[0].worker, logs[0].fee, logs[1].worker, logs[1].fee) == (
        a,
        3 * MIN_FEE,
        b,
        MIN_FEE,
    )
    assert (logs[2].part, logs[2].paid, logs[2].slashed, logs[2].receipt_hash) == (
        0,
        4 * MIN_FEE,
        0,
        RESULT,
    )
    assert logs[2].final is False
    j = w.market.get_job(job_id)
    assert (j.spent, j.next_part, j.status) == (4 * MIN_FEE, 1, J_OPEN)
    assert w.market.owed_of(a) == 3 * MIN_FEE and w.market.owed_of(b) == MIN_FEE
    distributed = w.token.total_distributed()

    settle(w, receipt(w, job_id, 1, {a: MIN_FEE, c: 2 * MIN_FEE}, liars=(d,), final=True))
    logs = market_logs(w)
    assert names(logs) == [
        "WorkerSlashed",
        "WorkerPaid",
        "WorkerPaid",
        "PartSettled",
        "JobFinalized",
        "DividendPaid",
    ]
    assert (logs[0].worker, logs[0].amount, logs[0].part) == (d, MIN_STAKE, 1)
    spent = 7 * MIN_FEE
    assert (logs[4].spent, logs[4].refund) == (spent, BUDGET - spent)
    assert (logs[5].dataset_id, logs[5].job_id, logs[5].amount, logs[5].held) == (
        1,
        job_id,
        FEE,
        False,
    )
    assert w.token.total_distributed() == distributed + FEE
    j = w.market.get_job(job_id)
    assert (j.spent, j.next_part, j.status) == (spent, 2, J_FINAL)
    assert w.market.owed_of(a) == 4 * MIN_FEE and w.market.owed_of(c) == 2 * MIN_FEE
    # the liar's whole stake goes to the consumer, with the unspent budget
    assert w.market.owed_of(w.consumer) == MIN_STAKE + BUDGET - spent
    dw = w.market.get_worker(d)
    assert (dw.stake, dw.status) == (0, W_BANNED)
    # ether conserved: the three stakes left, nothing else
    assert balance(w.market.address) == 3 * MIN_STAKE + sum(
        w.market.owed_of(x) for x in (a, b, c, d, w.consumer)
    )


def test_a_final_part_with_no_workers_refunds_the_whole_budget(w):
    job_id = create_job(w)
    settle(w, receipt(w, job_id, 0, {}, final=True))
    assert w.market.owed_of(w.consumer) == BUDGET
    assert w.market.get_job(job_id).status == J_FINAL
    with boa.reverts("compute: job closed"):
        settle(w, receipt(w, job_id, 1, {}, final=True))


def test_settle_bad_arguments(w):
    a, b, c, _ = w.workers
    job_id = create_job(w, value=FEE + 10 * MIN_FEE)
    with boa.reverts("compute: unknown job"):
        settle(w, receipt(w, 9, 0, {a: MIN_FEE}))
    with boa.reverts("compute: wrong part"):
        settle(w, receipt(w, job_id, 1, {a: MIN_FEE}))
    r = receipt(w, job_id, 0, {a: MIN_FEE, b: MIN_FEE})
    with boa.reverts("compute: length mismatch"):
        settle(w, replace(r, fees=(MIN_FEE,)))
    with boa.reverts("compute: bad signature length"):
        settle(w, r, signature=sign_receipt(r, w.coordinator)[:64])
    with boa.reverts("compute: workers not sorted"):
        settle(w, replace(r, workers=(b, a)))
    with boa.reverts("compute: workers not sorted"):
        settle(w, replace(r, workers=(a, a)))
    with boa.reverts("compute: workers not sorted"):
        settle(w, replace(r, workers=(ZERO, a)))
    with boa.reverts("compute: liars not sorted"):
        settle(w, replace(receipt(w, job_id, 0, {}), liars=(b, a)))
    with boa.reverts("compute: liars not sorted"):
        settle(w, replace(receipt(w, job_id, 0, {}), liars=(a, a)))
    with boa.reverts("compute: worker not registered"):
        settle(w, receipt(w, job_id, 0, {new_account(): MIN_FEE}))
    with boa.reverts("compute: liar not registered"):
        settle(w, receipt(w, job_id, 0, {}, liars=(new_account(),)))
    with boa.reverts("compute: fee below minimum"):
        settle(w, receipt(w, job_id, 0, {a: MIN_FEE - 1}))
    with boa.reverts("compute: over budget"):
        settle(w, receipt(w, job_id, 0, {a: 5 * MIN_FEE, b: 4 * MIN_FEE, c: 2 * MIN_FEE}))
    with boa.reverts("compute: over budget"):
        settle(w, receipt(w, job_id, 0, {a: 2**256 - 1}))
    # exactly the budget is fine; nothing is left for a later part
    settle(w, receipt(w, job_id, 0, {a: 5 * MIN_FEE, b: 5 * MIN_FEE}))
    with boa.reverts("compute: over budget"):
        settle(w, receipt(w, job_id, 1, {c: MIN_FEE}))
    settle(w, receipt(w, job_id, 1, {}, final=True))
    assert w.market.owed_of(w.consumer) == 0


def test_a_liar_is_never_paid(w):
    a, b, _, _ = w.workers
    job_id = create_job(w)
    # named as a liar and as a worker in the same part: slashed first, so refused
    with boa.reverts("compute: worker banned"):
        settle(w, receipt(w, job_id, 0, {a: MIN_FEE, b: MIN_FEE}, liars=(a,)))
    settle(w, receipt(w, job_id, 0, {b: MIN_FEE}, liars=(a,)))
    with boa.reverts("compute: worker banned"):
        settle(w, receipt(w, job_id, 1, {a: MIN_FEE}))
    # named as a liar again (another part, another job): nothing left, nothing slashed twice
    other = create_job(w)
    settle(w, receipt(w, other, 0, {}, liars=(a,)))
    assert "WorkerSlashed" not in names(market_logs(w))
    assert w.market.owed_of(w.consumer) == MIN_STAKE


def test_settle_only_before_the_deadline(w):
    job_id = create_job(w, deadline=now() + 100)
    boa.env.time_travel(seconds=99)
    settle(w, receipt(w, job_id, 0, {w.workers[0]: MIN_FEE}))
    boa.env.time_travel(seconds=1)
    with boa.reverts("compute: job expired"):
        settle(w, receipt(w, job_id, 1, {}, final=True))


# --- replay ---------------------------------------------------------------------------------


def test_receipt_for_one_job_is_refused_on_another(w):
    a = w.workers[0]
    job_a, job_b = create_job(w), create_job(w)
    r = receipt(w, job_a, 0, {a: MIN_FEE})
    sig = sign_receipt(r, w.coordinator)
    with boa.reverts("compute: bad receipt"):
        settle(w, replace(r, job_id=job_b), signature=sig)
    settle(w, r, signature=sig)
    # valid once: the same receipt again is for a part already settled
    with boa.reverts("compute: wrong part"):
        settle(w, r, signature=sig)
    assert w.market.owed_of(a) == MIN_FEE


def test_receipt_for_one_part_is_refused_on_another(w):
    a = w.workers[0]
    job_id = create_job(w)
    settle(w, receipt(w, job_id, 0, {a: MIN_FEE}))
    old = receipt(w, job_id, 0, {a: MIN_FEE})
    with boa.reverts("compute: bad receipt"):
        settle(w, replace(old, part=1), signature=sign_receipt(old, w.coordinator))


def test_receipt_binds_every_field(w):
    a, b, _, _ = w.workers
    job_id = create_job(w)
    r = receipt(w, job_id, 0, {a: MIN_FEE, b: MIN_FEE}, liars=())
    sig = sign_receipt(r, w.coordinator)
    for changed in (
        replace(r, fees=(MIN_FEE, MIN_FEE + 1)),
        replace(r, workers=(a,), fees=(MIN_FEE,)),
        replace(r, receipt_hash=b"\x98" * 32),
        replace(r, final=True),
    ):
        with boa.reverts("compute: bad receipt"):
            settle(w, changed, signature=sig)
    honest = receipt(w, job_id, 0, {a: MIN_FEE})
    framed = receipt(w, job_id, 0, {a: MIN_FEE}, liars=(b,))
    with boa.reverts("compute: bad receipt"):
        settle(w, framed, signature=sign_receipt(honest, w.coordinator))


def test_receipt_is_bound_to_its_coordinator(w):
    other = key_account()
    register_coordinator(w, other.address)
    job_id = create_job(w)
    r = receipt(w, job_id, 0, {w.workers[0]: MIN_FEE})
    with boa.reverts("compute: bad receipt"):
        settle(w, r, key=other)  # a registered coordinator, but not this job's
    with boa.reverts("compute: bad receipt"):
        settle(w, r, signature=high_s(sign_receipt(r, w.coordinator)))
    with boa.reverts("compute: bad receipt"):
        settle(w, r, signature=b"\x00" * 65)
    settle(w, r)


def test_receipt_is_bound_to_its_contract(w):
    other = deploy_compute(w.terms, MIN_STAKE, COOLDOWN)
    with boa.env.prank(w.operator):
        other.register_coordinator(w.coordinator.address, "bafkreievidence", SOFTWARE)
    with boa.env.prank(w.workers[0]):
        other.register_worker(MIN_FEE, CLASS, w.coordinator.address, value=MIN_STAKE)
    with boa.env.prank(w.consumer):
        other.create_job(1, w.coordinator.address, PROGRAM, "s", now() + DAY, value=FEE + BUDGET)
    job_id = create_job(w)
    r = receipt(w, job_id, 0, {w.workers[0]: MIN_FEE})  # for w.market
    with boa.reverts("compute: bad receipt"):
        settle(w, r, market=other)
    ok = replace(r, market=other.address)
    settle(w, ok, market=other)
    assert other.owed_of(w.workers[0]) == MIN_FEE and w.market.owed_of(w.workers[0]) == 0


def test_receipt_is_bound_to_its_chain(w):
    job_id = create_job(w)
    r = receipt(w, job_id, 0, {w.workers[0]: MIN_FEE})
    sig = sign_receipt(r, w.coordinator)
    original = boa.env.evm.patch.chain_id
    try:
        boa.env.evm.patch.chain_id = original + 1
        with boa.reverts("compute: bad receipt"):
            settle(w, r, signature=sig)
        settle(w, replace(r, chain_id=original + 1))
    finally:
        boa.env.evm.patch.chain_id = original


def test_python_digest_matches_the_contract(w):
    a, b, c, _ = w.workers
    for r in (
        receipt(w, 3, 0, {}),
        receipt(w, 3, 2, {a: 1, c: 10**18}, liars=(b,), final=True),
        receipt(w, 2**200, 7, {x: i for i, x in enumerate(w.workers)}, liars=(a, b)),
    ):
        assert w.market.receipt_digest(
            r.job_id, r.part, list(r.workers), list(r.fees), list(r.liars), r.receipt_hash,
            r.final,
        ) == receipt_digest(r)
    r = receipt(w, 3, 0, {a: 1})
    assert receipt_digest(r) != receipt_digest(replace(r, fees=(2,)))


def test_settle_names_at_most_64_workers(w):
    many = sorted((new_account() for _ in range(65)), key=lambda x: int(x, 16))
    for worker in many:
        register_worker(w, worker, min_fee=1)
    job_id = create_job(w)
    r = receipt(w, job_id, 0, {x: 1 for x in many[:64]}, liars=tuple(many[64:]))
    settle(w, r)
    assert w.market.get_job(job_id).spent == 64
    # the ABI itself refuses a 65th entry: settle larger jobs in parts
    with pytest.raises(Exception), boa.env.prank(w.consumer):  # noqa: B017
        w.market.settle(job_id, 1, many, [1] * 65, [], RESULT, False, b"\x00" * 65)


# --- cancel, withdraw, held fees ------------------------------------------------------------


def test_cancel_after_the_deadline_refunds_what_was_not_paid(w):
    a = w.workers[0]
    job_id = create_job(w, deadline=now() + 100)
    settle(w, receipt(w, job_id, 0, {a: 2 * MIN_FEE}))
    with boa.env.prank(w.consumer), boa.reverts("compute: deadline not passed"):
        w.market.cancel(job_id)
    boa.env.time_travel(seconds=100)
    with boa.env.prank(new_account()), boa.reverts("compute: only consumer"):
        w.market.cancel(job_id)
    with boa.env.prank(w.consumer), boa.reverts("compute: unknown job"):
        w.market.cancel(job_id + 1)
    with boa.env.prank(w.consumer):
        assert w.market.cancel(job_id) == FEE + BUDGET - 2 * MIN_FEE
    (log,) = market_logs(w)
    assert (type(log).__name__, log.job_id, log.refund) == (
        "JobCancelled",
        job_id,
        FEE + BUDGET - 2 * MIN_FEE,
    )
    assert w.market.get_job(job_id).status == J_CANCELLED
    with boa.env.prank(w.consumer), boa.reverts("compute: job closed"):
        w.market.cancel(job_id)
    with boa.reverts("compute: job closed"):
        settle(w, receipt(w, job_id, 1, {}, final=True))
    assert w.market.owed_of(a) == 2 * MIN_FEE  # fees credited before stay credited


def test_cancel_after_final_is_refused(w):
    job_id = create_job(w, deadline=now() + 100)
    settle(w, receipt(w, job_id, 0, {}, final=True))
    boa.env.time_travel(seconds=100)
    with boa.env.prank(w.consumer), boa.reverts("compute: job closed"):
        w.market.cancel(job_id)


def test_withdraw(w):
    a = w.workers[0]
    job_id = create_job(w)
    settle(w, receipt(w, job_id, 0, {a: 3 * MIN_FEE}, final=True))
    before = balance(a)
    with boa.env.prank(a):
        assert w.market.withdraw() == 3 * MIN_FEE
        (log,) = market_logs(w)
        assert (type(log).__name__, log.account, log.amount) == ("Withdrawn", a, 3 * MIN_FEE)
        with boa.reverts("compute: nothing to withdraw"):
            w.market.withdraw()
    assert balance(a) == before + 3 * MIN_FEE


def test_refused_training_fee_is_held_then_released(w):
    empty = refusing_token()
    w.terms.set_terms(2, empty.address, ZERO, FEE, 0, 10)
    job_id = create_job(w, dataset_id=2)
    with boa.reverts("compute: nothing held"):
        w.market.release_held(2)
    settle(w, receipt(w, job_id, 0, {}, final=True))
    paid = market_logs(w)[-1]
    assert (type(paid).__name__, paid.held, paid.amount) == ("DividendPaid", True, FEE)
    assert w.market.held_of(2) == FEE
    with boa.reverts("shares: no holders"):
        w.market.release_held(2)
    empty.set_refuse(False)
    with boa.env.prank(new_account()):
        assert w.market.release_held(2) == FEE
    assert empty.received() == FEE and w.market.held_of(2) == 0


def test_a_free_dataset_pays_no_dividend(w):
    w.terms.set_terms(3, w.token.address, ZERO, 0, 0, 10)
    job_id = create_job(w, dataset_id=3, value=BUDGET)
    settle(w, receipt(w, job_id, 0, {}, final=True))
    assert "DividendPaid" not in names(market_logs(w))
    assert w.market.get_job(job_id).training_fee == 0


REENTER = """
interface IMarket:
    def withdraw() -> uint256: nonpayable
    def withdraw_stake() -> uint256: nonpayable
    def register_worker(min_fee: uint256, c: bytes32, coordinator: address): payable
    def unregister() -> uint256: nonpayable

market: IMarket
coordinator: address
tried: public(uint256)
reentered: public(bool)

@deploy
def __init__(m: address, c: address):
    self.market = IMarket(m)
    self.coordinator = c

@external
@payable
def join():
    extcall self.market.register_worker(1, keccak256("class"), self.coordinator, value=msg.value)

@external
def leave():
    extcall self.market.unregister()

@external
def take_stake():
    extcall self.market.withdraw_stake()

@external
def take_fees():
    extcall self.market.withdraw()

@external
@payable
def __default__():
    if self.tried < 2:
        self.tried += 1
        ok: bool = raw_call(
            self.market.address, method_id("withdraw()"), revert_on_failure=False
        )
        ok2: bool = raw_call(
            self.market.address, method_id("withdraw_stake()"), revert_on_failure=False
        )
        self.reentered = self.reentered or ok or ok2
"""


def test_no_reentry_while_paying(w):
    attacker = boa.loads(REENTER, w.market.address, w.coordinator.address)
    boa.env.set_balance(boa.env.eoa, 10 * ETHER)
    attacker.join(value=MIN_STAKE)
    job_id = create_job(w)
    settle(w, receipt(w, job_id, 0, {attacker.address: 5 * MIN_FEE}, final=True))
    attacker.take_fees()
    attacker.leave()
    boa.env.time_travel(seconds=DAY)
    attacker.take_stake()
    assert attacker.tried() == 2 and not attacker.reentered()
    assert balance(attacker.address) == 5 * MIN_FEE + MIN_STAKE
    assert w.market.owed_of(attacker.address) == 0


# --- reasons: every one in the table, tested and documented --------------------------------


def _compute_reasons() -> set[str]:
    return set(REASON.findall((CONTRACTS / "ComputeMarket.vy").read_text()))


def test_every_compute_assert_has_a_prefixed_reason():
    lines = (CONTRACTS / "ComputeMarket.vy").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("assert "):
            statement = stripped + (lines[i + 1].strip() if stripped.endswith("(") else "")
            assert re.search(r', \(?"compute: [^"]+"', statement), statement
        assert "raise" not in stripped.split("#")[0].split(), stripped
    assert len(_compute_reasons()) >= 30


def test_every_compute_reason_is_in_the_table_tested_and_documented():
    reasons = _compute_reasons()
    table = {r for r in REVERTS if r.startswith("compute: ")}
    assert reasons == table
    own = Path(__file__).name
    tests = (
        "\n".join(p.read_text() for p in sorted(TESTS.glob("test_*.py")) if p.name != own)
        + (TESTS / own).read_text().split("# --- reasons:")[0]
    )
    missing = sorted(r for r in reasons if f'"{r}"' not in tests)
    assert not missing, f"compute reasons without a test: {missing}"
    doc = DOCS.read_text()
    undocumented = sorted(r for r in reasons if f"`{r}`" not in doc)
    assert not undocumented, f"compute reasons missing from docs/compute-market.md: {undocumented}"
