"""A training job on HTTP-pull workers in other processes (127.0.0.1) gives the same checkpoint
bits and the same receipt fields as the embedded executor's identities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from databright.home import Home
from databright.market.context import Deployment
from tests.cli.conftest import PASSWORD, Cli
from tests.market.predict_world import RunningServer

WORKERS = 75
SAME = ("program_digest", "checkpoint_program_digest", "dataset_root", "snapshot", "model_out",
        "metric_bps", "tasks", "liars", "cap_bps", "items", "kind", "dataset_id")


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    root = tmp_path_factory.mktemp("http")
    cli = Cli(root / "home")
    cli("init")
    cli("account", "new", "bob", "--fast-kdf")
    seed = digit_folder(root / "seed", 0, 120)
    cli("dataset", "create", "digits", "--from", str(seed), "--period", "1h", as_="bob")
    return cli


def _workers(url: str, keys: list[str], tmp: Path, procs: int = 2) -> list[subprocess.Popen]:
    out = []
    for n in range(procs):
        keyfile = tmp / f"keys-{n}.txt"
        keyfile.write_text("\n".join(keys[n::procs]))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        p = subprocess.Popen([sys.executable, "-m", "tests.market.http_workers", url,
                              str(keyfile)], stdout=subprocess.PIPE, env=env, text=True)
        out.append(p)
    for p in out:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return out


def test_http_workers_give_the_embedded_executors_bits(world, tmp_path):
    from databright.compute.grad import determinism_class_digest
    from databright.compute.scheduler import WorkerInfo
    from databright.market.compute.coordinator import open_coordinator
    from databright.market.compute.pool import ensure_local_pool
    from databright.market.compute.train_job import submit_train_job
    from databright.web.coordinator_service import CoordinatorService

    home = Home(world.home)
    with Deployment(home) as dep:
        bob = dep.keystore.unlock("bob", PASSWORD)
        coordinator = open_coordinator(dep, bob)
        identities = ensure_local_pool(dep, bob, coordinator.address, WORKERS,
                                       determinism_class_digest(1))
        pool = [WorkerInfo(s.address.lower(), determinism_class_digest(1),
                           dep.compute.get_worker(s.address).min_fee) for s in identities]
        job_id, _ = submit_train_job(dep, bob, "digits", "small-cnn", coordinator.address, pool,
                                     config={"epochs": 1, "seed": 0})
    service = CoordinatorService(home, bob)
    assert len(service.pool) == WORKERS
    keys = ["0x" + bytes(s.key).hex() for s in identities]
    with RunningServer(service.app()) as server:
        procs = _workers(server.url, keys, tmp_path)
        try:
            done = service.run_once()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                assert p.wait(timeout=60) == 0
    assert done is not None and done.job_id == job_id
    remote = done.receipt.body
    assert remote["liars"] == [] and remote["recomputed"] == 0
    assert world("receipt", "verify", str(done.path))["ok"]
    local = world("train", "digits", "--family", "small-cnn", "--epochs", "1", "--compute",
                  "local", "--workers", str(WORKERS), as_="bob")
    assert local["sha256"] == done.sha256
    body = json.loads(Path(local["receipt"]).read_text())["body"]
    assert {k: body[k] for k in SAME} == {k: remote[k] for k in SAME}
    # every worker served over HTTP answered and was paid
    assert sum(w["tasks"] for w in remote["workers"]) == 3 * remote["tasks"]


def test_a_spot_checked_job_on_http_workers_publishes_its_commitment_and_verifies(world,
                                                                                   tmp_path):
    from databright.compute.grad import determinism_class_digest
    from databright.compute.reference import fit_decomposed
    from databright.compute.scheduler import WorkerInfo
    from databright.compute.spot_choice import commitment
    from databright.market.compute.coordinator import open_coordinator
    from databright.market.compute.options import JobOptions
    from databright.market.compute.pool import ensure_local_pool
    from databright.market.compute.train_job import distinct, submit_train_job
    from databright.market.model_data import training_records, validation_records
    from databright.training import save_checkpoint
    from databright.web.coordinator_service import CoordinatorService

    home = Home(world.home)
    with Deployment(home) as dep:
        bob = dep.keystore.unlock("bob", PASSWORD)
        coordinator = open_coordinator(dep, bob)
        identities = ensure_local_pool(dep, bob, coordinator.address, WORKERS,
                                       determinism_class_digest(1))
        pool = [WorkerInfo(s.address.lower(), determinism_class_digest(1),
                           dep.compute.get_worker(s.address).min_fee) for s in identities]
        job_id, _ = submit_train_job(dep, bob, "digits", "small-cnn", coordinator.address, pool,
                                     config={"epochs": 1, "seed": 0},
                                     options=JobOptions(verification="spot", spot_ppm=500_000))
    service = CoordinatorService(home, bob)
    keys = ["0x" + bytes(s.key).hex() for s in identities]
    with RunningServer(service.app()) as server:
        procs = _workers(server.url, keys, tmp_path)
        try:
            done = service.run_once()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                assert p.wait(timeout=60) == 0
    assert done is not None and done.job_id == job_id
    body = done.receipt.body
    v = body["verification"]
    assert v["mode"] == "spot" and v["ppm"] == 500_000 and body["liars"] == []
    # the commitment the workers were shown is the one the receipt's seed opens
    assert service.board.published["seed_commitment"] == v["seed_commitment"] == commitment(
        bytes.fromhex(v["seed"]))
    assert sum(w["tasks"] for w in body["workers"]) == body["tasks"] == v["answers"]
    assert world("receipt", "verify", str(done.path))["ok"]
    with Deployment(home) as dep:
        spec = json.loads(dep.store.get(body["spec_cid"]))
        the_plan = json.loads(dep.store.get(body["plan_cid"]))
        train = distinct(training_records(dep, 1))
        shard_of = {train[i].cid: s["index"] for s in the_plan["shards"] for i in s["items"]}
        ref = fit_decomposed("small-cnn", spec["config"], train, validation_records(dep, 1),
                             shard_of, store=dep.store, snapshot=spec["snapshot"],
                             job=f"job-{job_id}")
        assert save_checkpoint(dep.store, ref.checkpoint).sha256 == done.sha256
