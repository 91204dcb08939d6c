"""Prediction jobs on the compute market, local path: the model server's labels, paid in one
settlement (workers, royalty, owner, refund), a lying worker caught under TMR and under spot
checks, the receipt verifiable, bad input refused before any money moves."""

from __future__ import annotations

import pytest

from databright.chain.compute_predictions import split_payment
from databright.compute.spot_choice import commitment, is_checked
from databright.errors import UsageError
from databright.market.compute.options import JobOptions
from databright.market.compute.predict_execute import read_predictions
from databright.market.compute.predict_job import run_predict_job
from databright.training import load_checkpoint
from databright.training.families import get_family
from tests.market.predict_world import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    return build_world(tmp_path_factory.mktemp("predict-job"), digit_folder)


def _served_labels(dep, model_id, files):
    """What the model server's path answers for these files (the anchor)."""
    from databright.storage.cid import cid_of_bytes
    from databright.training.records import Record

    best = dep.registry.best_checkpoint(model_id)
    ckpt = load_checkpoint(dep.store, best.cid, best.file_sha256.hex())
    recs = []
    for f in files:
        data = f.read_bytes()
        recs.append(Record(cid_of_bytes(data), "", "image/png", lambda d=data: d))
    return get_family(ckpt.family).predict(ckpt, recs)


@pytest.fixture(scope="module")
def honest(world):
    with world.dep() as dep:
        consumer = world.signer("consumer")
        before = {"owner": dep.compute.owed_of(world.accounts["dev"].address),
                  "consumer": dep.compute.owed_of(consumer.address)}
        token = dep.registry.get_model(world.model_id).share_token
        from databright.chain.share_token import ShareToken

        shares = ShareToken(dep.chain, token)
        before["token"] = shares.total_distributed()
        done = run_predict_job(dep, consumer, world.model_id, world.files[:10], batch_size=4)
        after = {"owner": dep.compute.owed_of(world.accounts["dev"].address),
                 "consumer": dep.compute.owed_of(consumer.address),
                 "token": shares.total_distributed()}
        served = _served_labels(dep, world.model_id, world.files[:10])
        pjob = dep.compute.get_prediction_job(done.job_id)
    return done, before, after, served, pjob


def test_the_predictions_are_the_model_servers(world, honest):
    done, _, _, served, _ = honest
    assert [p["label"] for p in done.predictions] == served
    assert [p["name"] for p in done.predictions] == [f.name for f in world.files[:10]]
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in done.predictions)
    body = done.receipt.body
    assert (body["count"], body["delivered"], body["tasks"], body["verification"]) == (
        10, 10, 3, {"mode": "tmr"})
    with world.dep() as dep:
        shown = read_predictions(dep, done.job_id)
    assert [p["label"] for p in shown["predictions"]] == served
    assert shown["predictions_cid"] == done.predictions_cid


def test_one_settlement_pays_owner_royalty_workers_and_refund(world, honest):
    done, before, after, _, pjob = honest
    body = done.receipt.body
    split = split_payment(pjob.price_per_prediction, 10, 10, pjob.royalty_bps)
    assert after["owner"] - before["owner"] == split["owner"] > 0
    assert after["token"] - before["token"] == split["royalty"] > 0
    paid = sum(int(w["fee"]) for w in body["workers"])
    assert paid == int(body["payment"]["workers"]) > 0
    with world.dep() as dep:
        job = dep.compute.get_job(done.job_id)
    assert job.status == "final" and job.spent == paid
    assert after["consumer"] - before["consumer"] == job.budget - paid  # all 10 delivered
    assert pjob.delivered == 10 and pjob.escrow == split["escrow"]


def test_the_receipt_verifies(world, honest):
    from databright.market.compute.verify import load_policy, verify_receipt

    done = honest[0]
    with world.dep() as dep:
        out = verify_receipt(dep, done.path, load_policy(None, allow_simulated=True))
    assert out.ok, out.checks


@pytest.mark.parametrize("mode", ["1ulp", "signflip"])
def test_a_lying_worker_is_caught_under_tmr(world, honest, mode):
    with world.dep() as dep:
        # four batches over five identities: every identity gets work, the liar too
        done = run_predict_job(dep, world.signer("consumer"), world.model_id, world.files[:8],
                               batch_size=2, faults={0: mode})
        liar = done.receipt.body["liars"]
        assert len(liar) == 1 and dep.compute.get_worker(liar[0]).status == "banned"
    assert [p["label"] for p in done.predictions] == honest[3][:8]
    assert done.receipt.body["recomputed"] >= 1


def test_spot_checks_catch_a_liar_and_redo_its_batches(world, honest):
    """``stale`` answers its first batch honestly, then replays it: every batch is re-checked
    (p = 1), so the second is caught, and the first, accepted before, is done again."""
    options = JobOptions.of(1, "spot", 1.0)
    with world.dep() as dep:
        # six batches over three identities: two each, the liar's too
        done = run_predict_job(dep, world.signer("consumer"), world.model_id, world.files[:12],
                               batch_size=2, options=options, workers=3, faults={0: "stale"})
        body = done.receipt.body
        assert len(body["liars"]) == 1
        assert dep.compute.get_worker(body["liars"][0]).status == "banned"
        served = _served_labels(dep, world.model_id, world.files[:12])
    assert [p["label"] for p in done.predictions] == served
    v = body["verification"]
    assert v["mode"] == "spot" and v["ppm"] == 1_000_000 and body["spot_fraction"] == 1.0
    assert commitment(bytes.fromhex(v["seed"])) == v["seed_commitment"]
    assert v["redone"] >= 1 and [c["account"] for c in v["caught"]] == body["liars"]


def test_spot_checks_a_secret_fraction(world):
    options = JobOptions.of(1, "spot", 0.5)
    with world.dep() as dep:
        done = run_predict_job(dep, world.signer("consumer"), world.model_id, world.files[:12],
                               batch_size=1, options=options, workers=3)
    body = done.receipt.body
    v = body["verification"]
    seed = bytes.fromhex(v["seed"])
    labels = [f"job-{done.job_id}:batch-{k}" for k in range(12)]
    assert v["decided"] == labels and body["tasks"] == 12 and not body["liars"]
    assert v["checked"] == [x for x in labels if is_checked(seed, x, 500_000)]
    with world.dep() as dep:  # receipt verify recomputes the choice from the revealed seed
        from databright.market.compute.verify import load_policy, verify_receipt

        out = verify_receipt(dep, done.path, load_policy(None, allow_simulated=True))
    assert out.ok, out.checks


def test_bad_input_is_refused_before_any_money_moves(world, tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"hello")
    cases = [
        (world.model_id, [], "at least one file"),
        (world.model_id, [tmp_path / "missing.png"], "no such file"),
        (world.model_id, [bad], "not a readable image"),
        (999, world.files[:1], "no model 999"),
        (world.table_model_id, world.files[:1], "csv or .parquet"),
    ]
    with world.dep() as dep:
        consumer = world.signer("consumer")
        jobs = dep.compute.job_count()
        for model_id, files, reason in cases:
            with pytest.raises(UsageError, match=reason):
                run_predict_job(dep, consumer, model_id, files)
        assert dep.compute.job_count() == jobs


def test_a_table_model_predicts_csv_rows(world, tmp_path):
    import json

    from tests.training.conftest import digit_rows

    rows = [json.loads(r.load()) for r in digit_rows(600, 5)]
    columns = [k for k in rows[0] if k != "label"]
    csv = tmp_path / "rows.csv"
    csv.write_text(",".join(columns) + "\n" + "\n".join(
        ",".join(str(r[c]) for c in columns) for r in rows) + "\n")
    with world.dep() as dep:
        done = run_predict_job(dep, world.signer("consumer"), world.table_model_id, [csv])
    assert [p["name"] for p in done.predictions] == [f"rows.csv#row={i}" for i in range(1, 6)]
    assert done.receipt.body["delivered"] == 5


def test_the_index_follows_prediction_jobs(world, honest):
    """Credits to the model's owner and the consumer are the contract's owed_of, and every
    accepted royalty is a prediction royalty of the dataset (order: after the other tests)."""
    from sqlalchemy import select

    from databright.index.cache import DividendSourceRow
    from databright.index.compute import ComputeAccountRow
    from databright.market.sync import sync

    with world.dep() as dep:
        sync(dep)
        royalties = sum(int(log["args"]["royalty"])
                        for log in dep.compute.logs("PredictionSettled"))
        with dep.index.session() as s:
            for name in ("dev", "consumer"):
                address = world.accounts[name].address
                row = s.get(ComputeAccountRow, address)
                assert row.credited - row.withdrawn == dep.compute.owed_of(address)
            source = s.execute(select(DividendSourceRow).where(
                DividendSourceRow.dataset_id == world.dataset_id,
                DividendSourceRow.source == "prediction_royalty")).scalar_one()
    assert royalties > 0 and source.distributed == royalties
