"""The paper's Figure 4, side by side: one small CNN trained standard, through the trusted
coordinator, and split in two across workers.

    python benchmarks/figure4.py            # width 64, 2 × 8 steps of batch 32 (≈ 2 min)
    python benchmarks/figure4.py --quick    # width 16, 2 × 3 steps (CI)
    python benchmarks/figure4.py --json     # one JSON document on stdout

Every row trains the same program — ``small-cnn`` (two conv blocks and a linear layer) on
28 × 28 digit images, batch 32, AdamW, seed 0, one torch thread per worker — for two epochs of
``--steps`` steps each. The first epoch warms up (process start, network build, image decoding);
the second is timed. Rows:

- ``standard-1``: a plain torch loop in one process (the anchor);
- ``standard-2``: the same batches data-parallel over 2 processes (torch.distributed, gloo on
  127.0.0.1, gradients all-reduced): the trusted single-owner cluster baseline;
- ``coordinator-1`` / ``coordinator-2``: the compute market's coordinator (``compute.Trainer``,
  the lease board, commit-before-reveal, result validation, weights stored by CID) serving 1 or
  2 HTTP-pull worker processes (``databright worker``'s loop, signed requests) on 127.0.0.1; each
  step's batch is split over the workers' shards. One account per worker and no redundancy, as
  in the paper's Figure 4 (TMR's and the exposure cap's costs are ``compute_overhead.py``'s);
- ``split-2``: the same coordinator with the model cut in 2 pieces at a layer boundary, one per
  worker process: only boundary activations and their gradients cross.

Columns per row (ms per step, timed epoch): forward pass (the slowest worker's), communication
(time in blob fetches, commits and reveals, or in all-reduce), step, the coordinator's own busy
time, bytes moved per step, and the step projected to a 1 Gbps link (step − communication +
bytes × 8 / 10⁹). Figures: ``split_ratio`` = split-2 step / standard-1 step (target ≤ 1.10;
the paper 1.17), ``coordinator_overhead`` = coordinator-1 step / standard-1 step − 1 (target
≤ 0.05; the paper: "almost negligible").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

BATCH = 32
THREADS = 1
SPLIT_TARGET = 1.10
OVERHEAD_TARGET = 0.05
PAPER = {
    "standard-1": "the anchor",
    "standard-2": "—",
    "coordinator-1": "overhead almost negligible",
    "coordinator-2": "overhead almost negligible",
    "split-2": "1.17× the single worker",
}


# -- the data and the program ---------------------------------------------------------------
def program(width: int) -> dict[str, Any]:
    return {"epochs": 2, "size": 28, "width": width, "batch_size": BATCH, "seed": 0,
            "threads": THREADS}


def items(steps: int) -> tuple[list[tuple[bytes, str]], list[tuple[bytes, str]]]:
    """``32 × steps`` training images and 64 validation images: (PNG bytes, label)."""
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    n = BATCH * steps + 64
    out = []
    for i in range(n):
        k = i % len(d.data)
        px = d.data[k].reshape(8, 8).astype(np.float64)
        px = np.roll(px, shift=i // len(d.data), axis=1)  # distinct bytes past 1,797 images
        img = (255 - px * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").resize((32, 32), Image.Resampling.NEAREST).save(
            buf, format="PNG")
        out.append((buf.getvalue(), str(int(d.target[k]))))
    return out[:-64], out[-64:]


def records(pairs: list[tuple[bytes, str]]) -> list[Any]:
    from databright.storage.cid import cid_of_bytes
    from databright.training.records import Record

    return [Record(cid_of_bytes(b), label, "image/png", (lambda b=b: b)) for b, label in pairs]


# -- standard rows --------------------------------------------------------------------------
def standard(width: int, steps: int, rank: int = 0, world: int = 1) -> dict[str, Any]:
    """The plain loop; with ``world`` 2 the caller set up torch.distributed."""
    import torch
    from torch.nn import functional as F

    from databright.training.families import get_family
    from databright.training.families.base import (
        context,
        epoch_perms,
        evaluate_network,
        optimizer,
    )

    fam = get_family("small-cnn")
    cfg = fam.config(program(width))
    train, val = items(steps)
    recs, vrecs = records(train), records(val)
    torch.set_num_threads(THREADS)
    torch.manual_seed(cfg.seed)
    labels = sorted({r.label for r in recs})
    x_all = fam.inputs(cfg, recs, {}, {}, context(None))
    y_all = torch.tensor([labels.index(r.label) for r in recs])
    xv = fam.inputs(cfg, vrecs, {}, {}, context(None))
    yv = torch.tensor([labels.index(r.label) if r.label in labels else -1 for r in vrecs])
    net = fam.initial_network(cfg, {}, tuple(labels), None)
    opt = optimizer(net, cfg)
    params = list(net.parameters())
    grad_bytes = sum(p.numel() * 4 for p in params)
    timed: dict[str, float] = {"forward": 0.0, "comm": 0.0, "steps": 0.0}
    for epoch, perm in enumerate(epoch_perms(len(recs), cfg)):
        t_epoch = time.perf_counter()
        fwd = comm = 0.0
        for s in range(0, len(recs), BATCH):
            idx = perm[s : s + BATCH]
            idx = idx[rank::world]  # this worker's half of the batch (all of it alone)
            t0 = time.perf_counter()
            out = net(x_all[idx])
            fwd += time.perf_counter() - t0
            loss = F.cross_entropy(out, y_all[idx], reduction="sum") / BATCH
            loss.backward()
            if world > 1:
                t0 = time.perf_counter()
                for p in params:
                    torch.distributed.all_reduce(p.grad)
                comm += time.perf_counter() - t0
            opt.step()
            opt.zero_grad(set_to_none=True)
        evaluate_network(net, xv, yv)  # the program measures each epoch, as the Trainer does
        if epoch == 1:
            timed = {"forward": fwd, "comm": comm, "steps": time.perf_counter() - t_epoch}
    # a 2-rank all-reduce sends and receives the gradient once per rank and step
    moved = 2 * grad_bytes if world > 1 else 0
    return {"forward_s": timed["forward"], "comm_s": timed["comm"], "epoch_s": timed["steps"],
            "coordinator_s": 0.0, "bytes_per_step": moved, "steps": steps}


def standard_dp(width: int, steps: int) -> dict[str, Any]:
    """``standard`` on 2 processes of this script (rank 0 reports)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.json"
        procs = [subprocess.Popen([sys.executable, __file__, "--dp-rank", str(r), "--dp-port",
                                   str(port), "--width", str(width), "--steps", str(steps),
                                   "--out", str(out)]) for r in (0, 1)]
        for p in procs:
            if p.wait(timeout=1800) != 0:
                raise SystemExit("a data-parallel rank failed")
        return dict(json.loads(out.read_text()))


def _dp_rank(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.dp_port))
    dist.init_process_group("gloo", rank=args.dp_rank, world_size=2)
    try:
        row = standard(args.width, args.steps, rank=args.dp_rank, world=2)
    finally:
        dist.destroy_process_group()
    if args.dp_rank == 0:
        Path(args.out).write_text(json.dumps(row))


# -- the coordinator rows -------------------------------------------------------------------
class Workers:
    """The coordinator's HTTP server on 127.0.0.1 and ``n`` worker processes pulling from it."""

    def __init__(self, n: int, board: Any, fetch: Any, tmp: Path) -> None:
        import uvicorn
        from eth_account import Account

        from databright.web.coordinator_server import Limits, create_app

        self.keys = [Account.create() for _ in range(n)]
        self.accounts = [k.address for k in self.keys]  # as the signed requests name them
        allowed = {a.lower() for a in self.accounts}
        app = create_app(board, fetch,
                         lambda a: None if a.lower() in allowed else "not a worker of this run",
                         limits=Limits(long_poll_seconds=10.0))
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.stats = [tmp / f"worker{i}.json" for i in range(n)]
        url = f"http://127.0.0.1:{self.port}"
        self.procs = [subprocess.Popen([sys.executable, __file__, "--worker", url, "--key",
                                        k.key.hex(), "--out", str(s)])
                      for k, s in zip(self.keys, self.stats)]

    def close(self) -> list[dict[str, Any]]:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=60)
        self.server.should_exit = True
        self.thread.join(timeout=30)
        return [json.loads(s.read_text()) for s in self.stats]


def coordinated(width: int, steps: int, n_workers: int) -> dict[str, Any]:
    """Train through the coordinator's protocol with ``n_workers`` HTTP worker processes."""
    from databright.compute.board import TaskBoard
    from databright.compute.grad import check_result
    from databright.compute.trainer import Trainer
    from databright.storage.cas import open_store

    train, val = items(steps)
    recs, vrecs = records(train), records(val)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "store")
        for b, _ in train:
            store.put_bytes(b)
        board = TaskBoard()
        workers = Workers(n_workers, board, store.get, Path(tmp))
        try:
            ordered = sorted(r.cid for r in recs)
            shard_of = {cid: i % n_workers for i, cid in enumerate(ordered)}
            trainer = Trainer("small-cnn", program(width), recs, vrecs, shard_of, job="fig4")
            busy = 0.0
            epoch_s = 0.0
            timed_steps: list[int] = []
            t_epoch = 0.0
            for step in trainer.steps():
                if step.epoch == 1 and step.batch == 0:
                    busy, t_epoch = 0.0, time.perf_counter()
                t0 = time.perf_counter()
                wcid = store.put_bytes(step.weights)
                specs = step.tasks(wcid)
                for shard, spec in specs.items():
                    cids = frozenset({wcid, *(i.cid for i in spec.items)})
                    board.post(spec.task, spec.to_bytes(), cids, (workers.accounts[shard],),
                               lease_seconds=600)
                busy += time.perf_counter() - t0
                results: dict[int, bytes] = {}
                while len(results) < len(specs):
                    board.wait_answer(1.0)
                    t0 = time.perf_counter()
                    for shard, spec in specs.items():
                        if shard in results:
                            continue
                        got = board.results(spec.task)
                        if got:
                            payload = next(iter(got.values()))
                            check_result(payload, spec.job, spec.task, trainer.grad_shapes)
                            results[shard] = payload
                            board.remove(spec.task)
                    busy += time.perf_counter() - t0
                t0 = time.perf_counter()
                trainer.apply(step, results)
                busy += time.perf_counter() - t0
                if step.epoch == 1:
                    timed_steps.append(step.index)
                    epoch_s = time.perf_counter() - t_epoch
            trainer.finish()
        finally:
            stats = workers.close()
    return _row(stats, timed_steps, epoch_s, busy, steps)


def _row(stats: list[dict[str, Any]], timed: list[int], epoch_s: float, busy: float,
         steps: int) -> dict[str, Any]:
    """Sum the workers' per-task figures over the timed steps (the slowest worker's)."""
    keep = {f"step-{i}" for i in timed}
    per_worker = []
    for s in stats:
        f = c = b = 0.0
        for task, t in s["tasks"].items():
            if task.split(".")[0] in keep:
                f, c, b = f + t["forward_s"], c + t["comm_s"], b + t["bytes"]
        per_worker.append((f, c, b))
    return {"forward_s": max(w[0] for w in per_worker), "comm_s": max(w[1] for w in per_worker),
            "epoch_s": epoch_s, "coordinator_s": busy,
            "bytes_per_step": max(w[2] for w in per_worker) / max(1, len(timed)), "steps": steps}


# -- a worker process -----------------------------------------------------------------------
def _worker(args: argparse.Namespace) -> None:
    """An HTTP-pull worker (the product's loop) that also times its forward passes and its
    requests, per task, and writes them to ``--out`` when stopped."""
    import torch

    from databright.chain.accounts import signer_from_key
    from databright.market import worker as worker_mod
    from databright.market.compute import remote_worker

    tasks: dict[str, dict[str, float]] = {}
    current: dict[str, Any] = {"task": None, "depth": 0, "t0": 0.0}

    def rec(key: str, value: float) -> None:
        if current["task"] is not None:
            tasks.setdefault(current["task"], {"forward_s": 0.0, "comm_s": 0.0, "bytes": 0.0})
            tasks[current["task"]][key] += value

    def pre(module: Any, inputs: Any) -> None:
        if current["depth"] == 0:
            current["t0"] = time.perf_counter()
        current["depth"] += 1

    def post(module: Any, inputs: Any, output: Any) -> None:
        current["depth"] -= 1
        if current["depth"] == 0:
            rec("forward_s", time.perf_counter() - current["t0"])

    torch.nn.modules.module.register_module_forward_pre_hook(pre)
    torch.nn.modules.module.register_module_forward_hook(post)
    honest = remote_worker.honest_compute

    def compute(spec: bytes, fetch: Any) -> bytes:
        current["task"] = json.loads(spec)["task"]
        return honest(spec, fetch)

    remote_worker.honest_compute = compute  # type: ignore[assignment]
    client = worker_mod.CoordinatorClient
    for name in ("blob", "commit", "reveal"):
        original = getattr(client, name)

        def timed(self: Any, *a: Any, _f: Any = original, _n: str = name) -> Any:
            t0 = time.perf_counter()
            out = _f(self, *a)
            rec("comm_s", time.perf_counter() - t0)
            moved = len(out) if _n == "blob" else (len(a[1]) if _n == "reveal" else 0)
            rec("bytes", float(moved))
            return out
        setattr(client, name, timed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    remote_worker.work(args.worker, signer_from_key(args.key), threads=THREADS, stop=stop)
    Path(args.out).write_text(json.dumps({"tasks": tasks}))


# -- the report -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def finish(name: str, row: dict[str, Any]) -> dict[str, Any]:
    n = row["steps"]
    ms = {k.replace("_s", "_ms_per_step"): round(1000 * row[k] / n, 2)
          for k in ("forward_s", "comm_s", "epoch_s", "coordinator_s")}
    projected = row["epoch_s"] - row["comm_s"] + n * row["bytes_per_step"] * 8 / 1e9
    return {"row": name, **ms, "epoch_s": round(row["epoch_s"], 3),
            "bytes_per_step": int(row["bytes_per_step"]),
            "projected_1gbps_ms_per_step": round(1000 * projected / n, 2),
            "coordinator_share": round(row["coordinator_s"] / row["epoch_s"], 4),
            "paper": PAPER[name]}


def machine() -> dict[str, Any]:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "device": "cpu",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads_per_worker": THREADS}


def run(width: int, steps: int, rows: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"program": {"family": "small-cnn", **program(width)},
                           "timed_steps": steps, "machine": machine(), "rows": []}
    makers = {
        "standard-1": lambda: standard(width, steps),
        "standard-2": lambda: standard_dp(width, steps),
        "coordinator-1": lambda: coordinated(width, steps, 1),
        "coordinator-2": lambda: coordinated(width, steps, 2),
    }
    if "split-2" in rows:
        from figure4_split import split_row

        makers["split-2"] = lambda: split_row(width, steps)
    by = {}
    for name in rows:
        print(f"figure4: {name} …", file=sys.stderr, flush=True)
        by[name] = finish(name, makers[name]())
        out["rows"].append(by[name])
    base = by["standard-1"]["epoch_ms_per_step"]
    for r in out["rows"]:
        r["ratio_to_standard_1"] = round(r["epoch_ms_per_step"] / base, 3)
    if "coordinator-1" in by:
        out["coordinator_overhead"] = round(by["coordinator-1"]["epoch_ms_per_step"] / base - 1, 4)
        out["coordinator_overhead_target"] = OVERHEAD_TARGET
    if "coordinator-2" in by and "standard-2" in by:
        out["coordinator_overhead_2_workers"] = round(
            by["coordinator-2"]["epoch_ms_per_step"] / by["standard-2"]["epoch_ms_per_step"] - 1, 4)
    if "split-2" in by:
        out["split_ratio"] = round(by["split-2"]["epoch_ms_per_step"] / base, 4)
        out["split_ratio_target"] = SPLIT_TARGET
    return out


def table(out: dict[str, Any]) -> str:
    head = ("| row | forward ms | comm ms | step ms | coordinator ms | bytes/step | "
            "1 Gbps ms | × standard-1 | paper |")
    lines = [head, "|" + "---|" * 9]
    for r in out["rows"]:
        lines.append(f"| {r['row']} | {r['forward_ms_per_step']} | {r['comm_ms_per_step']} | "
                     f"{r['epoch_ms_per_step']} | {r['coordinator_ms_per_step']} | "
                     f"{r['bytes_per_step']:,} | {r['projected_1gbps_ms_per_step']} | "
                     f"{r['ratio_to_standard_1']} | {r['paper']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--quick", action="store_true", help="width 16, 3 timed steps (CI)")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps per epoch (2 epochs)")
    ap.add_argument("--rows", default="standard-1,standard-2,coordinator-1,coordinator-2,split-2")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--dp-rank", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dp-port", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args)
    width = args.width or (16 if args.quick else 64)
    steps = args.steps or (3 if args.quick else 8)
    if args.dp_rank is not None:
        return _dp_rank(argparse.Namespace(**{**vars(args), "width": width, "steps": steps}))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    out = run(width, steps, [r for r in args.rows.split(",") if r])
    if args.json:
        print(json.dumps(out))
        return
    m = out["machine"]
    print(f"Figure 4 — small-cnn width {width}, batch {BATCH}, {steps} timed steps, "
          f"{m['cpu']} × {m['cores']} cores, torch {m['torch']} on {m['device']}")
    print(table(out))
    if "coordinator_overhead" in out:
        print(f"coordinator overhead: {out['coordinator_overhead']:.1%} "
              f"(target ≤ {OVERHEAD_TARGET:.0%})")
    if "split_ratio" in out:
        print(f"2-way split: {out['split_ratio']:.3f}× the single worker "
              f"(target ≤ {SPLIT_TARGET}, paper 1.17)")


if __name__ == "__main__":
    main()
