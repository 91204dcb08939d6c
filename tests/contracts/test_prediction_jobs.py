"""ComputeMarket prediction jobs: escrow from the registry's terms, the one-transaction split
(workers, royalty, model owner, consumer refund), reverts, and a property test that the money
is conserved to the wei and a job settles once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boa
import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databright.chain.compute_market import Receipt, sign_receipt
from databright.chain.compute_predictions import PredictionReceipt, split_payment
from databright.chain.eip712 import digest
from tests.contracts.conftest import ETHER, ZERO, new_account
from tests.contracts.test_compute_market import (
    CLASS,
    MIN_FEE,
    MIN_STAKE,
    deploy_compute,
    models_deployer,
)
from tests.contracts.test_model_registry import (
    forget_storage_traces,
    key_account,
    make_token,
    refusing_token,
    registry_deployer,
    terms_deployer,
)

PRICE = 10**15 + 7
BPS = 2_500
COUNT = 40
BUDGET = ETHER // 10
DAY = 86_400
PROGRAM = b"\x5e" * 32
RESULT = b"\x42" * 32
COOLDOWN = 3_600


@dataclass
class World:
    market: Any
    models: Any
    token: Any
    holder: str
    coordinator: LocalAccount
    owner: str
    consumer: str
    workers: list[str]


def _world() -> World:
    forget_storage_traces()
    token_owner, holder = new_account(), new_account()
    token = make_token(token_owner, holder)
    terms = terms_deployer().deploy()
    terms.set_terms(1, token.address, ZERO, ETHER // 10, 0, 10)
    models = models_deployer().deploy()
    market = deploy_compute(terms, MIN_STAKE, COOLDOWN, models)
    world = World(market, models, token, holder, key_account(), new_account(), new_account(),
                  sorted((new_account() for _ in range(3)), key=lambda a: int(a, 16)))
    with boa.env.prank(new_account()):
        market.register_coordinator(world.coordinator.address, "bafkreievidence", 1)
    for worker in world.workers:
        with boa.env.prank(worker):
            market.register_worker(MIN_FEE, CLASS, world.coordinator.address, value=MIN_STAKE)
    models.set_model(1, world.owner, 1, token.address, PRICE, BPS)
    return world


@pytest.fixture
def w() -> World:
    return _world()


def now() -> int:
    return int(boa.env.evm.patch.timestamp)


def create(w: World, model_id: int = 1, count: int = COUNT, value: int | None = None,
           sender: str | None = None) -> int:
    price = w.models.get_model(model_id).price_per_prediction if model_id else 0
    with boa.env.prank(sender or w.consumer):
        return int(w.market.create_prediction_job(
            model_id, count, w.coordinator.address, PROGRAM, "bafkreispec", now() + DAY,
            value=price * count + BUDGET if value is None else value))


def final(w: World, job_id: int, payouts: dict[str, int], delivered: int, part: int = 0,
          liars: tuple[str, ...] = ()) -> PredictionReceipt:
    return PredictionReceipt.of(boa.env.evm.patch.chain_id, w.market.address, job_id, part,
                                payouts, liars, RESULT, delivered)


def settle(w: World, r: PredictionReceipt, signature: bytes | None = None) -> None:
    sig = sign_receipt(r, w.coordinator) if signature is None else signature
    with boa.env.prank(new_account()):  # anyone may deliver it
        w.market.settle_prediction(r.job_id, r.part, list(r.workers), list(r.fees),
                                   list(r.liars), r.receipt_hash, r.delivered, sig)


def logs(w: World) -> list[Any]:
    return [log for log in w.market.get_logs() if log.address == w.market.address]


def balance(address: str) -> int:
    return int(boa.env.get_balance(address))


# --- creation -------------------------------------------------------------------------------


def test_a_prediction_job_escrows_the_registry_price_and_a_budget(w):
    before = balance(w.market.address)
    job_id = create(w)
    created, prediction = logs(w)
    assert (type(created).__name__, created.training_fee, created.budget, created.dataset_id) == (
        "JobCreated", 0, BUDGET, 1)
    assert type(prediction).__name__ == "PredictionJobCreated"
    assert (prediction.job_id, prediction.model_id, prediction.owner, prediction.count,
            prediction.price_per_prediction, prediction.royalty_bps, prediction.escrow) == (
        job_id, 1, w.owner, COUNT, PRICE, BPS, PRICE * COUNT)
    p = w.market.get_prediction_job(job_id)
    assert (p.model_id, p.owner, p.count, p.price_per_prediction, p.royalty_bps, p.escrow,
            p.delivered) == (1, w.owner, COUNT, PRICE, BPS, PRICE * COUNT, 0)
    job = w.market.get_job(job_id)
    assert (job.training_fee, job.budget, job.dataset_id, job.share_token) == (
        0, BUDGET, 1, w.token.address)
    assert balance(w.market.address) == before + PRICE * COUNT + BUDGET


def test_the_job_keeps_the_terms_it_was_created_with(w):
    job_id = create(w)
    w.models.set_model(1, new_account(), 1, w.token.address, 3 * PRICE, 9_000)
    p = w.market.get_prediction_job(job_id)
    assert (p.owner, p.price_per_prediction, p.royalty_bps) == (w.owner, PRICE, BPS)


def test_create_prediction_job_reverts(w):
    with boa.reverts("compute: unknown model"):
        create(w, model_id=0, value=BUDGET)
    with boa.env.prank(w.consumer), boa.reverts("compute: unknown model"):
        w.market.create_prediction_job(2, 1, w.coordinator.address, PROGRAM, "bafkreispec",
                                       now() + DAY, value=BUDGET)
    with boa.reverts("compute: bad count"):
        create(w, count=0)
    with boa.reverts("compute: bad count"):
        create(w, count=2**40, value=0)
    with boa.reverts("compute: value below prediction price"):
        create(w, value=PRICE * COUNT - 1)
    w.models.set_model(2, w.owner, 1, w.token.address, 2**128, BPS)
    with boa.reverts("compute: price too large"):
        create(w, model_id=2, count=1, value=0)
    w.models.set_model(3, w.owner, 1, w.token.address, PRICE, 10_001)
    with boa.reverts("compute: bad royalty"):
        create(w, model_id=3)
    w.models.set_model(4, w.owner, 7, ZERO, PRICE, BPS)
    with boa.reverts("compute: unknown dataset"):
        create(w, model_id=4)
    with boa.env.prank(w.consumer), boa.reverts("compute: unknown coordinator"):
        w.market.create_prediction_job(1, 1, new_account(), PROGRAM, "bafkreispec",
                                       now() + DAY, value=PRICE)
    assert create(w, value=PRICE * COUNT) == 1  # a zero budget is allowed


# --- settlement -----------------------------------------------------------------------------


def test_one_settlement_pays_workers_royalty_owner_and_refund(w):
    job_id = create(w)
    fees = {x: MIN_FEE * (i + 1) for i, x in enumerate(w.workers)}
    delivered = 33
    market_before = balance(w.market.address)
    settle(w, final(w, job_id, fees, delivered))
    split = split_payment(PRICE, COUNT, delivered, BPS)
    assert split["royalty"] == -(-PRICE * delivered * BPS // 10_000)
    assert split["royalty"] + split["owner"] + split["refund"] == PRICE * COUNT
    names = [type(log).__name__ for log in logs(w)]
    assert names == ["WorkerPaid"] * 3 + ["PartSettled", "JobFinalized", "PredictionSettled",
                                          "DividendPaid"]
    settled = next(log for log in logs(w) if type(log).__name__ == "PredictionSettled")
    assert (settled.delivered, settled.owner_amount, settled.royalty, settled.refund,
            settled.owner, settled.model_id) == (
        delivered, split["owner"], split["royalty"], split["refund"], w.owner, 1)
    for x, fee in fees.items():
        assert w.market.owed_of(x) == fee
    assert w.market.owed_of(w.owner) == split["owner"]
    assert w.market.owed_of(w.consumer) == split["refund"] + BUDGET - sum(fees.values())
    assert w.token.total_distributed() == split["royalty"]
    assert balance(w.market.address) == market_before - split["royalty"]
    assert w.market.get_prediction_job(job_id).delivered == delivered
    assert w.market.get_job(job_id).status == 2
    with boa.env.prank(w.owner):
        assert w.market.withdraw() == split["owner"]


def test_the_royalty_rounds_up_for_the_shareholders(w):
    w.models.set_model(2, w.owner, 1, w.token.address, 3, 1)  # 3 wei at 1 bps
    job_id = create(w, model_id=2, count=5)
    settle(w, final(w, job_id, {}, 5))
    assert w.market.owed_of(w.owner) == 14  # 15 wei less a 1-wei royalty
    assert w.token.total_distributed() == 1


def test_earlier_parts_then_the_final_one(w):
    job_id = create(w)
    r = Receipt.of(boa.env.evm.patch.chain_id, w.market.address, job_id, 0,
                   {w.workers[0]: MIN_FEE}, (), RESULT, False)
    with boa.env.prank(new_account()):
        w.market.settle(job_id, 0, list(r.workers), list(r.fees), [], RESULT, False,
                        sign_receipt(r, w.coordinator))
    settle(w, final(w, job_id, {w.workers[1]: MIN_FEE}, COUNT, part=1,
                    liars=(w.workers[2],)))
    assert w.market.get_worker(w.workers[2]).status == 3
    assert w.market.owed_of(w.consumer) == BUDGET - 2 * MIN_FEE + MIN_STAKE  # slashed to it


def test_a_prediction_job_cannot_close_without_its_delivered_count(w):
    job_id = create(w)
    r = Receipt.of(boa.env.evm.patch.chain_id, w.market.address, job_id, 0, {}, (), RESULT,
                   True)
    with boa.env.prank(new_account()), boa.reverts("compute: prediction job needs delivered"):
        w.market.settle(job_id, 0, [], [], [], RESULT, True, sign_receipt(r, w.coordinator))


def test_settle_prediction_reverts(w):
    job_id = create(w)
    with boa.reverts("compute: delivered above count"):
        settle(w, final(w, job_id, {}, COUNT + 1))
    # a training-style Receipt over the same fields does not pass for a PredictionReceipt
    r = final(w, job_id, {}, COUNT)
    as_training = Receipt.of(r.chain_id, r.market, job_id, 0, {}, (), RESULT, True)
    with boa.reverts("compute: bad receipt"):
        settle(w, r, signature=sign_receipt(as_training, w.coordinator))
    with boa.reverts("compute: bad receipt"):  # delivered is signed
        settle(w, r, signature=sign_receipt(final(w, job_id, {}, COUNT - 1), w.coordinator))
    with boa.reverts("compute: bad receipt"):
        settle(w, r, signature=sign_receipt(r, key_account()))
    with boa.reverts("compute: wrong part"):
        settle(w, final(w, job_id, {}, COUNT, part=1))
    with boa.env.prank(w.consumer):
        training = int(w.market.create_job(1, w.coordinator.address, PROGRAM, "bafkreispec",
                                           now() + DAY, value=ETHER))
    with boa.reverts("compute: not a prediction job"):
        settle(w, final(w, training, {}, 0))
    with boa.reverts("compute: not a prediction job"):
        w.market.get_prediction_job(training)
    settle(w, r)
    with boa.reverts("compute: job closed"):  # once
        settle(w, r)


def test_the_contract_digest_is_the_python_one(w):
    job_id = create(w)
    r = final(w, job_id, {w.workers[0]: MIN_FEE}, 9, liars=(w.workers[1],))
    assert w.market.prediction_receipt_digest(
        job_id, 0, list(r.workers), list(r.fees), list(r.liars), RESULT, 9) == digest(r)


def test_a_refused_royalty_is_held_and_released(w):
    flaky = refusing_token()
    w.models.set_model(2, w.owner, 2, flaky.address, PRICE, BPS)
    job_id = create(w, model_id=2)
    settle(w, final(w, job_id, {}, COUNT))
    royalty = split_payment(PRICE, COUNT, COUNT, BPS)["royalty"]
    assert w.market.held_of(2) == royalty
    flaky.set_refuse(False)
    assert w.market.release_held(2) == royalty
    assert flaky.received() == royalty


def test_cancel_refunds_the_escrow_and_the_budget(w):
    job_id = create(w)
    boa.env.time_travel(seconds=DAY)
    with boa.env.prank(w.consumer):
        assert w.market.cancel(job_id) == PRICE * COUNT + BUDGET
    with boa.reverts("compute: job closed"):
        settle(w, final(w, job_id, {}, COUNT))


def test_terms_come_from_the_real_model_registry():
    """The struct the market decodes is the ModelRegistry's own `get_model` answer."""
    forget_storage_traces()
    token = make_token(new_account(), new_account())
    terms = terms_deployer().deploy()
    terms.set_terms(1, token.address, ZERO, 0, 500, 10)
    registry = registry_deployer().deploy(terms.address, DAY)
    owner = new_account()
    with boa.env.prank(owner):
        model_id = registry.register(1, "digits-cnn", b"\x11" * 32, 1234, 700)
    market = deploy_compute(terms, MIN_STAKE, COOLDOWN, registry)
    enclave = key_account()
    with boa.env.prank(new_account()):
        market.register_coordinator(enclave.address, "bafkreievidence", 1)
    consumer = new_account()
    with boa.env.prank(consumer):
        job_id = market.create_prediction_job(model_id, 10, enclave.address, PROGRAM,
                                              "bafkreispec", now() + DAY, value=12_340)
    p = market.get_prediction_job(job_id)
    assert (p.owner, p.price_per_prediction, p.royalty_bps, p.escrow) == (owner, 1234, 700,
                                                                          12_340)
    with boa.env.prank(consumer), boa.reverts("compute: unknown model"):
        market.create_prediction_job(model_id + 1, 1, enclave.address, PROGRAM, "bafkreispec",
                                     now() + DAY, value=0)


# --- property: conservation and settle-once --------------------------------------------------

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    price=st.one_of(st.integers(0, 10**6), st.integers(0, 2**128 - 1)),
    count=st.one_of(st.integers(1, 50), st.integers(1, 2**40 - 1)),
    delivered_fraction=st.fractions(0, 1),
    bps=st.integers(0, 10_000),
    budget=st.integers(0, 10**18),
    fee_parts=st.lists(st.integers(0, 100), min_size=0, max_size=3),
    liar=st.booleans(),
)
def test_money_is_conserved_and_a_job_settles_once(w, price, count, delivered_fraction, bps,
                                                    budget, fee_parts, liar):
    """titanoboa runs each example in its own anchor: every one starts from the fixture's
    world."""
    delivered = int(count * delivered_fraction)
    escrow = price * count
    consumer = new_account(escrow + budget + ETHER)
    w.models.set_model(9, w.owner, 1, w.token.address, price, bps)
    job_id = create(w, model_id=9, count=count, value=escrow + budget, sender=consumer)
    workers = w.workers[: len(fee_parts)]
    total = sum(fee_parts) or 1
    fees = {x: max(MIN_FEE, budget * part // total) if budget >= MIN_FEE * 3 else MIN_FEE
            for x, part in zip(workers, fee_parts, strict=False)}
    if sum(fees.values()) > budget:
        fees = {}
    liars = (w.workers[2],) if liar and len(workers) < 3 else ()
    stake = MIN_STAKE if liars else 0
    market_before = balance(w.market.address)
    owner_before, dividends_before = w.market.owed_of(w.owner), w.token.total_distributed()
    held_before = w.market.held_of(1)
    settle(w, final(w, job_id, fees, delivered, liars=liars))
    # a royalty the token refuses (one past its per-share arithmetic) is held, not lost
    held = w.market.held_of(1) - held_before
    royalty = w.token.total_distributed() - dividends_before + held
    owner = w.market.owed_of(w.owner) - owner_before
    workers_paid = sum(w.market.owed_of(x) for x in fees)
    refund = w.market.owed_of(consumer) - stake
    assert escrow + budget == owner + royalty + workers_paid + refund
    assert royalty == -(-price * delivered * bps // 10_000)
    assert refund == price * (count - delivered) + budget - workers_paid
    # what stays in the market is pull credit and the held royalty
    assert balance(w.market.address) == market_before - royalty + held
    with boa.reverts("compute: job closed"):
        settle(w, final(w, job_id, fees, delivered, liars=liars))
    boa.env.time_travel(seconds=DAY)
    with boa.env.prank(consumer), boa.reverts("compute: job closed"):
        w.market.cancel(job_id)
