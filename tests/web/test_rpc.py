"""The embedded chain's JSON-RPC endpoint, as a wallet uses it: the allow-listed reads, batches,
JSON-RPC errors, a signed transaction that stays on the chain after the server stops, and the
CLI that waits for the server holding the chain."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account

from databright.chain.provider import open_chain
from databright.home import Home
from databright.web.app import WebContext
from tests.cli.conftest import Cli
from tests.web.web_world import PASSWORD, Served

STRANGER = Account.create()


@pytest.fixture(scope="module")
def served(web_home):
    with Served(web_home.home, sync_seconds=0) as srv:
        yield srv


def call(client: httpx.Client, method: str, *params, rid=1):
    return client.post("/rpc", json={"jsonrpc": "2.0", "id": rid, "method": method,
                                     "params": list(params)}).json()


def test_reads_a_wallet_needs(served):
    c = served.client
    assert call(c, "eth_chainId")["result"] == hex(served.ctx.config.chain_id)
    assert call(c, "net_version")["result"].isdigit()
    head = int(call(c, "eth_blockNumber")["result"], 16)
    assert head > 0
    block = call(c, "eth_getBlockByNumber", hex(head), False)["result"]
    assert int(block["number"], 16) == head and block["hash"].startswith("0x")
    assert len(block["logsBloom"]) == 2 + 512 and "baseFeePerGas" in block
    market = served.ctx.config.contracts["DataMarket"]
    assert len(call(c, "eth_getCode", market, "latest")["result"]) > 100
    bob = served.ctx.dep.keystore.address_of("bob")
    assert int(call(c, "eth_getBalance", bob, "latest")["result"], 16) > 0
    assert call(c, "eth_getTransactionCount", bob, "latest")["result"].startswith("0x")
    assert int(call(c, "eth_gasPrice")["result"], 16) > 0
    assert int(call(c, "eth_maxPriorityFeePerGas")["result"], 16) > 0
    fees = call(c, "eth_feeHistory", "0x2", "latest", [])["result"]
    assert len(fees["baseFeePerGas"]) == 3 and fees["oldestBlock"].startswith("0x")
    # dataset_count() through eth_call
    count = call(c, "eth_call", {"to": market, "data": "0x" + _selector("dataset_count()")},
                 "latest")["result"]
    assert int(count, 16) == 1
    logs = call(c, "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head),
                                   "address": market})["result"]
    assert logs and all(log["address"] == market for log in logs)
    assert {log["blockNumber"] for log in logs} <= {hex(n) for n in range(head + 1)}
    missing = call(c, "eth_getTransactionReceipt", "0x" + "00" * 32)
    assert missing["result"] is None


def _selector(signature: str) -> str:
    from eth_utils import keccak

    return keccak(text=signature)[:4].hex()


def test_json_rpc_errors_and_batches(served):
    c = served.client
    assert call(c, "eth_sign", STRANGER.address, "0x00")["error"]["code"] == -32601
    assert call(c, "eth_sendTransaction", {})["error"]["code"] == -32601
    assert call(c, "evm_mine")["error"]["code"] == -32601
    assert call(c, "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(5000)})["error"][
        "code"] == -32602
    assert call(c, "eth_getLogs", "nope")["error"]["code"] == -32602
    assert c.post("/rpc", json={"id": 1, "method": "eth_chainId"}).json()["error"]["code"] \
        == -32600
    assert c.post("/rpc", content=b"{not json").json()["error"]["code"] == -32700
    batch = c.post("/rpc", json=[
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": "b", "method": "nope", "params": []},
        {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # a notification
    ]).json()
    assert [a["id"] for a in batch] == [1, "b"]
    assert "result" in batch[0] and batch[1]["error"]["code"] == -32601
    big = c.post("/rpc", content=b"[" + b" " * (600 * 1024) + b"]",
                 headers={"content-type": "application/json"})
    assert big.status_code == 413
    # a transaction that would revert is refused with the revert
    market = served.ctx.config.contracts["DataMarket"]
    bob = served.ctx.dep.keystore.address_of("bob")
    vote_99 = "0x" + _selector("vote(uint256,bool)") + f"{99:064x}" + f"{1:064x}"
    err = call(c, "eth_estimateGas", {"from": bob, "to": market, "data": vote_99})["error"]
    assert err["code"] == 3 and "unknown proposal" in err["message"]


def test_a_signed_transaction_is_mined_and_persisted(served, web_home):
    c = served.client
    bob = served.ctx.dep.keystore.unlock("bob", PASSWORD)
    chain_id = int(call(c, "eth_chainId")["result"], 16)
    nonce = int(call(c, "eth_getTransactionCount", bob.address, "pending")["result"], 16)
    base = int(call(c, "eth_getBlockByNumber", "latest", False)["result"]["baseFeePerGas"], 16)
    signed = Account.sign_transaction({
        "type": 2, "chainId": chain_id, "nonce": nonce, "to": STRANGER.address,
        "value": 12345, "gas": 21000, "maxFeePerGas": 2 * base + 10**9,
        "maxPriorityFeePerGas": 10**9}, bob.key)
    raw = "0x" + bytes(signed.raw_transaction).hex()
    tx_hash = call(c, "eth_sendRawTransaction", raw)["result"]
    receipt = call(c, "eth_getTransactionReceipt", tx_hash)["result"]
    assert receipt["status"] == "0x1"
    assert call(c, "eth_getTransactionByHash", tx_hash)["result"]["hash"] == tx_hash
    assert call(c, "eth_getBalance", STRANGER.address, "latest")["result"] == hex(12345)
    # the same raw transaction again is refused (nonce used)
    assert "error" in call(c, "eth_sendRawTransaction", raw)
    served.__exit__(None, None, None)  # stop the server: it releases the chain
    with open_chain(Home(web_home.home)) as chain:
        assert chain.balance(STRANGER.address) == 12345


def test_the_cli_waits_for_the_server_then_says_it_holds_the_chain(web_home):
    with Served(web_home.home, sync_seconds=0):
        result = Cli(web_home.home)("vote", "2", "yes", as_="bob", code=6, json_out=False,
                                    env={"DATABRIGHT_LOCK_TIMEOUT": "1"})
    err = result.stderr
    assert "waiting for the embedded chain" in err and "busy" in err


def test_rpc_is_absent_on_a_real_network(web_home, monkeypatch):
    monkeypatch.setattr(WebContext, "is_embedded", property(lambda self: False))
    with Served(web_home.home, sync_seconds=0) as srv:
        r = srv.client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                                          "params": []})
        assert r.status_code == 404
