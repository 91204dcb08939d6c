"""Spot verification against triple modular redundancy: compute per task, and detection.

    python benchmarks/spot.py            # 400 digit rows, mlp, 2 epochs (≈ 1 min)
    python benchmarks/spot.py --quick    # 120 rows, 1000 selection trials (CI smoke size)
    python benchmarks/spot.py --json     # one JSON document on stdout

The job: the ``mlp`` family on sklearn digits as JSON rows (``--rows`` training items, 200
validation), batches of 32 (16 with ``--quick``), 2 epochs, the 5 % exposure cap, on local
worker identities pulling from a real lease board (:class:`LocalExecutor`: lease, fetch, compute,
commit, reveal) with the coordinator's real bookkeeping (``market.compute.run._Run`` for TMR,
``market.compute.spot_run.SpotRun`` for spot); no chain (settlement does not change the counts).

1. **Cost.** The same job under TMR and under spot at p = 0.1 and 0.25 (checked by the
   coordinator, and at 0.25 also by a second worker). Per task of the program: *computations* =
   worker answers + checker re-runs + coordinator recomputations; the anchor is one answer per
   task (``per_task`` is the ratio to it). Expected ≈ 3.0+ for TMR (three replicas and a 2 % audit), ≈ 1 + p for spot.
   Wall seconds of each whole job, and its checkpoint against the one-process program's bits.
2. **Detection, analytic and measured.** For p ∈ {0.05, 0.1, 0.25, 0.5} and a liar lying on
   t ∈ {1, 2, 5, 10} segments: 1 − (1 − p)^t next to the frequency over ``--trials`` fresh
   seeds (``draw_seed``) of the real selection function (``is_checked``) catching at least one.
3. **Real jobs with the fault modes** (``FAULT_MODES`` but ``silent``, which is no lie): one
   spot job per mode at p = 0.5 (``--fault-p``), fresh seed, the worker of shard 0 lying on every answer
   (``stale`` and ``copy`` answer their first task honestly: they have nothing to replay yet).
   Per job: the windows it lied on, the first of them the seed checked, the window it was
   caught on and how, and whether the checkpoint is the honest program's. Every checked lie
   must be caught at the first checked window (``checked_lies_caught``); ``copy`` answers with
   another task's result, which the payload check refuses at once (no check needed). A liar
   none of whose segments was checked goes unseen and its job's bits differ: that is the price
   of spot (docs/compute-verification.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

VAL_ROWS = 200
PS = (0.05, 0.1, 0.25, 0.5)
TS = (1, 2, 5, 10)
JOB = "job-1"


def _rows(start: int, count: int) -> list[Any]:
    from sklearn.datasets import load_digits

    from databright.storage.cid import cid_of_bytes
    from databright.training import Record

    d = load_digits()
    out = []
    for i in range(start, start + count):
        row = {f"p{j:02d}": float(v) for j, v in enumerate(d.data[i])}
        row["label"] = str(d.target[i])
        data = json.dumps(row, sort_keys=True, separators=(",", ":")).encode()
        out.append(Record(cid_of_bytes(data), str(d.target[i]), "application/json",
                          lambda data=data: data))
    return out


class _Counting:
    """An honest worker's computation, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, spec: bytes, fetch: Any) -> bytes:
        from databright.market.compute.remote_worker import honest_compute

        self.calls += 1
        return honest_compute(spec, fetch)


def run_job(store: Any, train: list[Any], val: list[Any], config: dict[str, Any], *,
            mode: str, ppm: int = 0, checker: str = "coordinator",
            faults: dict[int, str] | None = None) -> dict[str, Any]:
    """One job on local identities; its counts, wall time and whether it has the honest bits."""
    from databright.compute.board import TaskBoard
    from databright.compute.exposure import ExposureLedger
    from databright.compute.grad import determinism_class_digest
    from databright.compute.reference import fit_decomposed
    from databright.compute.scheduler import WorkerInfo, plan
    from databright.compute.trainer import Trainer
    from databright.market.compute.executor import LocalExecutor, VirtualClock
    from databright.market.compute.run import LEASE_SECONDS, _Run
    from databright.market.compute.spot_run import SpotRun
    from databright.market.compute.train_job import workers_needed
    from databright.training import save_checkpoint

    replicas = 1 if mode == "spot" else 3
    workers = workers_needed(len(train), 500, replicas) + (replicas * len(train) // 20 + 6
                                                          if checker == "worker" else 3)
    klass = determinism_class_digest(1)
    pool = [WorkerInfo(f"0x{i + 1:040x}", klass) for i in range(workers)]
    ledger = ExposureLedger(":memory:")
    the_plan = plan("ds", len(train), pool, ledger, cap_bps=500, replicas=replicas, seed="b")
    clock = VirtualClock(LEASE_SECONDS + 1)
    holder: dict[str, Any] = {}
    board = TaskBoard(clock, spare=lambda task, account: holder["run"].spare(task, account))
    worker_of = {s.index: s.replicas[0] for s in the_plan.shards}
    counting = _Counting()
    executor = LocalExecutor([w.account for w in pool], counting, store.get, clock=clock,
                             faults={worker_of[k]: m for k, m in (faults or {}).items()})
    args = (SimpleNamespace(store=store), None, the_plan, ledger, "ds", len(train), 500, train,
            board)
    run: Any = (SpotRun(*args, job=JOB, ppm=ppm, checker=checker) if mode == "spot"
                else _Run(*args))
    holder["run"] = run
    shard_of = {train[i].cid: s.index for s in the_plan.shards for i in s.items}

    def make() -> Trainer:
        return Trainer("mlp", config, train, val, shard_of, job=JOB)

    t0 = time.perf_counter()
    if mode == "spot":
        trainer = run.train(make, executor)
    else:
        trainer = make()
        for step in trainer.steps():
            trainer.apply(step, run.step(step.tasks(store.put_bytes(step.weights)), executor))
    sha = save_checkpoint(store, trainer.finish().checkpoint).sha256
    seconds = time.perf_counter() - t0
    ref = fit_decomposed("mlp", config, train, val, shard_of, store=store, job=JOB)
    out: dict[str, Any] = {
        "mode": mode, "p": ppm / 1e6 if mode == "spot" else None, "workers": workers,
        "shards": len(the_plan.shards), "steps": trainer.total_steps, "seconds": seconds,
        "worker_computations": counting.calls,
        "honest_bits": sha == save_checkpoint(store, ref.checkpoint).sha256,
        "liars": sorted(run.banned), "worker_of": worker_of}
    if mode == "spot":
        out.update(checker=checker, tasks=run.answers if not run.generation else None,
                   coordinator_computations=run.coordinator_runs,
                   checker_computations=run.checker_answers, checked=len(run.checked),
                   decided=len(run.decided), rollbacks=run.generation, probes=run.probes,
                   caught=run.caught, run=run)
    else:
        out.update(tasks=run.tasks, coordinator_computations=sum(v.recomputed for v in run.chain),
                   checker_computations=0)
    # checkers are workers too: the executor counted their re-runs with the answers
    out["worker_computations"] -= out["checker_computations"]
    out["computations"] = (out["worker_computations"] + out["checker_computations"]
                           + out["coordinator_computations"])
    return out


def detection(trials: int) -> list[dict[str, Any]]:
    """Analytic vs measured probability that a liar on t segments is checked at least once."""
    from databright.compute.spot_choice import detection_probability, draw_seed, is_checked

    rows = []
    for p in PS:
        ppm = round(p * 1_000_000)
        for t in TS:
            hits = 0
            for r in range(trials):
                seed = draw_seed()
                hits += any(is_checked(seed, f"job-{r}:0:{w}", ppm) for w in range(t))
            rows.append({"p": p, "t": t, "analytic": round(detection_probability(p, t), 4),
                         "measured": round(hits / trials, 4), "trials": trials})
    return rows


def fault_jobs(store: Any, train: list[Any], val: list[Any], config: dict[str, Any],
               p: float) -> list[dict[str, Any]]:
    """One spot job per fault mode; where the liar was checked and where it was caught."""
    from databright.compute.spot_choice import is_checked
    from databright.market.compute.executor import FAULT_MODES

    out = []
    for mode in [m for m in FAULT_MODES if m != "silent"]:
        job = run_job(store, train, val, config, mode="spot", ppm=round(p * 1e6),
                      faults={0: mode})
        run = job["run"]
        lied = range(-(-job["steps"] // run.window))  # it lies on every window until banned
        checked = [w for w in lied if is_checked(run.seed, f"{JOB}:0:{w}", run.ppm)]
        caught = [c for c in run.caught if c["account"] == job["worker_of"][0]]
        out.append({"mode": mode, "windows_lied": len(lied),
                    "how": caught[0]["how"] if caught else None,
                    "first_checked_window": checked[0] if checked else None,
                    "caught_window": caught[0]["step"] // run.window if caught else None,
                    "caught": bool(caught),
                    "probes": caught[0]["probes"] if caught else 0,
                    "rollbacks": run.generation, "honest_bits": job["honest_bits"],
                    "false_accusations": len(set(job["liars"]) - {job["worker_of"][0]})})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--quick", action="store_true", help="CI size: 120 rows, 1000 trials")
    ap.add_argument("--rows", type=int, default=None, help="training rows [400; quick 120]")
    ap.add_argument("--trials", type=int, default=None, help="seeds per (p, t) [10000; 1000]")
    ap.add_argument("--fault-p", type=float, default=0.5, help="p of the fault-mode jobs [0.5]")
    args = ap.parse_args()
    from databright.storage.cas import LocalBlobStore

    rows = args.rows or (120 if args.quick else 400)
    trials = args.trials or (1000 if args.quick else 10000)
    config = {"epochs": 2, "batch_size": 16 if args.quick else 32, "hidden": 16}
    train, val = _rows(0, rows), _rows(1500, min(VAL_ROWS, 1797 - 1500))
    with tempfile.TemporaryDirectory(prefix="spot-bench-") as tmp:
        store = LocalBlobStore(Path(tmp) / "store")
        for r in train:
            store.put_bytes(r.load())
        jobs = [run_job(store, train, val, config, mode="tmr")]
        for p, checker in ((0.1, "coordinator"), (0.25, "coordinator"), (0.25, "worker")):
            jobs.append(run_job(store, train, val, config, mode="spot", ppm=round(p * 1e6),
                                checker=checker))
        faults = fault_jobs(store, train, val, config, args.fault_p)
    cost = []
    for j in jobs:
        per_task = j["computations"] / j["tasks"]
        cost.append({k: j[k] for k in ("mode", "p", "workers", "shards", "steps", "tasks",
                                       "worker_computations", "coordinator_computations",
                                       "checker_computations", "honest_bits")}
                    | {"checker": j.get("checker"), "checked": j.get("checked"),
                       "decided": j.get("decided"), "computations": j["computations"],
                       "per_task": round(per_task, 4), "seconds": round(j["seconds"], 3)})
    tmr = cost[0]
    for c in cost:
        c["vs_tmr"] = round(c["per_task"] / tmr["per_task"], 4)
        c["seconds_vs_tmr"] = round(c["seconds"] / tmr["seconds"], 4)
    det = detection(trials)
    with_check = [f for f in faults if f["first_checked_window"] is not None]
    summary = {
        "tmr_per_task": tmr["per_task"],
        "spot_per_task": {f"{c['p']}/{c['checker']}": c["per_task"] for c in cost[1:]},
        "all_honest_bits": all(c["honest_bits"] for c in cost),
        "max_detection_error": max(abs(d["analytic"] - d["measured"]) for d in det),
        # a checked lie is caught at the first checked window; a malformed one (``copy``
        # answers another task's result) at once, checked or not
        "checked_lies_caught": all(
            f["caught"] and f["caught_window"] == (0 if f["how"] == "malformed" else
                                                   f["first_checked_window"])
            for f in with_check),
        "fault_jobs": len(faults), "fault_jobs_checked": len(with_check),
        "caught_jobs_honest_bits": all(f["honest_bits"] for f in faults if f["caught"]),
        "false_accusations": sum(f["false_accusations"] for f in faults),
    }
    result = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              "rows": rows, "config": config, "cost": cost, "detection": det,
              "fault_jobs": faults, "summary": summary}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'mode':<6}{'p':>6}{'checker':>13}{'tasks':>7}{'computations':>14}{'per task':>10}"
          f"{'vs tmr':>8}{'seconds':>9}{'honest bits':>13}")
    for c in cost:
        print(f"{c['mode']:<6}{c['p'] or '':>6}{c['checker'] or '':>13}{c['tasks']:>7}"
              f"{c['computations']:>14}{c['per_task']:>10.3f}{c['vs_tmr']:>8.3f}"
              f"{c['seconds']:>9.2f}{c['honest_bits']!s:>13}")
    print(f"\ndetection probability (analytic / measured over {trials} fresh seeds)")
    print("p \\ t " + "".join(f"{t:>16}" for t in TS))
    for p in PS:
        cells = [d for d in det if d["p"] == p]
        print(f"{p:<6}" + "".join(f"{d['analytic']:>8.3f}/{d['measured']:<7.3f}" for d in cells))
    print(f"\nfault-mode jobs at p = {args.fault_p}")
    for f in faults:
        print(f"  {f['mode']:<9} lied on {f['windows_lied']} windows, first checked "
              f"{f['first_checked_window']}, caught {f['caught_window']} ({f['how']}, "
              f"{f['probes']} probes), honest bits {f['honest_bits']}")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
