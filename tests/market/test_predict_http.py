"""A prediction job on the remote path: `job submit predict MODEL FILES --coordinator ADDR`
escrows it, the coordinator service runs it on HTTP-pull workers in another process
(127.0.0.1), settles in one transaction, and `job predictions ID` shows the model server's
labels; the CLI refuses bad input with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from databright.market.compute.predict_execute import read_predictions
from tests.cli.conftest import Cli
from tests.market.predict_world import PASSWORD, RunningServer, build_world
from tests.market.test_predict_job import _served_labels

WORKERS = 4
ROOT = Path(__file__).resolve().parents[2]


def _workers(url: str, keys: list[str], tmp: Path, procs: int = 2) -> list[subprocess.Popen]:
    """HTTP workers in other processes, running this checkout's code (src first)."""
    out = []
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    for n in range(procs):
        keyfile = tmp / f"keys-{n}.txt"
        keyfile.write_text("\n".join(keys[n::procs]))
        out.append(subprocess.Popen([sys.executable, "-m", "tests.market.http_workers", url,
                                     str(keyfile)], stdout=subprocess.PIPE, env=env, text=True))
    for p in out:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    return build_world(tmp_path_factory.mktemp("predict-http"), digit_folder)


def test_http_workers_run_a_prediction_job_submitted_from_the_cli(world, tmp_path):
    from databright.compute.grad import determinism_class_digest
    from databright.market.compute.coordinator import open_coordinator
    from databright.market.compute.pool import ensure_local_pool
    from databright.web.coordinator_service import CoordinatorService

    cli = Cli(world.home.path)
    operator = world.signer("alice")
    with world.dep() as dep:
        coordinator = open_coordinator(dep, operator)
        identities = ensure_local_pool(dep, operator, coordinator.address, WORKERS,
                                       determinism_class_digest(1))
        owner_before = dep.compute.owed_of(world.accounts["dev"].address)
    files = [str(f) for f in world.files[:6]]
    out = cli("job", "submit", "predict", str(world.model_id), *files, "--coordinator",
              coordinator.address, "--batch-size", "2", as_="consumer", password=PASSWORD)
    assert (out["kind"], out["count"], out["model_id"]) == ("predict", 6, world.model_id)
    job_id = out["job_id"]
    service = CoordinatorService(world.home, operator)
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
    assert (body["kind"], body["delivered"], body["tasks"], body["liars"]) == (
        "predict", 6, 3, [])
    # the HTTP workers' answers were taken (three agreeing replicas a batch), not the
    # coordinator's own recomputation after their leases ran out
    assert body["recomputed"] == 0 and not done.run.reissued
    assert sum(w["tasks"] for w in body["workers"]) == 3 * 3
    assert all(int(w["fee"]) > 0 for w in body["workers"])
    shown = cli("job", "predictions", str(job_id), password=PASSWORD)
    with world.dep() as dep:
        served = _served_labels(dep, world.model_id, world.files[:6])
        assert read_predictions(dep, job_id)["predictions"] == shown["predictions"]
        assert dep.compute.get_job(job_id).status == "final"
        owner_after = dep.compute.owed_of(world.accounts["dev"].address)
    assert [p["label"] for p in shown["predictions"]] == served
    assert owner_after - owner_before == int(body["payment"]["owner"]) > 0
    job = cli("job", "show", str(job_id), password=PASSWORD)
    assert job["status"] == "final"


def test_the_cli_refuses_bad_prediction_jobs_in_one_line(world, tmp_path):
    cli = Cli(world.home.path)
    one = str(world.files[0])
    cases = [
        (("job", "submit", "predict", "digits", one, "--local"), "by its id"),
        (("job", "submit", "predict", str(world.model_id), "--local"), "at least one file"),
        (("job", "submit", "predict", str(world.model_id), one), "either --local or"),
        (("job", "submit", "predict", "99", one, "--local"), "no model 99"),
        (("job", "submit", "guess", "digits"), "'train' and 'predict'"),
        (("job", "predictions", "12345"), "no receipt of job #12345"),
    ]
    for argv, reason in cases:
        as_ = None if argv[1] == "predictions" else "consumer"
        result = cli(*argv, as_=as_, password=PASSWORD, code=2, json_out=False)
        err = result.stderr.strip().splitlines()
        assert len(err) == 1 and reason in err[0], (argv, result.stderr)
