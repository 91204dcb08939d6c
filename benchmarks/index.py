"""Listings through the index against today's chain scan, same run, same chain.

Builds, on a fresh embedded chain, ``--datasets`` datasets (default 100) and ``--proposals``
proposals spread over them (default 10,000), each with its own manifest of ``--items`` synthetic
items in the blob store. The chain state is made by a lean loop: transactions signed locally with
a fixed gas limit and mined ``--per-block`` (default 10) to a block (py-evm rebuilds the pending
block for each added transaction, so larger blocks cost more; the CLI's send path estimates gas
and mines one block per transaction, ~30/s; the set-up time is reported apart). The proposers are
the ten funded dev accounts; the first also initiates every dataset, so it holds shares in all.

Then, timed (median of ``--repeats``):

* ``proposals --json`` and ``shares --json`` through the CLI (in-process: a warm interpreter,
  as the web server or a shell loop runs them), which sync the index first (nothing new) and
  read it; the first sync of the whole chain is timed apart;
* the same listings by today's chain scan (``get_proposal`` + ``get_dataset`` per proposal;
  ``get_dataset`` + five token views per dataset), the anchor;
* the duplicate check of a batch of ``--batch`` CIDs (half already accepted) in a dataset with
  1,000,000 accepted rows in the item table, counting blob and manifest reads (the rows are
  inserted directly: 1M items on chain would take hours here), and a whole ``propose`` of a
  small real batch into that dataset, with its manifest reads counted.

Usage: ``python benchmarks/index.py [--json] [--datasets N] [--proposals N] ...``; writes the
JSON to ``benchmarks/results/index.json`` as well.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

PASSWORD = "bench"
CREATE_GAS = 6_000_000  # deploys the dataset's ShareToken
PROPOSE_GAS = 400_000
COMMIT_GAS = 150_000
BLOCK_GAS = 28_000_000  # under the embedded chain's 30M block gas limit


def _timed(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _synthetic_items(rng: Any, count: int, tag: str) -> list:
    from databright.storage.cid import cid_of_bytes
    from databright.storage.manifest import Item

    return [Item(cid_of_bytes(rng.randbytes(32)), str(i % 10), 32, "application/octet-stream",
                 f"{tag}-{i}.bin") for i in range(count)]


class LeanSender:
    """Signs with a fixed gas limit and known nonces; mines ``per_block`` transactions a block."""

    def __init__(self, dep: Any, per_block: int) -> None:
        from eth_account import Account

        from databright.chain.embedded import genesis_keys

        self.dep = dep
        self.embedded = dep.chain.embedded
        # straight to the persisted py-evm backend: transactions go into the pending block,
        # one commit per mined block (eth-tester's own no-automine mode needs snapshots)
        self.backend = self.embedded.backend
        self.per_block = per_block
        self.keys = [Account.from_key(k.to_bytes()) for k in genesis_keys()]
        w3 = dep.chain.w3
        self.nonce = {a.address: w3.eth.get_transaction_count(a.address) for a in self.keys}
        self.pending = 0
        self.block_gas = 0

    def send(self, account: Any, to: str, data: str, gas: int, value: int = 0) -> bytes:
        if self.pending >= self.per_block or self.block_gas + gas > BLOCK_GAS:
            self.mine()
        tx = {"to": to, "data": data, "value": value, "gas": gas, "chainId": self.dep.chain.chain_id,
              "nonce": self.nonce[account.address], "maxFeePerGas": 50 * 10**9,
              "maxPriorityFeePerGas": 10**9, "type": 2}
        self.nonce[account.address] += 1
        raw = account.sign_transaction(tx).raw_transaction
        with self.embedded.mutex:
            tx_hash = self.backend.send_raw_transaction(bytes(raw))
        self.pending += 1
        self.block_gas += gas
        return bytes(tx_hash)

    def mine(self) -> None:
        if self.pending:
            with self.embedded.mutex:
                self.backend.mine_blocks(1)
            self.pending = self.block_gas = 0

    def close(self) -> None:
        self.mine()


def build(home: Path, datasets: int, proposals: int, items: int, per_block: int) -> dict:
    """The chain state and the store; returns the set-up figures."""
    import random

    rng = random.Random(8)
    t0 = time.perf_counter()
    # set-up only: the store's per-blob fsync would make writing 10,000 manifests take minutes
    real_fsync, os.fsync = os.fsync, lambda fd: None
    try:
        return _build(home, rng, t0, datasets, proposals, items, per_block)
    finally:
        os.fsync = real_fsync


def _build(home: Path, rng: Any, t0: float, datasets: int, proposals: int, items: int,
           per_block: int) -> dict:
    from databright.chain.data_market import commitment_of
    from databright.home import Home
    from databright.market import Deployment, deployment
    from databright.storage.manifest import write_manifest
    from databright.storage.merkle import merkle_root

    deployment.init_home(Home(home))
    figures: dict[str, Any] = {}
    with Deployment(home) as dep:
        sender = LeanSender(dep, per_block)
        initiator = sender.keys[0]
        dep.keystore.import_key("initiator", initiator.key.hex(), PASSWORD)
        market = dep.market
        write_s = 0.0
        for d in range(1, datasets + 1):
            t = time.perf_counter()
            seed = _synthetic_items(rng, items, f"seed{d}")
            val = _synthetic_items(rng, 3, f"val{d}")
            seed_cid, val_cid = write_manifest(dep.store, seed), write_manifest(dep.store, val)
            card = {"name": f"ds{d:03d}", "labels": [str(i) for i in range(10)],
                    "validation_manifest": val_cid, "seed_manifest": seed_cid}
            card_cid = dep.store.put_bytes(json.dumps(card, sort_keys=True).encode())
            write_s += time.perf_counter() - t
            data = market.contract.encode_abi("create_dataset", args=[
                f"ds{d:03d}", f"DS{d:03d}", card_cid, seed_cid, merkle_root(seed), len(seed),
                2_000, 5_000, 86_400, 0, 100 * 10**18, 10 * items, "0x" + "00" * 20, 0, 0])
            sent = sender.send(initiator, market.address, data, CREATE_GAS)
        sender.mine()
        _check(dep, sent, "create_dataset")
        batches = []
        for p in range(proposals):
            t = time.perf_counter()
            batch = _synthetic_items(rng, items, f"p{p}")
            cid = write_manifest(dep.store, batch)
            root = merkle_root(batch)
            write_s += time.perf_counter() - t
            proposer, ds = sender.keys[p % len(sender.keys)], 1 + p % datasets
            batches.append((proposer, ds, cid, root, len(batch)))
            # a proposal is revealed in a later block than its commitment
            commitment = commitment_of(proposer.address, ds, cid, root, len(batch))
            data = market.contract.encode_abi("commit", args=[ds, commitment])
            sent = sender.send(proposer, market.address, data, COMMIT_GAS)
        sender.mine()
        _check(dep, sent, "commit")
        for proposer, ds, cid, root, count in batches:
            data = market.contract.encode_abi("propose", args=[ds, cid, root, count])
            sent = sender.send(proposer, market.address, data, PROPOSE_GAS)
        sender.close()
        _check(dep, sent, "propose")
        figures["datasets"] = market.dataset_count()
        figures["proposals"] = market.proposal_count()
        figures["blocks"] = dep.chain.block_number()
        if (figures["datasets"], figures["proposals"]) != (datasets, proposals):
            raise SystemExit(f"set-up failed: {figures}")
        figures["setup_s"] = time.perf_counter() - t0
        figures["setup_manifests_s"] = write_s
        figures["shares_account"] = initiator.address
    return figures


def _check(dep: Any, tx_hash: bytes, what: str) -> None:
    receipt = dep.chain.w3.eth.get_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise SystemExit(f"set-up: {what} failed (gas used {receipt['gasUsed']})")


# -- today's chain scan (the anchor): what the listings did before the index --------------------
def scan_proposals(dep: Any) -> list[dict]:
    out = []
    for pid in range(1, dep.market.proposal_count() + 1):
        p = dep.market.get_proposal(pid)
        out.append({
            "id": pid, "dataset": dep.market.get_dataset(p.dataset_id).name,
            "proposer": p.proposer, "items": p.item_count, "status": p.status,
            "yes": p.yes, "no": p.no, "deadline": p.deadline,
        })
    return out


def scan_holdings(dep: Any, address: str) -> list[dict]:
    out = []
    for ds_id in range(1, dep.market.dataset_count() + 1):
        info = dep.market.get_dataset(ds_id)
        token = dep.token(info.share_token)
        balance = token.balanceOf(address)
        dividends = token.dividends_of(address)
        if balance or dividends:
            supply = token.totalSupply()
            out.append({"dataset": info.name, "balance": balance, "total_supply": supply,
                        "fraction": balance / supply if supply else 0.0,
                        "dividends_wei": dividends, "withdrawn_wei": token.withdrawn_of(address)})
    return out


def listings(home: Path, figures: dict, repeats: int) -> dict:
    from typer.testing import CliRunner

    from databright.cli.main import app
    from databright.market import Deployment
    from databright.market import sync as index_sync

    out: dict[str, Any] = {}
    with Deployment(home) as dep:
        t = time.perf_counter()
        first = index_sync.sync(dep)
        out["sync_initial_s"] = time.perf_counter() - t
        out["sync_initial_events"] = first.events
        t = time.perf_counter()
        index_sync.sync(dep)
        out["sync_nothing_new_s"] = time.perf_counter() - t

    runner = CliRunner()

    def cli(*args: str) -> dict:
        result = runner.invoke(app, [*args, "--home", str(home), "--json"])
        if result.exit_code != 0:
            raise SystemExit(f"databright {' '.join(args)} failed: {result.output}")
        return json.loads(result.stdout)

    cli("proposals")  # warm: imports, compiled ABI cache
    out["proposals_index_s"], listed = _timed(lambda: cli("proposals"), repeats)
    out["shares_index_s"], held = _timed(lambda: cli("shares", "--as", "initiator"), repeats)
    if len(listed["proposals"]) != figures["proposals"] or len(held["shares"]) != figures[
            "datasets"]:
        raise SystemExit("the index listings are incomplete")

    with Deployment(home) as dep:
        account = figures["shares_account"]
        out["proposals_scan_s"], _scanned = _timed(
            lambda: json.dumps({"proposals": scan_proposals(dep)}), 1)
        out["shares_scan_s"], _ = _timed(
            lambda: json.dumps({"shares": scan_holdings(dep, account)}), repeats)
    out["proposals_ratio"] = out["proposals_scan_s"] / out["proposals_index_s"]
    out["shares_ratio"] = out["shares_scan_s"] / out["shares_index_s"]
    return out


def duplicate_check(home: Path, rows: int, batch: int) -> dict:
    """1M accepted rows in one dataset's item table; time the check and a real propose."""
    import random

    from sqlalchemy import insert

    from databright.cli.demo_data import write_folder
    from databright.index.cache import ItemRow
    from databright.market import Deployment, proposals
    from databright.storage import manifest
    from databright.storage.cid import cid_of_bytes

    rng = random.Random(1)
    out: dict[str, Any] = {"items_rows": rows}
    with Deployment(home) as dep:
        ds_id = 1
        t = time.perf_counter()
        sample: list[str] = []
        with dep.index.session() as s:
            for start in range(0, rows, 50_000):
                chunk = [cid_of_bytes(rng.randbytes(16)) for _ in range(min(50_000, rows - start))]
                if not sample:
                    sample = chunk[: batch // 2]
                s.execute(insert(ItemRow), [{"dataset_id": ds_id, "cid": c, "proposal_id": 0,
                                             "state": "accepted"} for c in chunk])
        out["items_insert_s"] = time.perf_counter() - t
        fresh = [cid_of_bytes(rng.randbytes(16)) for _ in range(batch - len(sample))]
        reads = {"blob": 0, "manifest": 0}
        real_get, real_read = dep.store.get, manifest.read_manifest_table

        def counting_get(cid: str) -> bytes:
            reads["blob"] += 1
            return real_get(cid)

        def counting_read(store: Any, cid: str) -> Any:
            reads["manifest"] += 1
            return real_read(store, cid)

        dep.store.get = counting_get  # type: ignore[method-assign]
        manifest.read_manifest_table = counting_read
        try:
            out["dup_check_1m_s"], known = _timed(
                lambda: proposals.existing_cids(dep, ds_id, [*sample, *fresh]), 3)
            if known != set(sample):
                raise SystemExit("the duplicate check answered wrong")
            out["dup_check_batch"] = batch
            out["dup_check_blob_reads"] = reads["blob"]
            out["dup_check_manifest_reads"] = reads["manifest"]
            import numpy as np
            from sklearn.datasets import load_digits

            digits = load_digits()
            folder = write_folder(home.parent / "batch", digits.data[:20],
                                  np.asarray(digits.target[:20]), [f"b{i}" for i in range(20)])
            reads.update(blob=0, manifest=0)
            signer = dep.keystore.unlock("initiator", PASSWORD)
            t = time.perf_counter()
            made = proposals.propose(dep, signer, "ds001", folder)
            out["propose_1m_s"] = time.perf_counter() - t
            out["propose_1m_new_items"] = made.items
            out["propose_1m_manifest_reads"] = reads["manifest"]
        finally:
            dep.store.get = real_get  # type: ignore[method-assign]
            manifest.read_manifest_table = real_read
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=100)
    ap.add_argument("--proposals", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--per-block", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the home (printed as `home`)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "index.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="databright-bench-index-"))
    home = work / "home"
    os.environ.setdefault("DATABRIGHT_LOCK_TIMEOUT", "60")
    result: dict[str, Any] = {}
    try:
        result.update(build(home, args.datasets, args.proposals, args.items, args.per_block))
        result.update(listings(home, result, args.repeats))
        result.update(duplicate_check(home, args.rows, args.batch))
    finally:
        if args.keep:
            result["home"] = str(home)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["targets_met"] = bool(
        result["proposals_index_s"] < 0.3 and result["shares_index_s"] < 0.3
        and result["proposals_ratio"] >= 20 and result["shares_ratio"] >= 20
        and result["dup_check_manifest_reads"] == 0 and result["propose_1m_manifest_reads"] == 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:32} {shown}")


if __name__ == "__main__":
    main()
