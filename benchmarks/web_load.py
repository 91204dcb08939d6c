"""The web app under load: dataset and proposal pages at 20 concurrent clients on 127.0.0.1.

One run: a fresh home on the embedded chain with one real dataset (``digits``, a proposal with
its evaluation), then an index holding ``--datasets`` datasets (default 100), ``--proposals``
proposals (10,000) with 30 items, an evaluation report and votes each, 20 shareholders a
dataset, and ``--comments`` signed comments (1,000). The synthetic rows are written straight into
the index tables the pages read (the chain holds only the real dataset: building 10,000 proposals
on chain would measure the chain, not the pages); their manifests and evaluation reports are the
real proposal's, so a synthetic proposal page does all the work a real one does.

Then ``databright serve`` runs in its own process (uvicorn, one worker: the embedded chain's
single writer), and ``--clients`` clients (20) send requests with keep-alive for ``--seconds``
each phase: first the anchor (``GET /static/app.css``: the same server, the same client, no page
work), then the pages: random ``/datasets/{name}`` and ``/proposals/{id}`` (HTML, as a browser
asks). Reported per page kind: p50 / p95 / p99 latency in ms and requests/s; the target is a
p95 ≤ 100 ms for both kinds. ``p95_ratio`` = pages' p95 / the anchor's p95.

The server caches pages for visitors who are not signed in (``--page-cache-ttl``, default 10 s,
as ``databright serve``; any sync or write drops them sooner). ``--spread hot`` asks for random
pages among 260 (the cache serves most of them), ``--spread all`` for every dataset and proposal
page (10,100 pages: few repeats, so most requests render), and ``--page-cache-ttl 0`` renders
every request: run all three to see what the cache does and what a page costs.

Usage: ``python benchmarks/web_load.py [--json] [--quick] [--seconds S] [--clients N]``; writes
the JSON to ``benchmarks/results/web_load.json`` as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

PASSWORD = "bench"
ITEMS_PER_PROPOSAL = 30
HOLDERS_PER_DATASET = 20
TARGET_P95_MS = 100.0


def _cli(home: Path, *args: str, as_: str | None = None) -> Any:
    from typer.testing import CliRunner

    from databright.cli.main import app

    argv = [*args, "--home", str(home), "--json"] + (["--as", as_] if as_ else [])
    result = CliRunner().invoke(app, argv, env={"DATABRIGHT_PASSWORD": PASSWORD})
    if result.exit_code != 0:
        raise SystemExit(f"`databright {' '.join(argv)}` failed: {result.stderr or result.stdout}")
    return json.loads(result.stdout)


def build_home(root: Path) -> tuple[Path, int]:
    """A home with the dataset ``digits`` and one evaluated proposal; its id."""
    from sklearn.datasets import load_digits

    from databright.cli.demo_data import write_folder

    digits = load_digits()
    home = root / "home"
    _cli(home, "init")
    for name in ("alice", "bob"):
        _cli(home, "account", "new", name, "--fast-kdf")
    names = [f"d{i:04d}" for i in range(120)]
    seed = write_folder(root / "seed", digits.data[:80], digits.target[:80], names[:80])
    batch = write_folder(root / "batch", digits.data[80:120], digits.target[80:120], names[80:])
    _cli(home, "dataset", "create", "digits", "--from", str(seed), "--period", "1h",
         "--evaluator", "alice", as_="alice")
    proposal = _cli(home, "propose", "digits", str(batch), as_="bob")["proposal_id"]
    _cli(home, "evaluate", str(proposal), "--post", as_="alice")
    _cli(home, "index", "sync")
    return home, int(proposal)


def _address(n: int) -> str:
    from databright.chain.wrapper import checksum

    return checksum("0x" + f"{n:040x}")


def seed_index(home: Path, proposal_id: int, datasets: int, proposals: int,
               comments: int) -> dict[str, Any]:
    """Write the synthetic rows; returns the names and ids the load test asks for."""
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from sqlalchemy import insert, select

    from databright.index.cache import (
        DatasetRow,
        EntryRow,
        HolderRow,
        ItemRow,
        ProposalRow,
        VoteRow,
    )
    from databright.index.models import DatasetMeta, Evaluation
    from databright.index.web import Comment
    from databright.market.context import Deployment

    rng = random.Random(7)
    with Deployment(home) as dep, dep.index.session() as s:
        real = s.get(DatasetRow, s.get(ProposalRow, proposal_id).dataset_id)
        real_meta = s.get(DatasetMeta, real.dataset_id)
        real_p = s.get(ProposalRow, proposal_id)
        real_eval = s.get(Evaluation, proposal_id)
        real_items = s.scalars(select(ItemRow.cid).where(ItemRow.proposal_id == proposal_id)).all()
        first_ds = 1000
        first_p = 100_000
        ds_rows, meta_rows, holder_rows, entry_rows = [], [], [], []
        for d in range(datasets):
            ds_id = first_ds + d
            supply = 0
            for h in range(HOLDERS_PER_DATASET):
                balance = rng.randint(1, 10_000) * 10**18
                supply += balance
                holder_rows.append({"share_token": _address(ds_id * 1000), "account": _address(
                    10**6 + h), "dataset_id": ds_id, "balance": balance, "withdrawn": 0, "owed": 0,
                    "per_share_paid": 0})
            for e in range(5):
                entry_rows.append({"dataset_id": ds_id, "index": e, "manifest_cid": real_p.manifest_cid,
                                       "merkle_root": real_p.merkle_root, "item_count": 40,
                                       "contributor": _address(10**6 + e), "proposal_id": 0,
                                       "shares_minted": 10**18, "first_item": 40 * e,
                                       "items_loaded": True, "block_number": 1})
            ds_rows.append({
                "dataset_id": ds_id, "name": f"bench-{d:03d}", "symbol": f"B{d:03d}",
                "share_token": _address(ds_id * 1000), "initiator": real.initiator,
                "card_cid": real.card_cid, "quorum_bps": real.quorum_bps,
                "approval_bps": real.approval_bps, "voting_period": real.voting_period,
                "stake": real.stake, "reward_r0": real.reward_r0, "reward_n0": real.reward_n0,
                "evaluator": real.evaluator, "training_fee": real.training_fee,
                "min_royalty_bps": real.min_royalty_bps, "item_count": 200, "entry_count": 5,
                "total_supply": supply, "total_distributed": rng.randint(0, 10) * 10**18,
                "total_withdrawn": 0, "dividends_held": 0, "per_share": 0,
                "validation_manifest_cid": real.validation_manifest_cid, "items_loaded": True,
                "created_block": 1})
            if real_meta is not None:
                meta_rows.append({"dataset_id": ds_id, "name": f"bench-{d:03d}",
                                      "card_cid": real_meta.card_cid, "labels": real_meta.labels,
                                      "validation_manifest_cid": real_meta.validation_manifest_cid})
        s.execute(insert(DatasetRow), ds_rows)
        if meta_rows:
            s.execute(insert(DatasetMeta), meta_rows)
        s.execute(insert(HolderRow), holder_rows)
        s.execute(insert(EntryRow), entry_rows)
        p_rows, item_rows, eval_rows, vote_rows = [], [], [], []
        statuses = ("open", "accepted", "rejected", "expired")
        for n in range(proposals):
            pid = first_p + n
            ds_id = first_ds + n % datasets
            yes, no = rng.randint(0, 5) * 10**21, rng.randint(0, 5) * 10**21
            p_rows.append({
                "proposal_id": pid, "dataset_id": ds_id, "proposer": _address(10**6 + n % 50),
                "manifest_cid": real_p.manifest_cid, "merkle_root": real_p.merkle_root,
                "item_count": ITEMS_PER_PROPOSAL, "stake": real_p.stake, "snapshot": real_p.snapshot,
                "snapshot_supply": 10**22, "deadline": real_p.deadline, "position": None, "yes": yes, "no": no,
                "score_bps": rng.randint(-500, 1500), "status": statuses[n % 4], "shares_minted": 0,
                "items_loaded": True, "created_block": 1, "finalized_block": None})
            for cid in real_items[:ITEMS_PER_PROPOSAL]:
                item_rows.append({"dataset_id": ds_id, "cid": cid, "proposal_id": pid, "state": "pending"})
            if real_eval is not None:
                eval_rows.append({"proposal_id": pid, "manifest_cid": real_eval.manifest_cid,
                                      "report_cid": real_eval.report_cid, "report": real_eval.report,
                                      "score_bps": real_eval.score_bps})
            for v in range(3):
                vote_rows.append({"proposal_id": pid, "voter": _address(10**6 + v), "support": v != 2,
                                      "weight": 10**21, "block_number": 1})
            if len(item_rows) >= 50_000:
                s.execute(insert(ItemRow), item_rows)
                item_rows = []
        s.execute(insert(ProposalRow), p_rows)
        if item_rows:
            s.execute(insert(ItemRow), item_rows)
        if eval_rows:
            s.execute(insert(Evaluation), eval_rows)
        s.execute(insert(VoteRow), vote_rows)
        keys = [Account.create() for _ in range(10)]
        now = datetime.now(UTC)
        c_rows = []
        hot = [first_p + n for n in range(min(proposals, 50))]  # where the talk is
        for c in range(comments):
            key = keys[c % len(keys)]
            target = str(hot[c % len(hot)])
            body = f"Comment {c}: the **labels** of items {c % 30}–{c % 30 + 3} look off."
            message = f"DataBright comment\nproposal {target}\n\n{body}"
            sig = key.sign_message(encode_defunct(text=message)).signature
            c_rows.append({"target_kind": "proposal", "target_id": target, "parent_id": None,
                               "author": key.address, "body": body, "message": message,
                               "signature": "0x" + bytes(sig).hex(),
                               "created_at": now - timedelta(seconds=comments - c), "edited_at": None,
                               "edits": 0})
        s.execute(insert(Comment), c_rows)
    return {"datasets": [f"bench-{d:03d}" for d in range(datasets)],
            "proposals": [first_p + n for n in range(proposals)], "hot": hot}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class _Connection:
    """One keep-alive HTTP/1.1 connection: a client light enough that the 2 cores go to the
    server (httpx costs about 1 ms of CPU a request, as much as a cached page)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, accept: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                          f"Accept: {accept}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None:
            await self.reader.readexactly(length)
        elif chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(url: str, paths: list[str], clients: int, seconds: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    latencies: dict[str, list[float]] = {}
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    async def one(worker: int) -> None:
        rng = random.Random(worker)
        conn = _Connection(host, int(port))
        try:
            while time.perf_counter() < stop_at:
                path = rng.choice(paths)
                kind = path.split("/")[1] or "root"
                t = time.perf_counter()
                status = await conn.get(path, "text/html")
                latencies.setdefault(kind, []).append((time.perf_counter() - t) * 1000)
                if status != 200:
                    errors.append(f"{path}: {status}")
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(clients)))
    elapsed = time.perf_counter() - started
    out: dict[str, Any] = {"seconds": round(elapsed, 2), "errors": len(errors),
                           "first_errors": errors[:5]}
    for kind, values in sorted(latencies.items()):
        out[kind] = {"requests": len(values),
                     "requests_per_s": round(len(values) / elapsed, 1),
                     "p50_ms": round(_percentile(values, 0.50), 2),
                     "p95_ms": round(_percentile(values, 0.95), 2),
                     "p99_ms": round(_percentile(values, 0.99), 2)}
    return out


def run(datasets: int, proposals: int, comments: int, clients: int,
        seconds: float, page_cache_ttl: float, spread: str = "hot") -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="databright-web-load-"))
    server = None
    try:
        t = time.perf_counter()
        home, proposal_id = build_home(work)
        built = time.perf_counter() - t
        t = time.perf_counter()
        names = seed_index(home, proposal_id, datasets, proposals, comments)
        seeded = time.perf_counter() - t
        port = _free_port()
        path = [p for p in (os.environ.get("PYTHONPATH", ""), str(ROOT / "src")) if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        server = subprocess.Popen(
            [sys.executable, "-m", "databright.cli", "serve", "--home", str(home), "--port",
             str(port), "--page-cache-ttl", str(page_cache_ttl)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, server)
        rng = random.Random(1)
        if spread == "hot":  # what visitors read most: a few hundred pages
            pages = ([f"/datasets/{n}" for n in rng.sample(names["datasets"], min(50, datasets))]
                     + [f"/proposals/{p}" for p in rng.sample(names["proposals"],
                                                              min(200, proposals))]
                     + [f"/proposals/{p}" for p in names["hot"][:10]])
        else:  # every page equally likely: few repeats, so the page cache seldom helps
            pages = ([f"/datasets/{n}" for n in names["datasets"]] * (proposals // datasets // 2)
                     + [f"/proposals/{p}" for p in names["proposals"]])
        asyncio.run(_load(url, pages, clients, 2.0))  # warm-up: caches, connections
        anchor = asyncio.run(_load(url, ["/static/app.css"], clients, seconds))
        loaded = asyncio.run(_load(url, pages, clients, seconds))
        worst = max(loaded.get(k, {}).get("p95_ms", float("inf"))
                    for k in ("datasets", "proposals"))
        return {
            "figure": "web_load", "clients": clients, "seconds_per_phase": seconds,
            "page_cache_ttl_s": page_cache_ttl, "spread": spread,
            "distinct_pages": len(set(pages)),
            "index": {"datasets": datasets + 1, "proposals": proposals + 1,
                      "comments": comments, "items": proposals * ITEMS_PER_PROPOSAL},
            "build_s": round(built, 1), "seed_s": round(seeded, 1),
            "anchor_static": anchor.get("static", {}), "anchor_errors": anchor["errors"],
            "datasets_page": loaded.get("datasets", {}),
            "proposals_page": loaded.get("proposals", {}),
            "errors": loaded["errors"], "first_errors": loaded["first_errors"],
            "pages_requests_per_s": round(sum(loaded.get(k, {}).get("requests", 0)
                                              for k in ("datasets", "proposals"))
                                          / loaded["seconds"], 1),
            "p95_target_ms": TARGET_P95_MS, "worst_p95_ms": worst,
            "p95_ratio": round(worst / anchor["static"]["p95_ms"], 2)
            if anchor.get("static") else None,
            "meets_target": worst <= TARGET_P95_MS and loaded["errors"] == 0,
            "machine": f"{os.cpu_count()} cores",
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


def _wait_up(url: str, server: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}"
                             if server.stderr else "the server exited")
        try:
            if httpx.get(url + "/static/app.css", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start in 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="a small index and 3 s phases (CI)")
    ap.add_argument("--datasets", type=int, default=100)
    ap.add_argument("--proposals", type=int, default=10_000)
    ap.add_argument("--comments", type=int, default=1_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--spread", choices=("hot", "all"), default="hot",
                    help="hot: random pages of 50 datasets and 210 proposals; all: every "
                         "dataset and proposal page (a third of the requests to datasets)")
    ap.add_argument("--page-cache-ttl", type=float, default=10.0,
                    help="the server's page cache for anonymous visitors (0: off)")
    args = ap.parse_args()
    if args.quick:
        args.datasets, args.proposals, args.comments = 10, 400, 100
        args.seconds = min(args.seconds, 3.0)
    result = run(args.datasets, args.proposals, args.comments, args.clients, args.seconds,
                 args.page_cache_ttl, args.spread)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "web_load.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
        return
    print(f"index: {result['index']} (seeded in {result['seed_s']} s)")
    cache = f"page cache {args.page_cache_ttl:g} s" if args.page_cache_ttl else "page cache off"
    print(f"{args.clients} clients, {args.seconds:g} s a phase, {cache}, "
          f"{result['distinct_pages']} distinct pages ({args.spread})")
    for label, key in (("anchor GET /static/app.css", "anchor_static"),
                       ("GET /datasets/{name}", "datasets_page"),
                       ("GET /proposals/{id}", "proposals_page")):
        r = result[key]
        if r:
            print(f"  {label:28s} p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms  "
                  f"p99 {r['p99_ms']:7.2f} ms  {r['requests_per_s']:7.1f} req/s")
    print(f"worst page p95 {result['worst_p95_ms']} ms (target ≤ {TARGET_P95_MS:g} ms): "
          f"{'met' if result['meets_target'] else 'MISSED'}; ratio to the anchor's p95 "
          f"{result['p95_ratio']}; errors {result['errors']}")


if __name__ == "__main__":
    main()
