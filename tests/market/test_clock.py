"""The chain's clock comes from the chain: a node's clock is never replaced by this machine's."""

from __future__ import annotations

import time
from typing import Any

from web3 import Web3
from web3.providers.base import BaseProvider

from databright.chain.provider import Chain

LATEST = 1_000_000  # a dev node whose clock is far from this machine's


class FakeNode(BaseProvider):
    """Answers the chain id and blocks; ``pending`` is refused or stamped as given."""

    def __init__(self, pending: int | None) -> None:
        super().__init__()
        self.pending = pending

    def make_request(self, method: Any, params: Any) -> Any:
        if method == "eth_chainId":
            return {"jsonrpc": "2.0", "id": 1, "result": "0x7a69"}
        if method == "eth_getBlockByNumber":
            if params[0] == "pending":
                if self.pending is None:
                    return {"jsonrpc": "2.0", "id": 1,
                            "error": {"code": -32000, "message": "pending block not supported"}}
                return {"jsonrpc": "2.0", "id": 1,
                        "result": {"number": "0x6", "timestamp": hex(self.pending)}}
            return {"jsonrpc": "2.0", "id": 1,
                    "result": {"number": "0x5", "timestamp": hex(LATEST)}}
        raise AssertionError(f"unexpected request {method}")


def _chain(pending: int | None) -> Chain:
    return Chain(Web3(FakeNode(pending)), "http://node.invalid")


def test_a_node_without_a_pending_block_gives_its_own_latest_time_not_ours():
    assert abs(time.time() - LATEST) > 10**8
    assert _chain(pending=None).next_block_time() == LATEST + 1


def test_a_node_pending_block_sets_the_clock():
    assert _chain(pending=LATEST + 40).next_block_time() == LATEST + 40
    assert _chain(pending=LATEST).next_block_time() == LATEST + 1  # never before the next block
