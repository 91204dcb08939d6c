"""HTTP-pull workers against the coordinator server on 127.0.0.1: honest replicas agree, blobs
are verified against their CIDs, the fault modes (copy, silent, a perturbation) show up in the
results, a refused worker stops, and a worker killed mid-task (SIGKILL) loses only that lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load, save

from databright.market.worker import CoordinatorRefused, WorkerStats, run_worker
from databright.web.coordinator_server import Limits
from tests.market.predict_world import RunningServer
from tests.web.coordinator_world import (
    ADDR,
    BLOBS,
    ITEM0,
    ITEM1,
    KEYS,
    WEIGHTS,
    World,
    build_world,
    fake_compute,
    task_spec,
)

ROOT = Path(__file__).resolve().parents[2]
CIDS = [WEIGHTS, ITEM0, ITEM1]


class Workers:
    """Worker threads over one running server; stopped (and their errors raised) on exit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.stats: dict[str, WorkerStats] = {}
        self.errors: dict[str, BaseException] = {}

    def start(self, name: str, **kw) -> None:
        def run() -> None:
            try:
                self.stats[name] = run_worker(self.url, KEYS[name], kw.pop("compute", fake_compute),
                                              threads=1, determinism_class="cls",
                                              stop=self.stop, backoff=0.02, **kw)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors[name] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads)


@pytest.fixture
def served():
    world = build_world(limits=Limits(retry_after_seconds=0.05), real_clock=True)
    with RunningServer(world.app) as server:
        workers = Workers(server.url)
        try:
            yield world, workers
        finally:
            workers.close()


def wait_done(world: World, task_ids, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(world.board.results(t) is not None for t in task_ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"not done: {world.board.status()}")


def honest(spec: bytes) -> bytes:
    return fake_compute(spec, BLOBS.__getitem__)


def test_honest_workers_agree_on_every_task(served):
    world, workers = served
    names = ["alice", "bob", "carol", "dave"]
    specs = {}
    for i in range(6):
        tid = f"t{i}"
        specs[tid] = task_spec(tid, CIDS)
        replicas = tuple(ADDR[names[(i + k) % 4]] for k in range(3))
        world.board.post(tid, specs[tid], frozenset(CIDS), replicas, lease_seconds=30)
    for name in names:
        workers.start(name)
    wait_done(world, specs)
    for tid, spec in specs.items():
        results = world.board.results(tid)
        assert len(results) == 3 and set(results.values()) == {honest(spec)}
    workers.close()
    assert not workers.errors
    assert sum(s.reveals for s in workers.stats.values()) == 18
    assert set(world.fetched) == set(CIDS)


def test_a_blob_that_does_not_match_its_cid_is_never_computed_on(served):
    world, workers = served
    world.corrupt.add(ITEM1)
    world.board.post("t", task_spec("t", CIDS), frozenset(CIDS), (ADDR["alice"],), 30)
    workers.start("alice")
    deadline = time.monotonic() + 30
    while ITEM1 not in world.fetched and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    workers.close()
    assert workers.stats["alice"].errors == 1 and workers.stats["alice"].commits == 0
    assert world.board.status()[0].replicas == {ADDR["alice"]: "leased"}


def test_a_copying_worker_reveals_its_previous_result(served):
    world, workers = served
    specs = {t: task_spec(t, CIDS) for t in ("t1", "t2")}
    for tid, spec in specs.items():
        world.board.post(tid, spec, frozenset(CIDS),
                         (ADDR["alice"], ADDR["bob"], ADDR["carol"]), 30)
    workers.start("alice", fault="copy")
    workers.start("bob")
    workers.start("carol")
    wait_done(world, specs)
    t1, t2 = world.board.results("t1"), world.board.results("t2")
    assert t1[ADDR["alice"]] == honest(specs["t1"])
    assert t2[ADDR["alice"]] == t1[ADDR["alice"]] != honest(specs["t2"])
    assert t2[ADDR["bob"]] == t2[ADDR["carol"]] == honest(specs["t2"])


def test_a_perturbing_worker_reveals_a_different_result(served):
    world, workers = served

    def one_ulp(spec: bytes, payload: bytes) -> bytes:
        tensors = load(payload)
        w = tensors["grad.w"].copy()
        w.view(np.uint32)[0] += 1
        return save({"grad.w": w})

    spec = task_spec("t", CIDS)
    world.board.post("t", spec, frozenset(CIDS), (ADDR["alice"], ADDR["bob"]), 30)
    workers.start("alice", fault=one_ulp)
    workers.start("bob")
    wait_done(world, ["t"])
    results = world.board.results("t")
    assert results[ADDR["bob"]] == honest(spec) != results[ADDR["alice"]]


def test_a_silent_worker_loses_the_task_to_a_spare(served):
    world, workers = served
    world.spares.append(ADDR["dave"])
    spec = task_spec("t", CIDS)
    world.board.post("t", spec, frozenset(CIDS), (ADDR["alice"], ADDR["bob"], ADDR["carol"]),
                     lease_seconds=1.0)
    workers.start("alice", fault="silent")
    for name in ("bob", "carol", "dave"):
        workers.start(name)
    wait_done(world, ["t"])
    [status] = world.board.status()
    assert status.failed == (ADDR["alice"],)
    assert set(world.board.results("t")) == {ADDR["bob"], ADDR["carol"], ADDR["dave"]}
    workers.close()
    assert workers.stats["alice"].leases == 1 and workers.stats["alice"].commits == 0


def test_a_task_pinning_other_threads_is_left_to_lapse(served):
    world, workers = served
    world.board.post("t", task_spec("t", CIDS, threads=4), frozenset(CIDS), (ADDR["alice"],), 30)
    workers.start("alice")
    deadline = time.monotonic() + 30
    while world.board.status()[0].replicas.get(ADDR["alice"]) != "leased":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    workers.close()
    assert workers.stats["alice"].skipped == 1 and workers.stats["alice"].commits == 0
    assert world.fetched == []


def test_a_refused_worker_stops_with_the_reason(served):
    world, workers = served
    world.banned.add(ADDR["mallory"])
    workers.start("mallory")
    workers.threads[0].join(timeout=30)
    err = workers.errors["mallory"]
    assert isinstance(err, CoordinatorRefused) and err.code == "forbidden" and err.status == 403
    assert "banned" in str(err)


def test_a_worker_killed_mid_task_loses_only_that_lease(served):
    world, workers = served
    world.spares.append(ADDR["dave"])
    blocked = task_spec("t1", CIDS, block=True)
    normal = task_spec("t2", CIDS)
    trio = (ADDR["alice"], ADDR["bob"], ADDR["carol"])
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.web.worker_proc", workers.url,
                             KEYS["alice"]], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while ADDR["alice"] not in world.callers:  # the process is up and polling
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        # the other replicas (and the spare) in threads; their compute never blocks
        for name in ("bob", "carol", "dave"):
            workers.start(name)
        world.board.post("t1", blocked, frozenset(CIDS), trio, lease_seconds=3.0)
        world.board.post("t2", normal, frozenset(CIDS), trio, lease_seconds=60.0)
        while not world.fetched:  # alice is inside t1's computation
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert world.board.status(["t1"])[0].replicas[ADDR["alice"]] == "leased"
    unblocked = fake_compute(blocked, BLOBS.__getitem__)
    workers.start("alice")  # restarted: same account, a fresh process state
    wait_done(world, ["t1", "t2"])
    t1, t2 = world.board.results("t1"), world.board.results("t2")
    assert set(t1) == {ADDR["bob"], ADDR["carol"], ADDR["dave"]}
    assert set(t1.values()) == {unblocked}
    assert world.board.status(["t1"])[0].failed == (ADDR["alice"],)
    assert set(t2) == set(trio) and set(t2.values()) == {honest(normal)}
