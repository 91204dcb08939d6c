"""The provider on both chains: send path, reverts, funds, clock, faucet (a tiny Probe contract)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from databright.chain.compile import compile_file
from databright.chain.deploy import deploy_contract
from databright.chain.provider import Chain, connect_url
from databright.errors import (
    ChainUnreachableError,
    ContractRevert,
    DevChainOnlyError,
    InsufficientFundsError,
    UsageError,
)

PROBE = Path(__file__).resolve().parent / "contracts" / "Probe.vy"


@pytest.fixture
def probe(chain: Chain, new_account: Callable[..., LocalAccount], compile_cache: Path):  # type: ignore[no-untyped-def]
    compiled = compile_file(PROBE, compile_cache)
    owner = new_account()
    address = deploy_contract(chain, compiled, owner, 3600)
    return chain.w3.eth.contract(address=address, abi=compiled.abi), owner


def test_send_returns_receipt_and_state_changes(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, owner = probe
    receipt = chain.send(contract.functions.bump(10), owner)
    assert receipt["status"] == 1
    assert chain.call(contract.functions.counter()) == 1
    events = contract.events.Bumped().process_receipt(receipt)
    assert events[0]["args"]["counter"] == 1
    assert events[0]["args"]["by"] == owner.address


def test_nonces_follow_consecutive_sends(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, owner = probe
    for _ in range(5):
        chain.send(contract.functions.bump(10), owner)
    assert chain.call(contract.functions.counter()) == 5


def test_revert_reason_becomes_contract_revert(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, owner = probe
    with pytest.raises(ContractRevert) as info:
        chain.send(contract.functions.bump(0), owner)
    assert info.value.reason == "probe: limit reached"
    assert "probe: limit reached" in str(info.value)
    with pytest.raises(ContractRevert) as info:
        chain.send(contract.functions.pay(), owner, value=2)
    assert info.value.reason == "probe: wrong value"
    chain.send(contract.functions.pay(), owner, value=1)


def test_revert_in_view_call(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, _owner = probe
    with pytest.raises(ContractRevert, match="probe: limit reached"):
        chain.call(contract.functions.bump(0))


def test_mined_revert_is_replayed_for_its_reason(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, owner = probe
    with pytest.raises(ContractRevert) as info:
        chain.send(contract.functions.bump(0), owner, gas=200_000)  # skips the estimate
    assert info.value.reason == "probe: limit reached"


def test_insufficient_funds(chain: Chain, probe, new_account) -> None:  # type: ignore[no-untyped-def]
    contract, _ = probe
    poor = new_account(0)
    with pytest.raises(InsufficientFundsError):
        chain.send(contract.functions.bump(10), poor)
    rich_enough_for_gas = new_account(10**16)
    with pytest.raises(InsufficientFundsError):
        chain.send({"to": contract.address}, rich_enough_for_gas, value=10**20)


def test_fund_and_balance(chain: Chain) -> None:
    someone = Account.create().address
    chain.fund(someone, 12345)
    chain.fund(someone, 5)
    assert chain.balance(someone) == 12350


def test_advance_time_moves_block_timestamp(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, owner = probe
    assert chain.supports_time_travel
    with pytest.raises(ContractRevert, match="probe: too early"):
        chain.send(contract.functions.after_deadline(), owner)
    before, height = chain.now(), chain.block_number()
    stamp = chain.advance_time(3600)
    assert stamp >= before + 3600
    assert chain.now() == stamp and chain.block_number() == height + 1
    chain.send(contract.functions.after_deadline(), owner)
    assert chain.call(contract.functions.counter()) == 100
    with pytest.raises(UsageError):
        chain.advance_time(-1)


def test_block_time_follows_the_wall_clock(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, owner = probe
    chain.send(contract.functions.bump(10), owner)
    assert chain.now() >= int(time.time()) - 2


def test_chain_id_and_kind(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    from databright.chain.embedded import CHAIN_ID

    assert chain.chain_id == (CHAIN_ID if chain.is_embedded else 31337)  # anvil's default
    assert chain.is_embedded == (chain.url == "embedded")
    contract, owner = probe
    height = chain.block_number()
    receipt = chain.send(contract.functions.bump(10), owner)
    # both nodes mine each transaction in its own block, at once
    assert receipt["blockNumber"] == height + 1 == chain.block_number()


def test_unreachable_url() -> None:
    with pytest.raises(ChainUnreachableError, match="cannot reach the chain at URL: http://127"):
        connect_url("http://127.0.0.1:9", timeout=2)
    with pytest.raises(UsageError):
        connect_url("ws://127.0.0.1:9")


def test_real_network_refuses_dev_helpers(chain: Chain) -> None:
    chain_copy = Chain(chain.w3, "http://example.invalid")  # looks like an unknown real node
    with pytest.raises(DevChainOnlyError):
        chain_copy.advance_time(10)
    with pytest.raises(DevChainOnlyError):
        chain_copy.fund(Account.create().address, 1)


def test_blueprint_deploy(chain: Chain, new_account, compile_cache: Path) -> None:  # type: ignore[no-untyped-def]
    from databright.chain.deploy import deploy_blueprint

    compiled = compile_file(PROBE, compile_cache)
    address = deploy_blueprint(chain, compiled, new_account())
    code = bytes(chain.w3.eth.get_code(address))
    assert code.startswith(bytes.fromhex("fe7100"))


def test_threads_share_one_chain(chain: Chain, probe, new_account) -> None:  # type: ignore[no-untyped-def]
    import threading

    contract, _ = probe
    senders = [new_account() for _ in range(3)]
    errors: list[BaseException] = []

    def work(sender: LocalAccount) -> None:
        try:
            for _ in range(4):
                chain.send(contract.functions.bump(1000), sender)
                chain.call(contract.functions.counter())
                chain.now()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert chain.call(contract.functions.counter()) == 12


@pytest.mark.anvil
def test_node_going_away_and_chain_id_mismatch(anvil_url: str, tmp_path: Path) -> None:
    import subprocess

    from databright.chain.provider import open_chain
    from databright.errors import ConfigError
    from databright.home import Config, Home

    from .conftest import _free_port, _wait_ready, anvil_binary

    with pytest.raises(ConfigError, match="set up on chain id 1"):
        open_chain(Home(tmp_path), Config(chain=anvil_url, chain_id=1))
    port = _free_port()
    proc = subprocess.Popen(
        [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        chain = open_chain(Home(tmp_path), Config(chain=url))
        assert chain.dev_node == "anvil" and not chain.is_embedded
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(ChainUnreachableError, match=f"cannot reach the chain at URL: {url}"):
        chain.block_number()


def test_next_block_time_follows_the_clock(chain: Chain, probe) -> None:  # type: ignore[no-untyped-def]
    contract, owner = probe
    stamp = chain.advance_time(1000)
    ahead = chain.next_block_time()
    assert ahead > stamp
    time.sleep(1.1)
    assert chain.next_block_time() >= ahead
    receipt = chain.send(contract.functions.bump(10), owner)
    mined = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert ahead <= mined <= chain.next_block_time()
