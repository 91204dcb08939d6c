"""The embedded chain's persistence, clock, crash safety and locking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

from databright.chain.embedded import faucet_account
from databright.chain.lock import ChainLock
from databright.chain.provider import open_chain
from databright.errors import ChainBusyError
from databright.home import Config, Home

WORKER = Path(__file__).resolve().parent / "embedded_worker.py"


def _worker(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, str(WORKER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout


def test_reopen_in_same_process_keeps_state(tmp_path: Path) -> None:
    home = Home(tmp_path)
    someone = Account.create().address
    with open_chain(home, Config()) as chain:
        chain.fund(someone, 777)
        height = chain.block_number()
    with open_chain(home, Config()) as chain:
        assert chain.block_number() == height
        assert chain.balance(someone) == 777
        chain.fund(someone, 1)  # and it keeps going from there
        assert chain.block_number() == height + 1
        assert chain.balance(someone) == 778


def test_new_process_sees_the_state(tmp_path: Path) -> None:
    someone = Account.create().address
    with open_chain(Home(tmp_path), Config()) as chain:
        chain.fund(someone, 4242)
        height, now = chain.block_number(), chain.now()
    seen = json.loads(_worker("inspect", str(tmp_path), someone))
    assert seen["block"] == height and seen["now"] == now
    assert seen["balances"] == [4242]


def test_advanced_time_persists_and_keeps_flowing(tmp_path: Path) -> None:
    home = Home(tmp_path)
    with open_chain(home, Config()) as chain:
        start = chain.now()
        stamp = chain.advance_time(86_400)
        assert stamp >= start + 86_400
    with open_chain(home, Config()) as chain:
        assert chain.now() == stamp
        chain.fund(Account.create().address, 1)
        assert stamp < chain.now() <= stamp + 5  # the offset survived: no jump back to wall time


def test_lock_blocks_a_second_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(tmp_path), "30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waited: list[str | None] = []
        t0 = time.monotonic()
        with pytest.raises(ChainBusyError) as info:
            open_chain(Home(tmp_path), Config(), lock_timeout=0.5, on_wait=waited.append)
        assert time.monotonic() - t0 >= 0.5
        message = str(info.value)
        assert "is busy (held by another DataBright process" in message
        assert "retry when it is done, or raise DATABRIGHT_LOCK_TIMEOUT" in message
        assert f"pid {holder.pid}" in message
        assert len(waited) == 1 and waited[0] is not None and f"pid {holder.pid}" in waited[0]
    finally:
        holder.kill()
        holder.wait()
    with open_chain(Home(tmp_path), Config(), lock_timeout=5) as chain:  # free again
        assert chain.block_number() == 0


def test_lock_blocks_a_second_open_in_process(tmp_path: Path) -> None:
    with open_chain(Home(tmp_path), Config()), pytest.raises(ChainBusyError):
        open_chain(Home(tmp_path), Config(), lock_timeout=0.2)


def test_lock_timeout_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRIGHT_LOCK_TIMEOUT", "0.3")
    assert ChainLock(tmp_path).timeout == 0.3
    with ChainLock(tmp_path) as lock:
        assert lock.is_locked
        with pytest.raises(ChainBusyError):
            ChainLock(tmp_path).acquire()
    assert not lock.is_locked


def _check_consistent(home: Home) -> int:
    """Headers chain back to genesis, state matches blocks; returns the head number."""
    with open_chain(home, Config()) as chain:
        w3 = chain.w3
        head = chain.block_number()
        parent = None
        txs = 0
        for number in range(head + 1):
            block = w3.eth.get_block(number)
            if parent is not None:
                assert block["parentHash"] == parent
            parent = block["hash"]
            txs += len(block["transactions"])
        # every transaction in the blocks, and none other, moved the faucet's nonce
        assert w3.eth.get_transaction_count(faucet_account().address) == txs
        chain.fund(Account.create().address, 1)  # and the chain goes on
        assert chain.block_number() == head + 1
        return head


def test_crash_while_mining_leaves_a_block_boundary(tmp_path: Path) -> None:
    """Three SIGKILLs at different points of a mining process, on the same home."""
    head = 0
    for extra_blocks, pause in ((40, 0.0), (13, 0.003), (27, 0.011)):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), "churn", str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        printed = head
        deadline = time.monotonic() + 60
        while printed < head + extra_blocks and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip():
                printed = int(line)
        time.sleep(pause)  # land the kill at another point of the block cycle
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert printed >= head + extra_blocks
        head = _check_consistent(Home(tmp_path))
        assert head >= printed  # every block it reported as committed is there


@pytest.mark.slow
def test_reopen_10k_blocks_under_two_seconds(tmp_path: Path) -> None:
    home = Home(tmp_path)
    someone = Account.create().address
    with open_chain(home, Config()) as chain:
        chain.fund(someone, 99)
        t0 = time.perf_counter()
        chain.embedded.mine_empty_blocks(10_000)  # type: ignore[union-attr]
        built = time.perf_counter() - t0
        height = chain.block_number()
    assert height >= 10_000
    t0 = time.perf_counter()
    with open_chain(home, Config()) as chain:
        assert chain.block_number() == height
        assert chain.balance(someone) == 99
        reopened_in = time.perf_counter() - t0
    seen = json.loads(_worker("inspect", str(tmp_path), someone))
    assert seen["block"] == height and seen["balances"] == [99]
    print(f"\n10k blocks: built in {built:.1f} s, reopened in {reopened_in * 1000:.1f} ms")
    assert reopened_in < 2.0


def test_estimates_see_the_advanced_clock(tmp_path: Path) -> None:
    """After advance_time, a deadline passed in real time is past for the estimate too."""
    from databright.chain.compile import compile_file
    from databright.chain.deploy import deploy_contract

    probe = compile_file(Path(__file__).resolve().parent / "contracts" / "Probe.vy")
    with open_chain(Home(tmp_path), Config()) as chain:
        chain.advance_time(10 * 86_400)
        faucet = faucet_account()
        address = deploy_contract(chain, probe, faucet, 2)  # deadline: 2 s from now
        contract = chain.w3.eth.contract(address=address, abi=probe.abi)
        time.sleep(3.1)  # real time, no new block meanwhile
        chain.send(contract.functions.after_deadline(), faucet)
        assert chain.call(contract.functions.counter()) == 100


def test_close_from_another_thread_releases_the_lock(tmp_path: Path) -> None:
    import threading

    chain = open_chain(Home(tmp_path), Config())
    closer = threading.Thread(target=chain.close)
    closer.start()
    closer.join()
    with open_chain(Home(tmp_path), Config(), lock_timeout=0.5):
        pass


def test_market_state_seen_by_a_new_process(tmp_path: Path) -> None:
    """Deploy, create, propose and vote in this process; a new process sees all of it."""
    from databright.chain.data_market import DataMarket
    from databright.chain.deploy import deploy_market

    home = Home(tmp_path)
    with open_chain(home, Config()) as chain:
        alice, bob = Account.create(), Account.create()
        chain.fund(alice.address, 10**21)
        chain.fund(bob.address, 10**21)
        market = DataMarket(chain, deploy_market(chain, alice)["DataMarket"])
        dataset_id, _ = market.create_dataset(
            alice,
            name="persisted",
            symbol="PER",
            card_cid="bafkreicard",
            seed_cid="bafkreiseed",
            seed_root=b"\x01" * 32,
            seed_count=10,
            quorum_bps=9000,
            approval_bps=9000,
            voting_period=3600,
            stake=10**16,
            reward_r0=10**18,
            reward_n0=100,
        )
        proposal_id, _ = market.propose(bob, dataset_id, "bafkreimanifest", b"\x02" * 32, 5)
        weight, _ = market.vote(alice, proposal_id, True)
        height = chain.block_number()
    seen = json.loads(_worker("market", str(tmp_path), market.address, alice.address))
    assert seen == {
        "block": height,
        "datasets": 1,
        "name": "persisted",
        "status": "open",
        "yes": weight,
        "voted": [True, True, weight],
        "supply": weight,
    }


def test_using_a_closed_chain_says_so(tmp_path: Path) -> None:
    from databright.errors import ChainError

    chain = open_chain(Home(tmp_path), Config())
    w3 = chain.w3
    chain.close()
    chain.close()  # idempotent
    with pytest.raises(ChainError, match="closed"):
        w3.eth.block_number  # noqa: B018
