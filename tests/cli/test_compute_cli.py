"""The compute market's commands: coordinator show/verify, worker register/leave/withdraw-stake,
compute workers — each refusing bad input with its reason (jobs: tests/market)."""

from __future__ import annotations

import pytest

from databright.home import Home
from databright.market.context import Deployment
from tests.cli.conftest import PASSWORD, Cli
from tests.market.predict_world import RunningServer


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cli = Cli(tmp_path_factory.mktemp("ccli") / "home")
    cli("init")
    for name in ("ops", "w1", "w2"):
        cli("account", "new", name, "--fast-kdf")
    return cli


@pytest.fixture(scope="module")
def service(world):
    from databright.web.coordinator_service import CoordinatorService

    assert world("coordinator", "show")["registered"] is False
    with Deployment(world.home) as dep:
        ops = dep.keystore.unlock("ops", PASSWORD)
    return CoordinatorService(Home(world.home), ops)  # registers the coordinator


def test_the_coordinator_is_registered_with_its_evidence(world, service):
    shown = world("coordinator", "show")
    assert shown["registered"] and shown["kind"] == "software"
    assert shown["enclave"] == service.coordinator.address
    assert shown["operator"] == world("account", "show", "ops")["address"]


def test_verify_by_address_follows_the_policy(world, service, tmp_path):
    enclave = service.coordinator.address
    ok = world("coordinator", "verify", enclave)
    assert ok["ok"] and ok["kind"] == "software" and ok["source"] == "chain"
    refused = world("coordinator", "verify", enclave, "--no-allow-simulated", code=1,
                    json_out=False)
    assert "REFUSED" in refused.stdout and "simulated" in refused.stdout
    policy = tmp_path / "policy.json"
    policy.write_text('{"allow_simulated": true, "allowed_measurements": ["' + "0" * 64 + '"]}')
    other = world("coordinator", "verify", enclave, "--policy", str(policy), code=1,
                  json_out=False)
    assert "measurement" in other.stdout  # the code measured is not the one allowed
    unknown = world("coordinator", "verify", "0x" + "11" * 20, code=1, json_out=False)
    assert "not a registered coordinator" in unknown.stdout
    bad = world("coordinator", "verify", "nonsense", code=2, json_out=False)
    assert "URL" in bad.stderr


def test_verify_a_live_coordinator_with_a_fresh_nonce(world, service):
    with RunningServer(service.app()) as server:
        ok = world("coordinator", "verify", server.url)
    assert ok["ok"] and ok["enclave"] == service.coordinator.address
    assert "registered on chain as software" in ok["detail"]
    gone = world("coordinator", "verify", server.url, code=2, json_out=False)
    assert "cannot reach" in gone.stderr


def test_workers_register_leave_and_take_their_stake_back(world, service):
    enclave = service.coordinator.address
    reg = world("worker", "register", "--coordinator", enclave, "--min-fee", "2000gwei",
                as_="w1")
    assert reg["coordinator"] == enclave and reg["min_fee"] == 2 * 10**12
    again = world("worker", "register", "--coordinator", enclave, as_="w1", code=7,
                  json_out=False)
    assert "already a worker" in again.stderr
    low = world("worker", "register", "--coordinator", enclave, "--stake", "1wei", as_="w2",
                code=7, json_out=False)
    assert "minimum" in low.stderr
    listed = {w["account"]: w for w in world("compute", "workers")}
    w1 = world("account", "show", "w1")["address"]
    assert listed[w1]["status"] == "active" and listed[w1]["coordinator"] == enclave
    early = world("worker", "withdraw-stake", as_="w1", code=7, json_out=False)
    assert "unregister first" in early.stderr
    world("worker", "leave", as_="w1")
    locked = world("worker", "withdraw-stake", as_="w1", code=7, json_out=False)
    assert "locked" in locked.stderr or "cool-down" in locked.stderr
    world("dev", "advance", "2h")
    back = world("worker", "withdraw-stake", as_="w1")
    assert int(back["amount_wei"]) == reg["stake"]
    assert w1 not in {w["account"] for w in world("compute", "workers", "--coordinator", enclave)
                      if w["status"] == "active"}
