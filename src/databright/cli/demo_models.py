"""The demo after curation: a model trained on the dataset pays its shareholders, and so does
every prediction served from it."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from databright.cli.demo_data import render_png
from databright.home import Home
from databright.market import money
from databright.market.context import Deployment
from databright.market.units import format_wei, parse_wei

PRICE = parse_wei("0.005eth")
ROYALTY_BPS = 3_000
PREDICTIONS = 100


def query_images(folder: Path, seed: int = 7) -> tuple[list[Path], list[int]]:
    """100 digits no participant contributed (after the demo's pools), unlabeled PNG files."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))[1130:1130 + PREDICTIONS]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in order:
        path = folder / f"query-{i:04d}.png"
        render_png(digits.data[i], path)
        paths.append(path)
    return paths, [int(digits.target[i]) for i in order]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def buy_predictions(root: Path, acct: dict, model_id: int, say: Any) -> dict[str, Any]:
    """frank serves the model over HTTP on 127.0.0.1; erin buys 100 predictions through one
    channel; stopping the server closes the channel (royalty → shareholders, rest → frank)."""
    import uvicorn

    from databright.market.predict_client import predict_files
    from databright.market.predictions import PredictionService
    from databright.web.predict_server import create_app

    paths, truth = query_images(root / "demo-inputs" / "erin-queries")
    service = PredictionService.load(Home(root), model_id, acct["frank"])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-prediction-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the demo's prediction server did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    say(f"• frank serves model #{model_id} at {url}")
    t = time.perf_counter()
    try:
        got = predict_files(Home(root), acct["erin"], model_id, paths, url=url,
                            deposit=PRICE * PREDICTIONS)
    finally:
        server.should_exit = True  # shutdown closes every channel with its highest voucher
        thread.join(timeout=60)
    seconds = time.perf_counter() - t
    correct = sum(p["label"] == str(y) for p, y in zip(got.predictions, truth))
    say(f"• erin opens channel #{got.channel_id} with {format_wei(got.deposit)} and buys "
        f"{len(got.predictions)} predictions in {seconds:.1f}s, paying with signed vouchers "
        f"({format_wei(got.charged)} in all; {correct} of {len(truth)} labels right)")
    return {"channel_id": got.channel_id, "predictions": len(got.predictions),
            "correct": correct, "charged_wei": got.charged, "seconds": round(seconds, 2)}


def closed_channel(dep: Deployment, channel_id: int, say: Any) -> dict[str, int]:
    """How the channel was split when the server closed it (from the chain)."""
    closes = [e["args"] for e in dep.registry.logs("ChannelClosed")
              if int(e["args"]["channel_id"]) == channel_id]
    if not closes:
        raise RuntimeError(f"the prediction server left channel #{channel_id} open")
    c = closes[0]
    say(f"• the server closed channel #{channel_id} on shutdown: {format_wei(c['royalty'])} "
        f"royalty to the shareholders, {format_wei(c['payee_amount'])} to frank, "
        f"{format_wei(c['refund'])} back to erin")
    return {"royalty_wei": int(c["royalty"]), "owner_wei": int(c["payee_amount"]),
            "refund_wei": int(c["refund"])}


def withdraw_all(dep: Deployment, acct: dict, people: dict[str, str], say: Any) -> dict[str, int]:
    withdrawn: dict[str, int] = {}
    for name in people:
        if money.pending(dep, acct[name].address).total_wei:
            out = money.withdraw(dep, acct[name])
            say(f"  {name} withdraws {format_wei(out.total_wei)} "
                f"({', '.join(p.kind for p in out.paid)})")
            withdrawn[name] = out.total_wei
    return withdrawn
