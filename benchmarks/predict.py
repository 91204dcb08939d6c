"""Paid predictions: what the voucher checks cost the server, and what a channel saves in gas.

One run, one fresh home on the embedded chain: a digits dataset, models trained on it,
registered and attested. Then:

* **Throughput.** Three prediction servers of a model, each its own process (uvicorn on
  127.0.0.1, real HTTP with keep-alive): one checking vouchers (EIP-712 recovery, the channel
  rule, a durable SQLite commit of the highest voucher per request), one with the checks off
  (the anchor), and one checking vouchers without an fsync per voucher (``--voucher-sync
  normal``). ``--requests`` requests of 1 image each (all different, so no embedding cache
  helps) go to each, alternating blocks of 50 so drift hits all alike; the vouchers are signed
  before the clock starts, so the figure is the server's. ``voucher_overhead`` = 1 − paid rate /
  free rate (target ≤ 0.10), for the small CNN (16 × 16 inputs: the cheapest model, where the
  checks weigh most) and, with ``--pretrained``, EfficientNet-Lite0 with a trained head.
* **Gas.** 1,000 predictions paid through one channel: ``open_channel`` + ``close`` with the
  voucher for 1,000 × price (receipts' ``gasUsed``), against 1,000 separate on-chain payments,
  each a plain ETH transfer (21,000 gas, the cheapest payment there is; ``--transfers`` of them
  are sent and their gas scaled to 1,000). ``gas_ratio`` = channel gas / transfers' gas (target
  ≤ 0.02). The two ``withdraw`` calls that pull the owner's and the payer's credit are reported
  apart (``gas_ratio_with_withdrawals``), and so is one ``ShareToken.distribute`` per prediction
  (another anchor: paying the shareholders directly each time).

Usage: ``python benchmarks/predict.py [--json] [--quick] [--requests N] [--transfers N]``;
writes the JSON to ``benchmarks/results/predict.json`` as well.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

PASSWORD = "bench"
PRICE = 10**12
FEE = 10**15
ROYALTY_BPS = 3_000
PREDICTIONS = 1_000  # the gas comparison's count
BLOCK = 50  # requests per block when alternating between the servers
CONFIGS: dict[str, dict[str, Any]] = {"small-cnn": {"epochs": 4, "size": 16},
                                      "efficientnet-head": {"epochs": 20}}
#: server modes: voucher checks off (the anchor), on with an fsync per voucher, on without
MODES = ("free", "full", "normal")


def _records(folder: Path) -> list[Any]:
    from databright.storage.cid import cid_of_bytes
    from databright.training import Record

    def loader(data: bytes) -> Any:
        return lambda: data

    return [Record(cid_of_bytes(p.read_bytes()), p.parent.name, "image/png",
                   loader(p.read_bytes())) for p in sorted(folder.rglob("*.png"))]


def _folder(root: Path, start: int, count: int) -> Path:
    import numpy as np
    from sklearn.datasets import load_digits

    from databright.cli.demo_data import write_folder

    d = load_digits()
    names = [f"d{start + i:04d}" for i in range(count)]
    return write_folder(root, d.data[start:start + count], np.asarray(d.target[start:start + count]),
                        names)


def build(home_dir: Path, families: list[str]) -> dict[str, Any]:
    """The home: dataset, one trained + registered + attested model per family, a consumer."""
    from databright.chain.model_registry import sign
    from databright.home import Home
    from databright.market import Deployment, Rules, datasets, deployment
    from databright.training.api import train_dataset

    home = Home(home_dir)
    deployment.init_home(home)
    with Deployment(home) as dep:
        for name in ("alice", "dev", "consumer"):
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
        acc = {n: dep.keystore.unlock(n, PASSWORD) for n in ("alice", "dev", "consumer")}
        seed = _folder(home_dir.parent / "seed", 0, 60)
        datasets.create_dataset(dep, acc["alice"], "digits", seed,
                                rules=Rules(voting_period=3600, evaluator="alice",
                                            training_fee=FEE, min_royalty_bps=2_000))
        ds_id = datasets.dataset_id(dep, "digits")
        val = _folder(home_dir.parent / "val", 60, 20)
        models = {}
        for family in families:
            config = CONFIGS.get(family, {})
            result = train_dataset(_records(seed), _records(val), family, config,
                                   store=dep.store)
            assert result.cid and result.sha256
            model_id, _ = dep.registry.register(acc["dev"], ds_id, f"digits-{family}",
                                                result.checkpoint.program_digest, PRICE,
                                                ROYALTY_BPS, value=FEE)
            att = dep.registry.attestation(model_id, result.sha256, 1, result.accuracy_bps)
            dep.registry.submit_checkpoint(acc["dev"], model_id, result.cid, result.sha256, 1,
                                           result.accuracy_bps, sign(att, acc["alice"]),
                                           value=FEE)
            models[family] = model_id
        return {"models": models, "dataset_id": ds_id}


def serve(home: str, model_id: int, port: int, mode: str) -> None:
    """The server process (``--serve``)."""
    import uvicorn

    from databright.market.predictions import PredictionService
    from databright.web.predict_server import create_app

    with_key, paid = None, mode != "free"
    if paid:
        from databright.market import Deployment

        with Deployment(home) as dep:
            with_key = dep.keystore.unlock("dev", PASSWORD)
    service = PredictionService.load(home, model_id, with_key, require_payment=paid,
                                     sync="full" if mode == "free" else mode)
    uvicorn.run(create_app(service, close_on_shutdown=False), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(home: Path, model_id: int, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(home), str(model_id),
                             str(port), mode],
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/model", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("a prediction server did not start")


def distinct_images(count: int) -> list[bytes]:
    """``count`` different PNGs (digits, two corner pixels numbering them): no server may answer
    from its embedding cache."""
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits().data
    out = []
    for i in range(count):
        pixels = (255 - data[i % len(data)].reshape(8, 8) * 255.0 / 16.0).astype(np.uint8)
        img = np.asarray(Image.fromarray(pixels, mode="L").resize((32, 32))).copy()
        img[0, 0], img[0, 1] = i % 256, i // 256 % 256
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def throughput(home: Path, model_id: int, requests: int, items: int = 1) -> dict[str, Any]:
    import httpx

    from databright.chain.model_registry import Voucher, sign
    from databright.market import Deployment, channels
    from databright.market.predictions import VOUCHER_HEADER

    def headers_for() -> list[dict[str, str]]:
        with Deployment(home) as dep:
            consumer = dep.keystore.unlock("consumer", PASSWORD)
            ch = channels.open_channel(dep, consumer, model_id, PRICE * items * (requests + 1))
        out = []
        for i in range(requests + 1):  # the first one warms up
            v = Voucher(ch.chain_id, ch.registry, ch.channel_id, PRICE * items * (i + 1))
            out.append({VOUCHER_HEADER: json.dumps({
                "chain_id": ch.chain_id, "registry": ch.registry, "channel_id": ch.channel_id,
                "amount": str(v.amount), "signature": "0x" + sign(v, consumer).hex()})})
        return out

    headers = {m: headers_for() if m != "free" else [{}] * (requests + 1) for m in MODES}
    images = distinct_images((requests + 1) * items)
    servers = {m: _start(home, model_id, m) for m in MODES}
    clients = {m: httpx.Client(base_url=url, timeout=120) for m, (_, url) in servers.items()}
    elapsed = dict.fromkeys(MODES, 0.0)
    sent = dict.fromkeys(MODES, 0)

    def post(mode: str) -> None:
        at = sent[mode] * items
        files = [("files", (f"x{j}.png", images[at + j], "image/png")) for j in range(items)]
        r = clients[mode].post("/predict", files=files, headers=headers[mode][sent[mode]])
        if r.status_code != 200:
            raise RuntimeError(f"{mode} server answered {r.status_code}: {r.text}")
        sent[mode] += 1

    try:
        for mode in MODES:  # warm up: the first channel read, the model, the connection
            post(mode)
        while any(sent[m] <= requests for m in MODES):
            for mode in MODES:
                block = min(BLOCK, requests + 1 - sent[mode])
                t = time.perf_counter()
                for _ in range(block):
                    post(mode)
                elapsed[mode] += time.perf_counter() - t
    finally:
        for c in clients.values():
            c.close()
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)
    rate = {m: requests * items / elapsed[m] for m in MODES}
    return {
        "requests": requests, "items_per_request": items,
        "predictions_per_s_free": round(rate["free"], 1),
        "predictions_per_s_paid": round(rate["full"], 1),
        "predictions_per_s_paid_sync_normal": round(rate["normal"], 1),
        "voucher_overhead": round(1 - rate["full"] / rate["free"], 4),
        "voucher_overhead_sync_normal": round(1 - rate["normal"] / rate["free"], 4),
        "ms_per_request": {m: round(1000 * items / rate[m], 3) for m in MODES},
    }


def gas(home: Path, world: dict[str, Any], transfers: int) -> dict[str, Any]:
    from databright.chain.model_registry import sign
    from databright.market import Deployment

    with Deployment(home) as dep:
        consumer = dep.keystore.unlock("consumer", PASSWORD)
        dev = dep.keystore.unlock("dev", PASSWORD)
        reg = dep.registry
        amount = PRICE * PREDICTIONS
        model_id = next(iter(world["models"].values()))
        channel_id, opened = reg.open_channel(consumer, model_id, 86_400, 2 * amount)
        _, closed = reg.close(dev, channel_id, amount, sign(reg.voucher(channel_id, amount),
                                                            consumer))
        _, w_dev = reg.withdraw(dev)
        _, w_payer = reg.withdraw(consumer)
        transfer_gas = [int(dep.chain.send({"to": dev.address}, consumer, value=PRICE)["gasUsed"])
                        for _ in range(transfers)]
        token = dep.token(reg.get_model(model_id).share_token)
        _, distributed = token.distribute(consumer, value=PRICE)
    channel = int(opened["gasUsed"]) + int(closed["gasUsed"])
    withdrawals = int(w_dev["gasUsed"]) + int(w_payer["gasUsed"])
    anchor = sum(transfer_gas) * PREDICTIONS // transfers
    return {
        "predictions": PREDICTIONS,
        "open_channel_gas": int(opened["gasUsed"]), "close_gas": int(closed["gasUsed"]),
        "withdraw_gas": withdrawals, "channel_gas": channel,
        "transfers_sent": transfers, "transfer_gas_each": transfer_gas[0],
        "transfers_gas": anchor,
        "gas_ratio": round(channel / anchor, 5), "gas_ratio_target": 0.02,
        "gas_ratio_with_withdrawals": round((channel + withdrawals) / anchor, 5),
        "distribute_gas_each": int(distributed["gasUsed"]),
        "gas_ratio_vs_distribute": round(channel / (int(distributed["gasUsed"]) * PREDICTIONS),
                                         5),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        _, _, home, model_id, port, mode = sys.argv
        serve(home, int(model_id), int(port), mode)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true",
                        help="100 requests, 20 transfers")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--pretrained", action="store_true",
                        help="also serve EfficientNet-Lite0 + a trained head (slow)")
    parser.add_argument("--pretrained-requests", type=int, default=30)
    parser.add_argument("--transfers", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16,
                        help="items per request of the batched run (the predict client sends "
                             "up to the server's max_items, 64, per request)")
    args = parser.parse_args()
    requests = args.requests or (100 if args.quick else 1_000)
    transfers = args.transfers or (20 if args.quick else 1_000)
    families = ["small-cnn"] + (["efficientnet-head"] if args.pretrained else [])
    tmp = Path(tempfile.mkdtemp(prefix="db-predict-bench-"))
    try:
        t0 = time.perf_counter()
        world = build(tmp / "home", families)
        setup = time.perf_counter() - t0
        runs = {f: throughput(tmp / "home", m,
                              requests if f == "small-cnn" else args.pretrained_requests)
                for f, m in world["models"].items()}
        batched = throughput(tmp / "home", world["models"]["small-cnn"],
                             max(10, requests // args.batch), args.batch)
        result: dict[str, Any] = {
            "throughput_batched": batched,
            "throughput": runs, "gas": gas(tmp / "home", world, transfers),
            "setup_s": round(setup, 1),
            "images": "distinct 32×32 grey digit PNGs, 1 per request (each model resizes)",
            "anchor_payment": "plain ETH transfer (21,000 gas each)",
            "voucher_overhead_target": 0.10, "gas_ratio_target": 0.02}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # the headline: the cheapest model (where the checks weigh most), each voucher fsynced
    result["voucher_overhead"] = runs["small-cnn"]["voucher_overhead"]
    result["gas_ratio"] = result["gas"]["gas_ratio"]
    result["voucher_overhead_batched"] = batched["voucher_overhead"]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "predict.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
        return 0
    g = result["gas"]
    print(f"{'figure':<52}{'measured':>14}{'target':>10}")
    for family, t in runs.items():
        print(f"{family + ': predictions/s, checks off (anchor)':<52}"
              f"{t['predictions_per_s_free']:>14}")
        print(f"{family + ': predictions/s, vouchers (fsync)':<52}"
              f"{t['predictions_per_s_paid']:>14}")
        print(f"{family + ': voucher_overhead':<52}{t['voucher_overhead']:>14.4f}{'≤ 0.10':>10}")
        print(f"{family + ': voucher_overhead, --voucher-sync normal':<52}"
              f"{t['voucher_overhead_sync_normal']:>14.4f}{'≤ 0.10':>10}")
    b = result["throughput_batched"]
    label = f"small-cnn, {b['items_per_request']} images a request"
    print(f"{label + ': voucher_overhead':<52}{b['voucher_overhead']:>14.4f}{'≤ 0.10':>10}")
    print(f"{label + ': overhead, --voucher-sync normal':<52}"
          f"{b['voucher_overhead_sync_normal']:>14.4f}{'≤ 0.10':>10}")
    print(f"{'gas: open_channel + close':<52}{g['channel_gas']:>14,}")
    print(f"{'gas: 1,000 ETH transfers (anchor)':<52}{g['transfers_gas']:>14,}")
    print(f"{'gas_ratio':<52}{g['gas_ratio']:>14.5f}{'≤ 0.02':>10}")
    print(f"{'gas_ratio with the two withdrawals':<52}{g['gas_ratio_with_withdrawals']:>14.5f}")
    print(f"{'gas_ratio vs 1,000 distribute() calls':<52}{g['gas_ratio_vs_distribute']:>14.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
