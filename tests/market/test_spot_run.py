"""Spot verification of a data-parallel job on local worker identities (no chain): one worker per
shard, a secret fraction of segments re-checked, a liar found by bisection, banned, and its work
redone, so the job ends with the honest program's bits."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from databright.compute.board import TaskBoard
from databright.compute.exposure import ExposureLedger
from databright.compute.grad import determinism_class_digest
from databright.compute.reference import fit_decomposed
from databright.compute.scheduler import WorkerInfo, plan
from databright.compute.spot import max_probes
from databright.compute.spot_choice import commitment, is_checked
from databright.compute.trainer import Trainer
from databright.market.compute.executor import LocalExecutor, VirtualClock
from databright.market.compute.remote_worker import honest_compute
from databright.market.compute.run import LEASE_SECONDS
from databright.market.compute.spot_run import SpotRun
from databright.storage.cas import LocalBlobStore
from databright.training import save_checkpoint
from tests.training.conftest import digit_rows

#: 60 rows at 5 %: 3 items an account, 20 shards; batches of 16: 4 steps an epoch, 8 in all
MLP = {"epochs": 2, "batch_size": 16, "hidden": 8}
JOB = "job-1"
ALL = 1_000_000  # every segment checked


@pytest.fixture(scope="module")
def data():
    return digit_rows(0, 60), digit_rows(1200, 20)


@pytest.fixture(scope="module")
def world(tmp_path_factory, data):
    store = LocalBlobStore(tmp_path_factory.mktemp("spot") / "store")
    train, _ = data
    for r in train:  # workers fetch items by CID, as from the coordinator's store
        assert store.put_bytes(r.load()) == r.cid
    return store


class _Pair:
    """Two local executors on one board (one of them answers garbage)."""

    def __init__(self, *executors: LocalExecutor) -> None:
        self.executors = executors

    def pump(self, board: TaskBoard) -> int:
        return sum(e.pump(board) for e in self.executors)

    def idle(self) -> None:
        self.executors[0].idle()


def _job(store, data, *, ppm: int = ALL, window: int = 4, checker: str = "coordinator",
         workers: int = 24, faults: dict[int, str] | None = None, seed: bytes = b"\1" * 32,
         garbage: int | None = None, liars: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the job; ``faults`` names shards whose worker lies, ``garbage`` a shard whose
    worker answers bytes that are no result."""
    train, val = data
    klass = determinism_class_digest(1)
    pool = [WorkerInfo(f"0x{i + 1:040x}", klass) for i in range(workers)]
    ledger = ExposureLedger(":memory:")
    the_plan = plan("ds", len(train), pool, ledger, cap_bps=500, replicas=1, seed="spot")
    clock = VirtualClock(LEASE_SECONDS + 1)
    holder: dict[str, SpotRun] = {}
    board = TaskBoard(clock, spare=lambda task, account: holder["run"].spare(task, account))
    worker_of = {s.index: s.replicas[0] for s in the_plan.shards}
    bad = {worker_of[k]: m for k, m in (faults or {}).items()} | (liars or {})
    honest = [w.account for w in pool if garbage is None or w.account != worker_of[garbage]]
    executor: Any = LocalExecutor(honest, honest_compute, store.get, faults=bad, clock=clock)
    if garbage is not None:
        executor = _Pair(executor, LocalExecutor([worker_of[garbage]],
                                                 lambda spec, fetch: b"\0" * 64, store.get))
    run = SpotRun(SimpleNamespace(store=store), None, the_plan, ledger, "ds", len(train), 500,
                  train, board, job=JOB, ppm=ppm, checker=checker, window=window, seed=seed)
    holder["run"] = run
    assert board.published["seed_commitment"] == commitment(seed)  # before any task
    shard_of = {train[i].cid: s.index for s in the_plan.shards for i in s.items}
    trainer = run.train(lambda: Trainer("mlp", MLP, train, val, shard_of, job=JOB), executor)
    sha = save_checkpoint(store, trainer.finish().checkpoint).sha256
    ref = fit_decomposed("mlp", MLP, train, val, shard_of, store=store, job=JOB)
    return {"run": run, "sha": sha, "reference": save_checkpoint(store, ref.checkpoint).sha256,
            "worker_of": worker_of, "ledger": ledger, "plan": the_plan, "n_tasks": _tasks(run)}


def _tasks(run: SpotRun) -> int:
    """Distinct tasks of the program: first-generation verdicts of worker answers."""
    return len({v.task for v in run.chain if not v.recomputed})


def test_an_honest_job_checks_the_chosen_segments_only_and_keeps_the_bits(world, data):
    out = _job(world, data, ppm=250_000)
    run = out["run"]
    assert out["sha"] == out["reference"]
    assert run.banned == set() and run.generation == 0 and run.probes == 0
    assert run.checked == [x for x in run.decided if is_checked(b"\1" * 32, x, 250_000)]
    assert 0 < len(run.checked) < len(run.decided)  # this seed checks some segments, not all
    # one answer per task; the coordinator re-ran exactly the checked segments' tasks
    assert run.answers == run.tasks == out["n_tasks"]
    checked_tasks = sum(1 for v in run.chain
                        if f"{JOB}:{_shard(v.task)}:{_step(v.task) // 4}" in run.checked)
    assert run.coordinator_runs == checked_tasks
    assert run.checker_answers == 0


def _step(task: str) -> int:
    return int(task.split(".")[0].removeprefix("step-"))


def _shard(task: str) -> int:
    return int(task.split("shard-")[1])


@pytest.mark.parametrize("mode", ["signflip", "1ulp"])
def test_a_liar_on_a_checked_segment_is_located_banned_and_its_work_redone(world, data, mode):
    out = _job(world, data, faults={3: mode})
    run, liar = out["run"], out["worker_of"][3]
    assert run.banned == {liar} and run.generation == 1
    (caught,) = run.caught
    assert caught["account"] == liar and caught["segment"] == f"{JOB}:3:0"
    first = min(_step(v.task) for v in run.chain if v.task.endswith(".shard-3"))
    assert caught["step"] == first  # it lied from its first answer: located there
    entries = sum(1 for v in run.chain if v.task.endswith(".shard-3") and not v.recomputed
                  and _step(v.task) < 4 and liar in v.digests)
    assert caught["probes"] == run.probes == max_probes(entries)
    assert out["sha"] == out["reference"]  # every wrong gradient was redone
    replacement = run.replicas[3][0]
    assert replacement != liar and run.correct.get(replacement, 0) > 0


def test_a_lie_on_an_unchecked_segment_is_redone_when_a_later_one_is_caught(world, data):
    """The liar's window 0 is not checked, its window 1 is: the lie is found in window 1 and
    the replay recomputes its unchecked window-0 answers too."""
    seed = next(s for s in (bytes([i]) * 32 for i in range(256))
                if not is_checked(s, f"{JOB}:3:0", 500_000)
                and is_checked(s, f"{JOB}:3:1", 500_000))
    out = _job(world, data, ppm=500_000, faults={3: "scale"}, seed=seed)
    run, liar = out["run"], out["worker_of"][3]
    assert run.banned == {liar} and [c["segment"] for c in run.caught] == [f"{JOB}:3:1"]
    assert run.caught[0]["step"] >= 4
    assert out["sha"] == out["reference"]


def test_a_second_worker_checks_under_the_cap_and_one_recomputation_decides(world, data):
    out = _job(world, data, checker="worker", workers=45, faults={5: "noise"})
    run, liar = out["run"], out["worker_of"][5]
    assert run.banned == {liar} and out["sha"] == out["reference"]
    assert run.checker_answers > 0
    # the coordinator recomputed ONE task to decide who lied; the second worker re-ran the rest
    assert run.coordinator_runs == 1 and run.caught[0]["probes"] >= 1
    exposures = out["ledger"].exposures("ds")
    assert max(exposures.values()) <= 3  # checkers too stay within 5 % of 60 items
    checkers = {a for a in exposures if a not in out["worker_of"].values()}
    assert len(checkers) > 1  # each was recorded in the ledger before it was sent a task


def test_a_lying_checker_is_banned_and_the_honest_worker_is_not(world, data):
    workers = 45
    out0 = _job(world, data, ppm=200_000, workers=workers)
    busy = set(out0["worker_of"].values())
    spares = {f"0x{i + 1:040x}": "signflip" for i in range(workers)}
    liars = {a: m for a, m in spares.items() if a not in busy}
    out = _job(world, data, ppm=200_000, checker="worker", workers=workers, liars=liars)
    run = out["run"]
    assert run.banned and run.banned <= set(liars) and run.generation == 0
    assert not run.banned & busy and out["sha"] == out["reference"]


def test_a_malformed_answer_is_a_lie_without_a_check(world, data):
    out = _job(world, data, ppm=1, garbage=7)  # p = 1e-6: no segment is checked
    run, liar = out["run"], out["worker_of"][7]
    assert run.checked == [] and run.banned == {liar}
    assert [c["how"] for c in run.caught] == ["malformed"] and run.generation == 1
    assert out["sha"] == out["reference"]


def test_a_silent_worker_is_replaced_and_neither_named_nor_rolled_back(world, data):
    out = _job(world, data, ppm=1, faults={2: "silent"})
    run, silent = out["run"], out["worker_of"][2]
    assert run.banned == set() and run.generation == 0 and run.reissued.get(silent, 0) >= 1
    assert run.correct.get(silent, 0) == 0 and out["sha"] == out["reference"]
