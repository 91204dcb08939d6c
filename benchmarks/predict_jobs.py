"""Batch predictions on the compute market against the model server, and their gas.

One run, one fresh home on the embedded chain (the digits small CNN of ``benchmarks/predict.py``,
registered and attested), ``--items`` distinct digit images:

* **Anchor.** The model server's own prediction path (``market.predictions.PredictionService``
  with payment off, in this one process, requests of its ``max_items``): predictions/s.
* **Compute market.** The same images as one prediction job for this home's coordinator
  service (``web.coordinator_service``, uvicorn on 127.0.0.1), worker identities pulling over
  HTTP from N = 1 and 2 worker processes (three identities in all, dealt over the processes),
  under ``tmr`` (every batch on three identities) and ``spot`` (one identity a batch, p = 0.1).
  Worker processes are warmed by a one-batch job first (a running model server is warm too).
  Predictions/s = items / the coordinator's wall time from picking the job up to its settled
  receipt (planning, every batch leased, computed, committed, revealed and judged, the
  predictions stored, the receipt signed and ``settle_prediction`` mined). ``ratio`` =
  compute-market rate / model-server rate.
* **Gas.** ``create_prediction_job`` + ``settle_prediction`` (``gasUsed`` of their receipts,
  three workers named) per job; the number of items does not change either call, so a job of
  1,000 predictions costs that per 1,000; ``gas_per_1000_at_this_size`` scales it for jobs of
  this run's size. Anchor: the channel path's ``open_channel`` + ``close`` for 1,000 predictions
  (``benchmarks/predict.py``'s figure, measured here in the same run).

Usage: ``python benchmarks/predict_jobs.py [--json] [--quick] [--items N] [--batch B]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

import predict as channel_bench  # benchmarks/predict.py: the home and the channel gas

PASSWORD = channel_bench.PASSWORD
IDENTITIES = 3


def work(url: str, keyfile: str) -> None:
    """A worker process (``--work``): one thread per key, one task at a time (torch settings
    are per process), until SIGTERM."""
    from databright.chain.accounts import signer_from_key
    from databright.market.compute import remote_worker

    keys = [signer_from_key(k) for k in Path(keyfile).read_text().split()]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    honest = remote_worker.honest_compute

    def serialized(spec: bytes, fetch: Any) -> bytes:
        with lock:
            return honest(spec, fetch)

    remote_worker.honest_compute = serialized  # type: ignore[assignment]
    threads = [threading.Thread(target=remote_worker.work, args=(url, key),
                                kwargs={"stop": stop}, daemon=True)
               for key in keys]
    for t in threads:
        t.start()
    print("ready", flush=True)
    stop.wait()
    for t in threads:
        t.join(timeout=30)


def _images(root: Path, count: int) -> list[Path]:
    folder = channel_bench._folder(root, 200, count)
    return sorted(folder.rglob("*.png"))


def anchor(home: Path, model_id: int, files: list[Path]) -> dict[str, Any]:
    from databright.market.predictions import Item, PredictionService

    service = PredictionService.load(str(home), model_id, None, require_payment=False)
    items = [Item(p.name, "image/png", p.read_bytes()) for p in files]
    n = service.max_items
    service.predict(items[:1], None)  # warm: the network built once, as a running server has
    t0 = time.perf_counter()
    labels = []
    for k in range(0, len(items), n):
        labels += [lab for _, lab in service.predict(items[k:k + n], None).labels]
    seconds = time.perf_counter() - t0
    service.close()
    return {"seconds": round(seconds, 4), "predictions_per_s": round(len(items) / seconds, 1),
            "labels": labels}


def _workers(url: str, keys: list[str], procs: int, tmp: Path) -> list[subprocess.Popen[str]]:
    out = []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for n in range(procs):
        keyfile = tmp / f"keys-{procs}-{n}.txt"
        keyfile.write_text("\n".join(keys[n::procs]))
        out.append(subprocess.Popen([sys.executable, str(Path(__file__)), "--work", url,
                                     str(keyfile)], stdout=subprocess.PIPE, text=True, env=env))
    for p in out:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return out


def market_run(home: Path, model_id: int, files: list[Path], procs: int, verification: str,
               batch: int, tmp: Path) -> dict[str, Any]:
    import uvicorn

    from databright.home import Home
    from databright.market import Deployment
    from databright.market.compute.options import JobOptions
    from databright.market.compute.pool import pool_of
    from databright.market.compute.predict_job import submit_predict_job
    from databright.web.coordinator_service import CoordinatorService

    h = Home(home)
    with Deployment(h) as dep:
        operator = dep.keystore.unlock("alice", PASSWORD)
        consumer = dep.keystore.unlock("consumer", PASSWORD)
        service = CoordinatorService(h, operator)
        from databright.compute.scheduler import WorkerInfo

        pool = [WorkerInfo(w.account.lower(), w.determinism_class.removeprefix("0x"), w.min_fee)
                for w in pool_of(dep, service.coordinator.address)]
        options = JobOptions.of(1, verification, 0.1 if verification == "spot" else None)
        # a one-batch job first warms the worker processes (torch, the checkpoint), as a
        # running model server is warm; the second job is the one measured
        for chosen in (files[:batch], files):
            job_id, _, _ = submit_predict_job(dep, consumer, model_id, chosen,
                                              service.coordinator.address, pool,
                                              batch_size=batch, options=options)
    port = channel_bench._free_port()
    server = uvicorn.Server(uvicorn.Config(service.app(), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    keys = Path(tmp / "identities.txt").read_text().split()
    procs_ = _workers(f"http://127.0.0.1:{port}", keys, procs, tmp)
    try:
        warm = service.run_once()
        assert warm is not None and warm.job_id == job_id - 1
        t0 = time.perf_counter()
        done = service.run_once()
        seconds = time.perf_counter() - t0
    finally:
        for p in procs_:
            p.terminate()
        for p in procs_:
            p.wait(timeout=60)
        server.should_exit = True
        thread.join(timeout=30)
    assert done is not None and done.job_id == job_id
    body = done.receipt.body
    return {"processes": procs, "verification": verification, "job_id": job_id,
            "seconds": round(seconds, 4), "predictions_per_s": round(len(files) / seconds, 1),
            "tasks": body["tasks"], "checked": len(body["verification"].get("checked", [])), "liars": len(body["liars"]),
            **{k: round(v, 3) for k, v in done.timing.items()},
            "batches_predictions_per_s": round(len(files) / done.timing["batches_s"], 1),
            "labels": [p["label"] for p in done.predictions]}


def job_gas(home: Path, job_id: int) -> dict[str, int]:
    from databright.home import Home
    from databright.market import Deployment

    with Deployment(Home(home)) as dep:
        out = {}
        for event, name in (("PredictionJobCreated", "create_prediction_job"),
                            ("PredictionSettled", "settle_prediction")):
            log = next(x for x in dep.compute.logs(event) if int(x["args"]["job_id"]) == job_id)
            with dep.chain.translating():
                receipt = dep.chain.w3.eth.get_transaction_receipt(log["transactionHash"])
            out[name] = int(receipt["gasUsed"])
    return out


def setup_pool(home: Path, tmp: Path) -> None:
    """Register this home's coordinator and three staked worker identities."""
    from databright.compute.grad import determinism_class_digest
    from databright.home import Home
    from databright.market import Deployment
    from databright.market.compute.coordinator import open_coordinator
    from databright.market.compute.pool import ensure_local_pool

    with Deployment(Home(home)) as dep:
        operator = dep.keystore.unlock("alice", PASSWORD)
        coordinator = open_coordinator(dep, operator)
        ids = ensure_local_pool(dep, operator, coordinator.address, IDENTITIES,
                                determinism_class_digest(1))
    (tmp / "identities.txt").write_text("\n".join("0x" + bytes(s.key).hex() for s in ids))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--work":
        work(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="16 items, batches of 8")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--transfers", type=int, default=3)
    args = parser.parse_args()
    items = args.items or (16 if args.quick else 128)
    batch = args.batch or (8 if args.quick else 32)
    tmp = Path(tempfile.mkdtemp(prefix="db-predict-jobs-"))
    home = tmp / "home"
    world = channel_bench.build(home, ["small-cnn"])
    model_id = world["models"]["small-cnn"]
    files = _images(tmp / "inputs", items)
    setup_pool(home, tmp)
    base = anchor(home, model_id, files)
    runs = [market_run(home, model_id, files, procs, mode, batch, tmp)
            for mode in ("tmr", "spot") for procs in (1, 2)]
    gas = job_gas(home, runs[0]["job_id"])
    per_job = gas["create_prediction_job"] + gas["settle_prediction"]
    channel = channel_bench.gas(home, world, args.transfers)
    same = all(r["labels"] == base["labels"] for r in runs)
    for r in runs:
        r["ratio"] = round(r["predictions_per_s"] / base["predictions_per_s"], 4)
        del r["labels"]
    result = {
        "items": items, "batch": batch, "identities": IDENTITIES,
        "model_server": {k: v for k, v in base.items() if k != "labels"},
        "compute_market": runs, "same_labels": same,
        "gas": {**gas, "per_job": per_job, "gas_per_1000": per_job,
                "gas_per_1000_at_this_size": per_job * 1000 // items,
                "channel_gas_per_1000": channel["channel_gas"],
                "ratio_to_channel": round(per_job / channel["channel_gas"], 3)},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{items} images, batches of {batch}, {IDENTITIES} worker identities")
        ms = result["model_server"]
        print(f"{'model server (one process)':<40}{ms['predictions_per_s']:>10} pred/s")
        for r in runs:
            print(f"{r['verification'] + ', ' + str(r['processes']) + ' worker process(es)':<40}"
                  f"{r['predictions_per_s']:>10} pred/s  ratio {r['ratio']:.3f}")
        g = result["gas"]
        print(f"gas create + settle {g['per_job']:,} a job (= per 1,000 predictions in one job; "
              f"{g['gas_per_1000_at_this_size']:,} per 1,000 at {items} a job); channel "
              f"open + close {g['channel_gas_per_1000']:,}")
        print(f"same labels as the model server: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
