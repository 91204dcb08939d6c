"""The index follows the ComputeMarket: workers, coordinators, jobs, payouts and slashes,
credits and withdrawals agree with the contract's own views, a rebuild reproduces them, and
the training fee a job pays its dataset is counted once."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from databright.chain.events import ChainEvent
from databright.index.cache import DividendSourceRow, SyncState
from databright.index.compute import (
    COMPUTE_TABLES,
    ComputeAccountRow,
    ComputeCoordinatorRow,
    ComputeJobRow,
    ComputePayoutRow,
    ComputeWorkerRow,
)
from databright.index.db import Index, open_index
from databright.market import sync as index_sync
from databright.market.context import Deployment
from databright.market.sync import sync
from tests.cli.conftest import Cli

FEE = 10**16  # the dataset's training fee
WORKERS = 75


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    """A home where bob ran one compute job in which worker 0 lied (and was slashed)."""
    root = tmp_path_factory.mktemp("sync-compute")
    cli = Cli(root / "home")
    cli("init")
    for name in ("alice", "bob"):
        cli("account", "new", name, "--fast-kdf")
    cli("dataset", "create", "digits", "--from", str(digit_folder(root / "seed", 0, 120)),
        "--period", "1h", "--evaluator", "alice", "--training-fee", "0.01eth", as_="alice")
    cli.job = cli("train", "digits", "--family", "small-cnn", "--epochs", "1", "--compute",
                  "local", "--workers", str(WORKERS), "--fault", "0:signflip", as_="bob")
    return cli


def _rows(dep, model):
    with dep.index.session() as s:
        return list(s.execute(select(model)).scalars())


def _dump(dep) -> dict[str, list[tuple]]:
    out = {}
    with dep.index.session() as s:
        for model in COMPUTE_TABLES:
            cols = [c.name for c in model.__table__.columns if c.name != "id"]
            rows = s.execute(select(*[model.__table__.c[c] for c in cols])).all()
            out[model.__tablename__] = sorted(tuple(str(v) for v in r) for r in rows)
    return out


def test_workers_and_coordinator_match_the_contract(world):
    with Deployment(world.home) as dep:
        sync(dep)
        workers = {w.account: w for w in _rows(dep, ComputeWorkerRow)}
        assert len(workers) >= 64
        liar = world.job["liars"][0]
        for account, row in workers.items():
            chain = dep.compute.get_worker(account)
            assert (row.stake, row.min_fee, row.status, row.coordinator) == (
                chain.stake, chain.min_fee, chain.status, chain.coordinator), account
            assert row.determinism_class == "0x" + bytes(chain.determinism_class).hex()
        assert workers[liar].status == "banned" and workers[liar].stake == 0
        assert workers[liar].slashed > 0 and workers[liar].earned == 0
        (coordinator,) = _rows(dep, ComputeCoordinatorRow)
        assert coordinator.enclave == world.job["coordinator"]
        assert coordinator.kind == "software"
        chain_c = dep.compute.get_coordinator(coordinator.enclave)
        assert coordinator.evidence_cid == chain_c.evidence_cid


def test_the_job_its_payouts_and_slash_match_the_chain_and_the_receipt(world):
    with Deployment(world.home) as dep:
        sync(dep)
        (job,) = _rows(dep, ComputeJobRow)
        chain = dep.compute.get_job(job.job_id)
        assert job.job_id == world.job["job"]
        assert (job.status, job.training_fee, job.budget, job.spent) == (
            chain.status, chain.training_fee, chain.budget, chain.spent)
        assert job.training_fee == FEE and job.fee_status == "paid"
        assert job.refund == job.budget - job.spent
        assert job.receipt_hash == world.job["receipt_hash"]
        payouts = _rows(dep, ComputePayoutRow)
        paid = [p for p in payouts if p.kind == "paid"]
        slashed = [p for p in payouts if p.kind == "slashed"]
        assert sum(p.amount for p in paid) == job.spent == int(world.job["fees_paid_wei"])
        assert [p.worker for p in slashed] == world.job["liars"] and job.liars == 1
        liar = next(w for w in _rows(dep, ComputeWorkerRow) if w.account == slashed[0].worker)
        assert job.slashed == slashed[0].amount == liar.slashed > 0
        assert job.workers == len({p.worker for p in paid})
        assert world.job["liars"][0] not in {p.worker for p in paid}


def test_credits_are_the_contracts_owed_of_for_every_account(world):
    with Deployment(world.home) as dep:
        sync(dep)
        accounts = _rows(dep, ComputeAccountRow)
        assert accounts
        for row in accounts:
            assert row.credited - row.withdrawn == dep.compute.owed_of(row.account), row.account
        consumer = dep.keystore.address_of("bob")
        (job,) = _rows(dep, ComputeJobRow)
        bob = next(r for r in accounts if r.account == consumer)
        assert bob.credited == job.refund + job.slashed  # unspent budget + the liar's stake


def test_the_training_fee_is_counted_once(world):
    with Deployment(world.home) as dep:
        sync(dep)
        with dep.index.session() as s:
            fee = s.get(DividendSourceRow, (1, "training_fee"))
        assert fee is not None and fee.distributed == FEE and fee.payments == 1 and fee.held == 0


def test_a_withdrawal_from_the_compute_market_is_indexed(world):
    bob = world("account", "show", "bob")["address"]
    with Deployment(world.home) as dep:
        owed = dep.compute.owed_of(bob)
    assert owed > 0
    paid = world("withdraw", as_="bob")
    assert {"kind": "compute market", "dataset": None, "amount_wei": owed} in paid["paid"]
    with Deployment(world.home) as dep:
        sync(dep)
        with dep.index.session() as s:
            row = s.get(ComputeAccountRow, bob)
        assert row is not None and row.withdrawn == owed and row.credited == owed
        assert dep.compute.owed_of(bob) == 0


def test_a_rebuild_reproduces_the_compute_tables(world):
    with Deployment(world.home) as dep:
        sync(dep)
        before = _dump(dep)
    assert before["compute_jobs"] and before["compute_payouts"]
    out = world("index", "rebuild")
    assert out["rebuilt"]
    with Deployment(world.home) as dep:
        assert _dump(dep) == before


def _event(name, address, block, index, **args):
    return ChainEvent("ComputeMarket", name, address, block, index, "0x" + "00" * 32, args)


def test_cancelled_and_held_paths_through_the_applier(world):
    """Paths the local job never takes (a cancelled job, a token refusing the fee), fed as
    decoded events to the sync's applier in a transaction rolled back afterwards."""
    with Deployment(world.home) as dep:
        sync(dep)
        market = dep.compute.address
        bob = dep.keystore.address_of("bob")
        (coordinator,) = _rows(dep, ComputeCoordinatorRow)
        block = dep.chain.block_number() + 1
        job = {"dataset_id": 1, "consumer": bob, "coordinator": coordinator.enclave,
               "program_digest": b"\x01" * 32, "spec_cid": "bafkreispec", "training_fee": FEE,
               "budget": 5, "deadline": 2**40}
        with dep.index.session() as s:
            applier = index_sync._Applier(dep, s)
            owed = s.get(ComputeAccountRow, bob).credited
            applier.apply(_event("JobCreated", market, block, 0, job_id=90, **job))
            applier.apply(_event("JobCancelled", market, block, 1, job_id=90, refund=FEE + 5))
            cancelled = s.get(ComputeJobRow, 90)
            assert (cancelled.status, cancelled.refund, cancelled.fee_status) == (
                "cancelled", FEE + 5, "refunded")
            assert s.get(ComputeAccountRow, bob).credited == owed + FEE + 5
            # the ModelRegistry's DividendPaid handler must never see the ComputeMarket's
            applier.apply(_event("JobCreated", market, block, 2, job_id=91, **job))
            applier.apply(_event("JobFinalized", market, block, 3, job_id=91, spent=0, refund=5))
            applier.apply(_event("DividendPaid", market, block, 4, dataset_id=1, job_id=91,
                                 amount=FEE, held=True))
            fee = applier._source(1, "training_fee")
            assert fee.held == FEE and fee.distributed == FEE  # held, not distributed
            assert s.get(ComputeJobRow, 91).fee_status == "held"
            applier.apply(_event("HeldReleased", market, block, 5, dataset_id=1, amount=FEE))
            assert fee.held == 0 and s.get(ComputeJobRow, 91).fee_status == "released"
            applier.finish()  # nothing left unmatched on the registry side
            s.rollback()
        assert sync(dep).events == 0
        assert {j.job_id for j in _rows(dep, ComputeJobRow)} == {1}


def test_migration_0005_marks_an_older_cache_for_a_rebuild(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = Index(url)
    old.migrate("0004")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO sync_state (id, chain_id, market, model_registry, "
                          "last_block, last_block_hash) VALUES (1, 1, '0xabc', NULL, 41, '0x')"))
    old.close()
    index = open_index(url)
    try:
        assert {m.__tablename__ for m in COMPUTE_TABLES} <= set(index.tables())
        with index.session() as s:
            state = s.get(SyncState, 1)
        assert state is not None and state.market == ""  # no market matches: the next sync rebuilds
    finally:
        index.close()
