"""The fault matrix: every fault mode, injected into one worker of a triple, against TMR.

    python benchmarks/compute_faults.py            # 1 epoch of small-cnn on 95 digits (≈ 3 min)
    python benchmarks/compute_faults.py --json     # one JSON document on stdout

One fresh home on the embedded chain: a digits dataset (120 seed images: 95 training items, the
rest its validation split), a consumer, and ``train --compute local`` jobs
(:func:`databright.market.compute.train_job.run_train_job`, 1 epoch of ``small-cnn``, 75 local
worker identities: 24 shards of at most 5 % of the items, 3 replicas each, 3 spares).

Anchors, in the same run: an all-honest job first (its checkpoint is the one every lying job
must end with), the same program trained in one process (``compute.reference.fit_decomposed``
over each job's shard map: every job must be its bits), and a second all-honest job at the
end, after every ban (the pool then holds the spares that replaced the liars). The shard map is
part of the program; a plan made after a silent worker's job may cut other shards (the silent
worker and its spare both hold its items), so ``silent`` runs last and a job whose shard map
differs from the first job's is held to its own one-process reference.

Then one job per mode of ``FAULT_MODES``, each with one lying identity. The liar is an identity
the previous job gave the most tasks (the plan is sticky: it serves the same shard again), never
one already used. Per mode, from the job's verdict chain (stored with its receipt) and the chain:

* ``answered``: tasks where the liar returned a result; ``lied``: those whose digest is not the
  accepted one (``copy`` answers its first task honestly: it has nothing to copy yet);
* ``detected``: verdicts naming it a liar; detection = detected / lied (target 100 %);
* ``slashed``: the receipt names it and, on chain, its status is ``banned`` and its stake 0;
* ``checkpoint_equal``: the job's checkpoint sha256 is the all-honest job's (``reference_equal``:
  the one-process program's);
* ``false_accusations``: verdicts naming any other account (must be 0).

``silent`` is not a lie: a worker that takes a lease and never answers loses the lease, which is
re-issued to a spare (``reissued``); it is not named, not slashed and not paid for that task.

False alarms: liars named in the two all-honest jobs, and, over every job, tasks where two
results of accounts told to be honest differ (honest replicas of one class never disagree).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

PASSWORD = "bench"
FEE = 10**16  # the dataset's training fee
SEED_ITEMS = 120  # 95 training items after the validation split
WORKERS = 75  # 24 shards × 3 replicas + 3 spares at 5 % (4 items an account)
FAMILY = "small-cnn"
CONFIG = {"epochs": 1}


def _folder(root: Path, count: int) -> Path:
    import numpy as np
    from sklearn.datasets import load_digits

    from databright.cli.demo_data import write_folder

    d = load_digits()
    return write_folder(root, d.data[:count], np.asarray(d.target[:count]),
                        [f"d{i:04d}" for i in range(count)])


def build(home_dir: Path) -> None:
    """The home: accounts alice (initiator, evaluator) and bob (the consumer), dataset digits."""
    from databright.home import Home
    from databright.market import Deployment, Rules, datasets, deployment

    home = Home(home_dir)
    deployment.init_home(home)
    with Deployment(home) as dep:
        for name in ("alice", "bob"):
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
        alice = dep.keystore.unlock("alice", PASSWORD)
        datasets.create_dataset(dep, alice, "digits", _folder(home_dir.parent / "seed",
                                                               SEED_ITEMS),
                                rules=Rules(voting_period=3600, evaluator="alice",
                                            training_fee=FEE))


def _verdicts(dep: Any, outcome: Any) -> list[Any]:
    from databright.compute.tmr import VerdictChain

    body = outcome.receipt.body
    chain = VerdictChain.from_json(dep.store.get(body["verdicts_cid"]))
    if chain.head != body["verdicts_head"]:
        raise SystemExit(f"job {outcome.job_id}: the stored verdicts are not the receipt's")
    return list(chain)


def _pool(dep: Any, consumer: Any) -> list[str]:
    """The job's identities in index order."""
    from databright.compute.grad import determinism_class_digest
    from databright.market.compute.coordinator import open_coordinator
    from databright.market.compute.pool import ensure_local_pool
    from databright.training import get_family

    threads = get_family(FAMILY).config(dict(CONFIG)).threads
    coordinator = open_coordinator(dep, consumer)
    signers = ensure_local_pool(dep, consumer, coordinator.address, WORKERS,
                                determinism_class_digest(threads))
    return [s.address for s in signers]


def _honest_disagreements(verdicts: list[Any], liar: str | None) -> int:
    """Tasks where two results of accounts told to be honest differ."""
    skip = {liar.lower()} if liar else set()
    return sum(len({d for a, d in v.digests.items() if a not in skip and d is not None}) > 1
               for v in verdicts)


def _job(dep: Any, consumer: Any, faults: dict[str, str] | None = None) -> tuple[Any, float]:
    from databright.market.compute.train_job import run_train_job

    t0 = time.perf_counter()
    out = run_train_job(dep, consumer, "digits", FAMILY, config=dict(CONFIG), workers=WORKERS,
                        fault_accounts=faults)
    return out, time.perf_counter() - t0


def _receipt_ok(dep: Any, outcome: Any) -> bool:
    from databright.market.compute.verify import load_policy, verify_receipt

    return verify_receipt(dep, outcome.receipt_path, load_policy(None, allow_simulated=True)).ok


def _shard_map(outcome: Any) -> str:
    return str(outcome.trained.checkpoint.extra["decomposition"]["shard_map"])


class _Anchors:
    """The all-honest job's checkpoint, and the one-process program's per shard map."""

    def __init__(self, dep: Any, honest: Any) -> None:
        self.dep, self.sha256, self.shard_map = dep, honest.sha256, _shard_map(honest)
        self.references: dict[str, str] = {}
        self.reference_s = 0.0

    def check(self, outcome: Any) -> dict[str, Any]:
        """Whether ``outcome``'s checkpoint is the all-honest job's and the one-process
        program's (over the job's own shard map: a later plan may cut other shards)."""
        key = _shard_map(outcome)
        if key not in self.references:
            t0 = time.perf_counter()
            self.references[key] = _reference_sha256(self.dep, outcome)
            self.reference_s += time.perf_counter() - t0
        return {"sha256": outcome.sha256, "same_shard_map": key == self.shard_map,
                "checkpoint_equal": outcome.sha256 == self.sha256,
                "reference_equal": outcome.sha256 == self.references[key]}


def _honest_row(dep: Any, outcome: Any, seconds: float, anchors: _Anchors) -> dict[str, Any]:
    verdicts = _verdicts(dep, outcome)
    return {"job": outcome.job_id, "tasks": len(verdicts),
            "recomputed": sum(v.recomputed for v in verdicts),
            "liars_named": sorted({a for v in verdicts for a in v.liars}),
            "honest_disagreements": _honest_disagreements(verdicts, None),
            **anchors.check(outcome), "receipt_ok": _receipt_ok(dep, outcome), "seconds": round(seconds, 1)}


def _reference_sha256(dep: Any, outcome: Any) -> str:
    """The program trained in one process over the honest job's shard map."""
    from databright.compute.reference import fit_decomposed
    from databright.market.compute.train_job import distinct as _distinct
    from databright.market.model_data import training_records, validation_records
    from databright.training import save_checkpoint

    body = outcome.receipt.body
    spec = json.loads(dep.store.get(body["spec_cid"]))
    ds_id = int(body["dataset_id"])
    train = _distinct(training_records(dep, ds_id))
    shard_of = {train[i].cid: s["index"] for s in json.loads(dep.store.get(body["plan_cid"]))["shards"]
                for i in s["items"]}
    ref = fit_decomposed(FAMILY, spec["config"], train, validation_records(dep, ds_id), shard_of,
                         store=dep.store, snapshot=spec["snapshot"])
    return save_checkpoint(dep.store, ref.checkpoint).sha256


def _pick_liar(pool: list[str], previous: Any, used: set[str]) -> int:
    """The pool index of the identity the previous job gave the most tasks, not used yet."""
    tasks = {w["account"].lower(): int(w["tasks"]) for w in previous.receipt.body["workers"]}
    best = max((tasks.get(a.lower(), 0), -i) for i, a in enumerate(pool)
               if a.lower() not in used)
    if best[0] == 0:
        raise SystemExit("no identity of the pool was given work by the previous job")
    return -best[1]


def _mode_row(dep: Any, mode: str, liar: str, outcome: Any, seconds: float, anchors: _Anchors,
              stake_before: int) -> dict[str, Any]:
    verdicts = _verdicts(dep, outcome)
    me = liar.lower()
    answered = [v for v in verdicts if v.digests.get(me) is not None]
    lied = [v for v in answered if v.digests[me] != v.accepted]
    detected = [v for v in verdicts if me in v.liars]
    others = sorted({a for v in verdicts for a in v.liars if a != me})
    w = dep.compute.get_worker(liar)
    named = [a.lower() for a in outcome.liars] == [me]
    slashed = named and w.status == "banned" and w.stake == 0
    reissued = outcome.extra["reissued"]
    paid = next((int(x["fee"]) for x in outcome.receipt.body["workers"]
                 if x["account"].lower() == me), 0)
    row: dict[str, Any] = {
        "mode": mode, "liar": liar, "job": outcome.job_id, "tasks": len(verdicts),
        "answered": len(answered), "lied": len(lied), "detected": len(detected),
        "detection": len(detected) / len(lied) if lied else None,
        "recomputed": sum(v.recomputed for v in verdicts),
        "reissued": sum(reissued.values()), "liar_reissued": reissued.get(liar, 0),
        "named": named, "status": w.status, "stake_before_wei": str(stake_before),
        "stake_after_wei": str(w.stake), "slashed": slashed, "liar_paid_wei": str(paid),
        "false_accusations": others, "honest_disagreements": _honest_disagreements(verdicts, me),
        **anchors.check(outcome), "receipt_ok": _receipt_ok(dep, outcome), "seconds": round(seconds, 1)}
    if mode == "silent":  # not a liar: its lease is re-issued, it is neither named nor slashed
        row["ok"] = (row["liar_reissued"] >= 1 and not outcome.liars and w.status == "active"
                     and w.stake == stake_before and not detected)
    else:
        row["ok"] = bool(lied) and len(detected) == len(lied) and slashed
    # the checkpoint is the all-honest run's: the honest job's when the plan cut the same
    # shards, and always the one-process program's over the job's shard map
    same = row["checkpoint_equal"] or not row["same_shard_map"]
    row["ok"] = row["ok"] and same and row["reference_equal"] and not others \
        and row["receipt_ok"] and row["honest_disagreements"] == 0
    return row


def run(modes: list[str], repeat: int = 1) -> dict[str, Any]:
    from databright.home import Home
    from databright.market import Deployment

    tmp = Path(tempfile.mkdtemp(prefix="db-faults-bench-"))
    t_all = time.perf_counter()
    try:
        build(tmp / "home")
        with Deployment(Home(tmp / "home")) as dep:
            consumer = dep.keystore.unlock("bob", PASSWORD)
            honest, took = _job(dep, consumer)
            anchors = _Anchors(dep, honest)
            first = _honest_row(dep, honest, took, anchors)
            rows: list[dict[str, Any]] = []
            used: set[str] = set()
            previous = honest
            # silent last: a silent worker keeps its items beside its spare, so a later plan
            # may cut other shards (another program, whose anchor is its own reference)
            for mode in sorted(modes * repeat, key=lambda m: m == "silent"):
                pool = _pool(dep, consumer)
                index = _pick_liar(pool, previous, used)
                liar = pool[index]
                used.add(liar.lower())
                stake = dep.compute.get_worker(liar).stake
                outcome, took = _job(dep, consumer, {liar: mode})
                rows.append(_mode_row(dep, mode, liar, outcome, took, anchors, stake))
                previous = outcome
            again, took = _job(dep, consumer)
            last = _honest_row(dep, again, took, anchors)
            items = int(honest.receipt.body["items"])
            reference_s = anchors.reference_s
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    liars = [r for r in rows if r["mode"] != "silent"]
    lied = sum(r["lied"] for r in liars)
    detected = sum(r["detected"] for r in liars)
    honest_rows = [first, last]
    return {
        "family": FAMILY, "config": CONFIG, "train_items": items, "workers": WORKERS,
        "machine": {"nproc": _nproc(), "cpu": _cpu()},
        "honest": honest_rows, "reference_equal": first["reference_equal"],
        "shard_maps": len(anchors.references), "reference_s": round(reference_s, 1),
        "modes": rows,
        "summary": {
            "modes_ok": sum(r["ok"] for r in rows), "modes": len(rows),
            "lied_tasks": lied, "detected_tasks": detected,
            "detection": detected / lied if lied else None,
            "liars_slashed": sum(r["slashed"] for r in liars), "liars": len(liars),
            "checkpoints_equal": sum(r["checkpoint_equal"] for r in rows + honest_rows),
            "references_equal": sum(r["reference_equal"] for r in rows + honest_rows),
            "liar_checkpoints_equal": sum(r["checkpoint_equal"] for r in liars),
            "jobs": len(rows) + len(honest_rows),
            "false_alarms_honest_jobs": sum(len(r["liars_named"]) for r in honest_rows),
            "false_accusations_lying_jobs": sum(len(r["false_accusations"]) for r in rows),
            "honest_disagreements": sum(r["honest_disagreements"] for r in rows + honest_rows),
            "tasks_judged": sum(r["tasks"] for r in rows + honest_rows),
        },
        "targets": {"detection": 1.0, "checkpoint_equal": True, "false_alarms": 0},
        "seconds": round(time.perf_counter() - t_all, 1),
    }


def _nproc() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    from databright.market.compute.executor import FAULT_MODES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--modes", default=",".join(FAULT_MODES),
                    help="comma-separated fault modes [default: all]")
    ap.add_argument("--repeat", type=int, default=1,
                    help="jobs per mode, each with another lying identity [default: 1]")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(FAULT_MODES))
    if unknown:
        ap.error(f"unknown fault mode(s) {unknown}: use {', '.join(FAULT_MODES)}")
    result = run(modes, max(1, args.repeat))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compute_faults.json").write_text(json.dumps(result, indent=1) + "\n")
    s = result["summary"]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"fault matrix: {FAMILY} {CONFIG}, {result['train_items']} items, "
              f"{WORKERS} workers, one lying identity per job")
        print(f"  {'mode':<9}{'answered':>9}{'lied':>5}{'detected':>9}{'recomp':>7}"
              f"{'reissued':>9}{'slashed':>8}{'status':>8}{'=honest':>8}{'=ref':>6}"
              f"{'others':>7}{'ok':>6}")
        for r in result["modes"]:
            print(f"  {r['mode']:<9}{r['answered']:>9}{r['lied']:>5}{r['detected']:>9}"
                  f"{r['recomputed']:>7}{r['liar_reissued']:>9}{r['slashed']!s:>8}"
                  f"{r['status']:>8}{r['checkpoint_equal']!s:>8}{r['reference_equal']!s:>6}"
                  f"{len(r['false_accusations']):>7}{r['ok']!s:>6}")
        for r in result["honest"]:
            print(f"  honest job #{r['job']}: {r['tasks']} tasks, {r['recomputed']} recomputed, "
                  f"liars named {r['liars_named']}, = first honest job {r['checkpoint_equal']} "
                  f"(same shard map {r['same_shard_map']}), = one-process reference "
                  f"{r['reference_equal']}")
        print(f"  detection {s['detected_tasks']}/{s['lied_tasks']} lied tasks (target 100 %); "
              f"slashed {s['liars_slashed']}/{s['liars']}; checkpoints equal "
              f"{s['checkpoints_equal']}/{s['jobs']}; false alarms "
              f"{s['false_alarms_honest_jobs'] + s['false_accusations_lying_jobs']} "
              f"(target 0); honest disagreements {s['honest_disagreements']} over "
              f"{s['tasks_judged']} tasks; {result['seconds']} s")
    ok = (s["modes_ok"] == s["modes"] and s["false_alarms_honest_jobs"] == 0
          and s["honest_disagreements"] == 0
          and all(r["reference_equal"] for r in result["honest"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
