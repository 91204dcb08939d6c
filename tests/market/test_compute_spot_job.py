"""`databright train --compute local --verify spot`: one worker per task, a secret fraction
re-checked, the mode and the seed's choice in a receipt anyone can verify; a caught liar is
slashed on chain and the job keeps the honest program's bits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from databright.compute.spot_choice import commitment, is_checked
from databright.market.compute.options import JobOptions
from databright.market.compute.verify import verification_check
from databright.market.context import Deployment
from tests.cli.conftest import Cli


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    root = tmp_path_factory.mktemp("spot")
    cli = Cli(root / "home")
    cli("init")
    for name in ("alice", "bob"):
        cli("account", "new", name, "--fast-kdf")
    seed = digit_folder(root / "seed", 0, 120)
    cli("dataset", "create", "digits", "--from", str(seed), "--period", "1h", "--evaluator",
        "alice", "--training-fee", "0.01eth", as_="alice")
    return cli


def _train(cli, *extra: str):
    return cli("train", "digits", "--family", "small-cnn", "--epochs", "1", "--compute", "local",
               "--verify", "spot", *extra, as_="bob")


def _body(out) -> dict:
    return json.loads(Path(out["receipt"]).read_text())["body"]


def _reference_sha(cli, body) -> str:
    from databright.compute.reference import fit_decomposed
    from databright.market.compute.train_job import distinct
    from databright.market.model_data import training_records, validation_records
    from databright.training import save_checkpoint

    with Deployment(cli.home) as dep:
        spec = json.loads(dep.store.get(body["spec_cid"]))
        the_plan = json.loads(dep.store.get(body["plan_cid"]))
        train = distinct(training_records(dep, 1))
        shard_of = {train[i].cid: s["index"] for s in the_plan["shards"] for i in s["items"]}
        assert all(len(s["replicas"]) == 1 for s in the_plan["shards"])  # one worker a shard
        ref = fit_decomposed("small-cnn", spec["config"], train, validation_records(dep, 1),
                             shard_of, store=dep.store, snapshot=spec["snapshot"],
                             job=f"job-{body['job_id']}")
        return save_checkpoint(dep.store, ref.checkpoint).sha256


def test_an_honest_spot_job_pays_one_answer_a_task_and_its_receipt_verifies(world):
    out = _train(world, "--spot-fraction", "0.25")
    body = _body(out)
    v = body["verification"]
    assert v["mode"] == "spot" and v["ppm"] == 250_000 and v["segment_steps"] == 8
    assert commitment(bytes.fromhex(v["seed"])) == v["seed_commitment"]
    assert v["checked"] == [x for x in v["decided"] if is_checked(bytes.fromhex(v["seed"]), x,
                                                                   250_000)]
    assert out["liars"] == [] and v["rollbacks"] == 0
    # one worker answer per task: the workers' paid tasks are the job's tasks
    assert sum(w["tasks"] for w in body["workers"]) == body["tasks"] == v["answers"]
    assert max(out["exposure"].values()) <= 0.05
    assert out["sha256"] == _reference_sha(world, body)
    checked = world("receipt", "verify", out["receipt"])
    assert checked["ok"]
    (row,) = [c for c in checked["checks"] if c["check"] == "verification"]
    assert row["ok"] and "opens its commitment" in row["detail"]


def test_a_spot_checked_liar_is_slashed_and_the_bits_are_the_honest_programs(world):
    out = _train(world, "--spot-fraction", "1", "--fault", "0:signflip")
    body = _body(out)
    v = body["verification"]
    assert len(out["liars"]) == 1 and v["rollbacks"] == 1
    (caught,) = v["caught"]
    assert caught["account"] == out["liars"][0] and caught["how"] == "checked"
    assert out["sha256"] == _reference_sha(world, body)  # every wrong gradient was redone
    with Deployment(world.home) as dep:
        w = dep.compute.get_worker(out["liars"][0])
        assert (w.status, w.stake) == ("banned", 0)
    assert world("receipt", "verify", out["receipt"])["ok"]


def _spot_body() -> dict:
    seed = bytes(range(32))
    decided = [f"job-3:{k}:0" for k in range(40)]
    return {"job_id": 3, "verification": {
        "mode": "spot", "ppm": 300_000, "seed": seed.hex(), "seed_commitment": commitment(seed),
        "decided": decided, "checked": [x for x in decided if is_checked(seed, x, 300_000)],
        "caught": [], "rollbacks": 0}}


def test_receipt_verify_recomputes_the_checked_set_from_the_seed():
    spot = JobOptions(verification="spot", spot_ppm=300_000)
    body = _spot_body()
    assert verification_check(body, spot)[0] and 0 < len(body["verification"]["checked"]) < 40
    assert verification_check({"job_id": 1}, JobOptions())[0]  # TMR (and older receipts)
    cases = {
        "spares a segment": lambda v: v["checked"].pop(),
        "checks one more": lambda v: v["checked"].append(next(
            x for x in v["decided"] if x not in v["checked"])),
        "another seed": lambda v: v.update(seed=bytes(32).hex()),
        "another p": lambda v: v.update(ppm=100_000),
        "another job's segment": lambda v: v["decided"].append("job-9:0:0"),
    }
    for what, alter in cases.items():
        bad = _spot_body()
        alter(bad["verification"])
        ok, detail = verification_check(bad, spot)
        assert not ok, what
    ok, detail = verification_check(_spot_body(), JobOptions())
    assert not ok and "asked for tmr" in detail
    ok, detail = verification_check({"job_id": 1, "verification": {"mode": "tmr"}}, spot)
    assert not ok and "asked for spot" in detail
