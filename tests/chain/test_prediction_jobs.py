"""Prediction jobs through the ComputeMarket wrapper on both providers, with the real
ModelRegistry: the escrow is the registry's price × count, one ``settle_prediction`` pays the
workers, the royalty, the model's owner and the consumer, and a changed field is refused. Gas of
both calls is measured here (docs/compute-market.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from databright.chain.compute_market import sign_receipt
from databright.chain.compute_predictions import split_payment
from databright.chain.eip712 import digest
from databright.chain.model_registry import ModelRegistry
from databright.errors import InvalidArgumentError, PermissionDenied, WrongStakeError
from tests.chain.test_compute_market import (
    BUDGET,
    FEE,
    MIN_FEE,
    MIN_STAKE,
    PROGRAM,
    RESULT,
    World,
)

PRICE = 10**15
ROYALTY_BPS = 2_500
COUNT = 40
DELIVERED = 33


@pytest.fixture
def world(chain, new_account) -> World:
    return World(chain, new_account)


GAS_CEILING = {"create_prediction_job (first job)": 355_000,
               "settle_prediction (3 workers + 1 liar)": 238_000}


def test_a_prediction_job_pays_everyone_in_one_settlement(world: World,
                                                          capsys: pytest.CaptureFixture[str]):
    world.setup_pool()
    registry = ModelRegistry(world.chain, world.registry_address)
    assert world.market.model_registry() == registry.address
    owner = world.new_account()
    model_id, _ = registry.register(owner, 1, "digits-cnn", PROGRAM, PRICE, ROYALTY_BPS,
                                    value=FEE)
    deadline = world.chain.now() + 3_600
    with pytest.raises(WrongStakeError, match="compute: value below prediction price"):
        world.market.create_prediction_job(world.consumer, model_id, COUNT, world.enclave.address,
                                           PROGRAM, "bafkreispec", deadline, PRICE * COUNT - 1)
    job_id, receipt = world.market.create_prediction_job(
        world.consumer, model_id, COUNT, world.enclave.address, PROGRAM, "bafkreispec", deadline,
        PRICE * COUNT + BUDGET)
    gas = {"create_prediction_job (first job)": int(receipt["gasUsed"])}
    p = world.market.get_prediction_job(job_id)
    assert (p.model_id, p.owner, p.count, p.price_per_prediction, p.royalty_bps, p.escrow) == (
        model_id, owner.address, COUNT, PRICE, ROYALTY_BPS, PRICE * COUNT)
    assert world.market.get_job(job_id).training_fee == 0

    a, b, c = (w.address for w in world.workers)
    r = world.market.prediction_receipt(job_id, 0, {a: MIN_FEE, b: 2 * MIN_FEE}, [c], RESULT,
                                        DELIVERED)
    assert world.market.prediction_receipt_digest(r) == digest(r)
    sig = sign_receipt(r, world.enclave)
    with pytest.raises(PermissionDenied, match="compute: bad receipt"):
        world.market.settle_prediction(world.operator, replace(r, delivered=COUNT), sig)
    with pytest.raises(InvalidArgumentError, match="compute: delivered above count"):
        bad = replace(r, delivered=COUNT + 1)
        world.market.settle_prediction(world.operator, bad, sign_receipt(bad, world.enclave))
    distributed = world.token.total_distributed()
    settled, receipt = world.market.settle_prediction(world.operator, r, sig)
    gas["settle_prediction (3 workers + 1 liar)"] = int(receipt["gasUsed"])
    split = split_payment(PRICE, COUNT, DELIVERED, ROYALTY_BPS)
    assert (settled.delivered, settled.owner_amount, settled.royalty, settled.refund,
            settled.royalty_held) == (DELIVERED, split["owner"], split["royalty"],
                                      split["refund"], False)
    assert (settled.paid, settled.slashed, settled.budget_refund) == (
        3 * MIN_FEE, MIN_STAKE, BUDGET - 3 * MIN_FEE)
    assert world.token.total_distributed() == distributed + split["royalty"]
    assert world.market.owed_of(owner.address) == split["owner"]
    assert world.market.owed_of(world.consumer.address) == (
        split["refund"] + BUDGET - 3 * MIN_FEE + MIN_STAKE)
    assert world.market.get_job(job_id).status == "final"
    assert world.market.get_prediction_job(job_id).delivered == DELIVERED
    paid, _ = world.market.withdraw(owner)
    assert paid == split["owner"]
    with capsys.disabled():
        print()
        for name, used in gas.items():
            print(f"  {name:45s} {used:>10,}")
    for name, used in gas.items():
        assert used <= GAS_CEILING[name], (name, used)
