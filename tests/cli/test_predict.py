"""`databright model serve` in its own process, `predict` and `channel open|list|close|reclaim`
from the CLI against it; Ctrl-C on the server closes its channels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Cli
from tests.market.predict_world import PASSWORD, PRICE, build_world, free_port

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    return build_world(tmp_path_factory.mktemp("cli-predict"), digit_folder)


def _cli(world):
    run = Cli(world.home.path)
    return lambda *args, **kw: run(*args, password=PASSWORD, **kw)


def _serve(world, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABRIGHT_PASSWORD": PASSWORD, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "databright.cli", "model", "serve", str(world.model_id),
         "--port", str(port), "--home", str(world.home.path), "--as", "dev"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/model", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not answer")


def test_predict_through_a_served_model_and_ctrl_c_closes_the_channel(world):
    cli = _cli(world)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(world, port)
    try:
        files = [str(p) for p in world.files[:3]]
        first = cli("predict", str(world.model_id), *files, "--url", url, "--deposit",
                    f"{20 * PRICE}wei", as_="consumer")
        assert [p["file"] for p in first["predictions"]] == [Path(f).name for f in files]
        assert all(p["label"] in [str(d) for d in range(10)] for p in first["predictions"])
        assert first["opened"] and first["charged"] == 3 * PRICE
        human = cli("predict", str(world.model_id), str(world.files[3]), "--url", url,
                    as_="consumer", json_out=False)
        assert world.files[3].name in human.stdout and "reused" in human.stdout
        listing = cli("channel", "list")
        (paying,) = [c for c in listing["paying"] if c["channel_id"] == first["channel_id"]]
        (received,) = [v for v in listing["received"] if v["channel_id"] == first["channel_id"]]
        assert paying["accepted"] == received["amount"] == 4 * PRICE
        assert received["status"] == "open"
    finally:
        server.send_signal(signal.SIGINT)
        _out, err = server.communicate(timeout=120)
    assert server.returncode == 0, err
    listing = cli("channel", "list")
    (paying,) = [c for c in listing["paying"] if c["channel_id"] == first["channel_id"]]
    (received,) = [v for v in listing["received"] if v["channel_id"] == first["channel_id"]]
    assert paying["status"] == received["status"] == "closed"
    with world.dep() as dep:
        assert dep.registry.get_channel(first["channel_id"]).status == "closed"


def test_predict_without_a_server_is_one_line_and_charges_nothing(world):
    cli = _cli(world)
    before = cli("channel", "list")
    result = cli("predict", str(world.model_id), str(world.files[0]), "--url",
                 f"http://127.0.0.1:{free_port()}", as_="consumer", code=14, json_out=False)
    assert result.stderr.startswith("error: cannot reach the prediction server")
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli("channel", "list") == before


def test_channel_open_close_and_reclaim_from_the_cli(world):
    cli = _cli(world)
    opened = cli("channel", "open", str(world.model_id), "--deposit", f"{5 * PRICE}wei",
                 "--timeout", "1h", as_="erin")
    ch = opened["channel_id"]
    assert opened["deposit"] == 5 * PRICE and opened["status"] == "open"
    too_early = cli("channel", "reclaim", str(ch), as_="erin", code=7, json_out=False)
    assert "expired" in too_early.stderr
    cli("dev", "advance", "2h")
    started = cli("channel", "reclaim", str(ch), as_="erin")
    assert started["status"] == "reclaiming" and started["reclaim_at"] > 0
    waiting = cli("channel", "reclaim", str(ch), as_="erin", code=7, json_out=False)
    assert "challenge" in waiting.stderr
    cli("dev", "advance", "2d")
    with world.dep() as dep:
        before = dep.registry.owed_of(world.accounts["erin"].address)
    done = cli("channel", "reclaim", str(ch), as_="erin")
    assert done == {"channel_id": ch, "status": "reclaimed", "reclaim_at": started["reclaim_at"],
                    "refund": 5 * PRICE}
    with world.dep() as dep:
        assert dep.registry.owed_of(world.accounts["erin"].address) - before == 5 * PRICE
    # the payee has no voucher for it: nothing to close with
    refused = cli("channel", "close", str(ch), as_="dev", code=3, json_out=False)
    assert "no voucher" in refused.stderr
    assert cli("channel", "close", "--all", as_="dev") == []
