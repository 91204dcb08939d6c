"""`databright train --compute local`: a training job under TMR on local worker identities,
settled on chain with a signed receipt that anyone can verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from databright.market.context import Deployment
from tests.cli.conftest import PASSWORD, Cli

FEE = 10**16  # the dataset's training fee (0.01 ETH)
WORKERS = 75  # 95 training items, 4 items per account (5 %): 24 shards × 3 + 3 spares


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    root = tmp_path_factory.mktemp("compute")
    cli = Cli(root / "home")
    cli("init")
    for name in ("alice", "bob"):
        cli("account", "new", name, "--fast-kdf")
    seed = digit_folder(root / "seed", 0, 120)
    cli("dataset", "create", "digits", "--from", str(seed), "--period", "1h", "--evaluator",
        "alice", "--training-fee", "0.01eth", as_="alice")
    return cli


def _train(cli, *extra: str, code: int = 0, json_out: bool = True):
    return cli("train", "digits", "--family", "small-cnn", "--epochs", "1", "--compute", "local",
               "--workers", str(WORKERS), *extra, as_="bob", code=code, json_out=json_out)


def _pool(dep):
    from databright.market.compute.pool import workers_of

    return workers_of(dep)


def _distributed(cli) -> int:
    with Deployment(cli.home) as dep:
        return int(dep.token(dep.market.get_dataset(1).share_token).total_distributed())


@pytest.fixture(scope="module")
def honest(world):
    before = _distributed(world)
    out = _train(world)
    return out, before


def test_an_honest_job_pays_workers_and_shareholders(world, honest):
    out, before = honest
    assert out["liars"] == [] and out["recomputed"] == 0
    assert _distributed(world) == before + FEE  # the training fee became dividends
    with Deployment(world.home) as dep:
        job = dep.compute.get_job(out["job"])
        assert job.status == "final" and job.training_fee == FEE
        receipt = json.loads(Path(out["receipt"]).read_text())["body"]
        paid = {w["account"]: int(w["fee"]) for w in receipt["workers"]}
        for account, fee in paid.items():  # each paid its min fee per task it answered right
            w = dep.compute.get_worker(account)
            tasks = next(x["tasks"] for x in receipt["workers"] if x["account"] == account)
            assert fee == tasks * w.min_fee and dep.compute.owed_of(account) >= fee
        assert sum(paid.values()) == job.spent <= job.budget
        assert sum(x["tasks"] for x in receipt["workers"]) == 3 * out["tasks"]


def test_no_worker_sees_more_than_five_percent(world, honest):
    out, _ = honest
    assert out["workers"] >= 72
    assert max(out["exposure"].values()) <= 0.05 and out["cap"] == 0.05
    with Deployment(world.home) as dep:  # the persisted ledger says the same
        from databright.compute.exposure import ExposureLedger
        from databright.market.compute.identities import compute_dir

        ledger = ExposureLedger(compute_dir(dep.home) / "exposure.sqlite")
        key = f"{dep.market.address.lower()}:1"
        assert max(ledger.exposures(key).values()) <= 95 * 5 // 100


def test_the_checkpoint_is_the_one_process_programs_bits(world, honest):
    out, _ = honest
    with Deployment(world.home) as dep:
        from databright.compute.reference import fit_decomposed
        from databright.market.compute.train_job import distinct as _distinct
        from databright.market.model_data import training_records, validation_records
        from databright.training import save_checkpoint

        receipt = json.loads(Path(out["receipt"]).read_text())["body"]
        spec = json.loads(dep.store.get(receipt["spec_cid"]))
        the_plan = json.loads(dep.store.get(receipt["plan_cid"]))
        train = _distinct(training_records(dep, 1))
        shard_of = {train[i].cid: s["index"] for s in the_plan["shards"] for i in s["items"]}
        ref = fit_decomposed("small-cnn", spec["config"], train, validation_records(dep, 1),
                             shard_of, store=dep.store, snapshot=spec["snapshot"])
        assert save_checkpoint(dep.store, ref.checkpoint).sha256 == out["sha256"]
        assert "0x" + ref.checkpoint.program_digest == receipt["checkpoint_program_digest"]


def test_the_receipt_verifies_and_an_altered_one_does_not(world, honest, tmp_path):
    out, _ = honest
    ok = world("receipt", "verify", out["receipt"])
    assert ok["ok"] and {c["check"] for c in ok["checks"]} == {
        "hash", "signature", "payouts", "chain", "job", "verification", "attestation"}
    refused = world("receipt", "verify", out["receipt"], "--no-allow-simulated", code=1,
                    json_out=False)
    assert "FAIL attestation" in refused.stdout
    data = json.loads(Path(out["receipt"]).read_text())
    data["body"]["workers"][0]["fee"] = str(int(data["body"]["workers"][0]["fee"]) + 1)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    bad = world("receipt", "verify", str(forged), code=1, json_out=False)
    assert "altered" in bad.stdout


@pytest.mark.parametrize("mode", ["signflip"])
def test_a_lying_worker_is_caught_slashed_and_changes_nothing(world, honest, mode):
    out, _ = honest
    consumer = world("account", "show", "bob")["address"]
    with Deployment(world.home) as dep:
        stakes = {w.account: w.stake for w in _pool(dep)}
        owed_before = dep.compute.owed_of(consumer)
    lied = _train(world, "--fault", f"0:{mode}")
    assert len(lied["liars"]) == 1 and lied["recomputed"] >= 1
    liar = lied["liars"][0]
    stake = stakes[liar]
    assert lied["sha256"] == out["sha256"]  # the job's checkpoint is the all-honest run's
    with Deployment(world.home) as dep:
        w = dep.compute.get_worker(liar)
        assert (w.status, w.stake) == ("banned", 0)
        job = dep.compute.get_job(lied["job"])
        # the consumer got the liar's whole stake and the unspent budget back
        assert dep.compute.owed_of(consumer) == owed_before + stake + job.budget - job.spent
    assert world("receipt", "verify", lied["receipt"])["ok"]
    shown = world("job", "show", str(lied["job"]))
    assert [s["worker"] for s in shown["slashed"]] == [liar]


def test_a_silent_worker_loses_its_lease_and_is_neither_named_nor_slashed(world, honest):
    out, _ = honest
    with Deployment(world.home) as dep:
        stakes = {w.account: w.stake for w in _pool(dep)}
    job = _train(world, "--fault", "0:silent")  # the first identity with work goes silent
    assert len(job["reissued"]) == 1  # its leases expired and went to spares
    silent, count = next(iter(job["reissued"].items()))
    assert count >= 1
    assert job["liars"] == [] and job["recomputed"] == 0
    assert job["sha256"] == out["sha256"]
    receipt = json.loads(Path(job["receipt"]).read_text())["body"]
    assert all(w["fee"] == "0" for w in receipt["workers"] if w["account"] == silent)
    with Deployment(world.home) as dep:
        w = dep.compute.get_worker(silent)
        assert (w.status, w.stake) == ("active", stakes[silent])


def test_a_pool_too_small_is_refused_before_any_money_moves(world):
    with Deployment(world.home) as dep:
        jobs = dep.compute.job_count()
    refused = world("train", "digits", "--family", "small-cnn", "--compute", "local",
                    "--workers", "60", as_="bob", code=1, json_out=False)
    assert "needs" in refused.stderr and "more workers" in refused.stderr
    with Deployment(world.home) as dep:
        assert dep.compute.job_count() == jobs


def test_an_unknown_fault_mode_is_refused_before_any_job(world):
    with Deployment(world.home) as dep:
        jobs = dep.compute.job_count()
    refused = _train(world, "--fault", "0:gremlin", code=2, json_out=False)
    assert "unknown fault mode" in refused.stderr
    with Deployment(world.home) as dep:
        assert dep.compute.job_count() == jobs


def test_an_evaluation_job_posts_the_coordinators_score(world, digit_folder, tmp_path):
    enclave = world("coordinator", "show")["enclave"]
    seed = digit_folder(tmp_path / "seed2", 500, 80)
    world("dataset", "create", "digits-b", "--from", str(seed), "--period", "1h",
          "--evaluator", enclave, as_="alice")
    batch = digit_folder(tmp_path / "batch", 700, 30)
    pid = world("propose", "digits-b", str(batch), as_="bob")["proposal_id"]
    before = _distributed_of(world, "digits-b")
    out = world("evaluate", str(pid), "--compute", "local", "--post", "--featurizer", "pixels",
                as_="bob")
    score = out["evaluation"]["report"]["score_bps"]
    assert out["posted"] is True
    with Deployment(world.home) as dep:
        p = dep.market.get_proposal(pid)
        assert (p.scored, p.score_bps) == (True, score)  # posted by the enclave key
        job = dep.compute.get_job(out["job"])
        assert job.status == "final" and job.budget == 0
    assert _distributed_of(world, "digits-b") == before + 10**16  # the default training fee
    assert world("receipt", "verify", out["receipt"])["ok"]
    # a dataset whose evaluator is someone else (alice): the coordinator may not post there,
    # and nothing is paid
    other = world("propose", "digits", str(digit_folder(tmp_path / "b2", 800, 20)),
                  as_="bob")["proposal_id"]
    with Deployment(world.home) as dep:
        jobs = dep.compute.job_count()
    refused = world("evaluate", str(other), "--compute", "local", "--post", as_="bob", code=7,
                    json_out=False)
    assert "evaluator" in refused.stderr
    with Deployment(world.home) as dep:
        assert dep.compute.job_count() == jobs


def _distributed_of(cli, name: str) -> int:
    with Deployment(cli.home) as dep:
        from databright.market.datasets import dataset_id

        ds = dep.market.get_dataset(dataset_id(dep, name))
        return int(dep.token(ds.share_token).total_distributed())


def test_an_unsettled_job_is_cancelled_by_its_consumer_after_its_deadline(world, honest):
    from databright.market.compute.pool import workers_of
    from databright.market.compute.train_job import submit_train_job

    out, _ = honest
    final = world("job", "cancel", str(out["job"]), as_="bob", code=7, json_out=False)
    assert "already final" in final.stderr
    with Deployment(world.home) as dep:  # a job escrowed that no coordinator runs
        from databright.compute.scheduler import WorkerInfo

        bob = dep.keystore.unlock("bob", PASSWORD)
        pool = [WorkerInfo(w.account.lower(), w.determinism_class.removeprefix("0x"), w.min_fee)
                for w in workers_of(dep) if w.status == "active"]
        coordinator = dep.compute.get_job(out["job"]).coordinator
        job_id, budget = submit_train_job(dep, bob, "digits", "small-cnn", coordinator, pool,
                                          config={"epochs": 1})
        owed = dep.compute.owed_of(bob.address)
    assert world("job", "show", str(job_id))["status"] == "open"
    assert job_id in [j["job_id"] for j in world("job", "list", "--dataset", "digits")]
    early = world("job", "cancel", str(job_id), as_="bob", code=7, json_out=False)
    assert "deadline" in early.stderr
    other = world("job", "cancel", str(job_id), as_="alice", code=7, json_out=False)
    assert "consumer" in other.stderr
    world("dev", "advance", "25h")
    done = world("job", "cancel", str(job_id), as_="bob")
    assert int(done["refund_wei"]) == FEE + budget
    with Deployment(world.home) as dep:
        assert dep.compute.owed_of(bob.address) == owed + FEE + budget
    assert world("job", "show", str(job_id))["status"] == "cancelled"
