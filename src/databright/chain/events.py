"""Every DataMarket, ShareToken and ModelRegistry log in a block range, decoded by the compiled
ABIs.

The index (``databright.market.sync``) is rebuilt from these alone. Decoding goes through the
ABI of the packaged contracts, so a field added to an event appears in :attr:`ChainEvent.args`
without a change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from eth_typing import BlockNumber
from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3._utils.events import get_event_data
from web3.exceptions import BlockNotFound

from databright.chain.compile import compile_contract
from databright.chain.provider import Chain

#: Block ranges wider than this are read in slices (nodes cap ``eth_getLogs``).
DEFAULT_RANGE = 2_000


@dataclass(frozen=True)
class ChainEvent:
    """One decoded log.

    Attributes:
        contract: ``"DataMarket"``, ``"ShareToken"`` or ``"ModelRegistry"``.
        name: the event's name in the contract (``ProposalCreated``, ``Transfer``, ...).
        address: checksum address of the emitting contract.
        block_number, log_index: the log's place in the chain (the order events apply in).
        block_hash: hash of the block that holds it (0x-hex).
        args: the event's fields by their contract names; addresses checksummed, ``bytes32`` as ``bytes``.
    """

    contract: str
    name: str
    address: str
    block_number: int
    log_index: int
    block_hash: str
    args: dict[str, Any] = field(compare=False)

    @property
    def position(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


class EventDecoder:
    """Decodes the logs of the packaged contracts by topic, from their compiled ABIs."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    @cached_property
    def _by_topic(self) -> dict[tuple[str, bytes], dict[str, Any]]:
        table: dict[tuple[str, bytes], dict[str, Any]] = {}
        for contract in ("DataMarket", "ShareToken", "ModelRegistry", "ComputeMarket"):
            for item in compile_contract(contract).abi:
                if item.get("type") == "event":
                    topic = event_abi_to_log_topic(item)  # type: ignore[arg-type]
                    table[(contract, bytes(topic))] = item
        return table

    def event_names(self, contract: str) -> set[str]:
        """The events ``contract`` declares in the packaged ABI."""
        return {abi["name"] for (c, _), abi in self._by_topic.items() if c == contract}

    def decode(self, contract: str, log: Any) -> ChainEvent | None:
        """``log`` as a :class:`ChainEvent`, or ``None`` when its topic is not one of ours."""
        topics = log.get("topics") or []
        if not topics:
            return None
        abi = self._by_topic.get((contract, bytes(topics[0])))
        if abi is None:
            return None
        data = get_event_data(self.chain.w3.codec, abi, log)
        args = {k: _plain(v) for k, v in dict(data["args"]).items()}
        return ChainEvent(
            contract=contract,
            name=str(abi["name"]),
            address=Web3.to_checksum_address(log["address"]),
            block_number=int(log["blockNumber"]),
            log_index=int(log["logIndex"]),
            block_hash=Web3.to_hex(log["blockHash"]),
            args=args,
        )

    def read(
        self, contract: str, addresses: Sequence[str], from_block: int, to_block: int
    ) -> list[ChainEvent]:
        """Decoded logs of ``addresses`` (all running ``contract``) in ``[from_block, to_block]``."""
        if not addresses or to_block < from_block:
            return []
        found: list[ChainEvent] = []
        if self.chain.embedded is not None:
            logs = _embedded_logs(self.chain, set(addresses), from_block, to_block)
            return [e for e in (self.decode(contract, log) for log in logs) if e is not None]
        # keep the address list short: some nodes refuse long ones
        for start in range(0, len(addresses), 200):
            chunk = [Web3.to_checksum_address(a) for a in addresses[start:start + 200]]
            with self.chain.translating():
                rpc_logs = self.chain.w3.eth.get_logs(
                    {"address": chunk, "fromBlock": from_block, "toBlock": to_block}
                )
            for log in rpc_logs:
                event = self.decode(contract, dict(log))
                if event is not None:
                    found.append(event)
        return found


def _embedded_logs(chain: Chain, addresses: set[str], from_block: int,
                   to_block: int) -> list[dict[str, Any]]:
    """The embedded chain's logs of ``addresses`` in a block range, read block by block.

    eth-tester's ``eth_getLogs`` looks every receipt up by transaction hash, scanning the chain
    back from its head each time: quadratic in the chain's length. py-evm has each block's
    receipts at hand.
    """
    wanted = {bytes.fromhex(a.removeprefix("0x").lower()) for a in addresses}
    assert chain.embedded is not None
    out: list[dict[str, Any]] = []
    with chain.embedded.mutex:
        evm = chain.embedded.backend.chain
        head = evm.get_canonical_head().block_number
        for number in range(max(0, from_block), min(to_block, head) + 1):
            block = evm.get_canonical_block_by_number(BlockNumber(number))
            if not block.transactions:
                continue
            block_hash = block.header.hash
            log_index = 0
            for tx_index, (tx, receipt) in enumerate(
                    zip(block.transactions, block.get_receipts(evm.chaindb), strict=True)):
                for log in receipt.logs:
                    if log.address in wanted:
                        out.append({
                            "address": Web3.to_checksum_address(log.address),
                            "topics": [t.to_bytes(32, "big") for t in log.topics],
                            "data": bytes(log.data),
                            "blockNumber": number,
                            "blockHash": block_hash,
                            "transactionHash": tx.hash,
                            "transactionIndex": tx_index,
                            "logIndex": log_index,
                        })
                    log_index += 1
    return out


def block_hash(chain: Chain, number: int) -> str | None:
    """The 0x-hex hash of block ``number`` on ``chain``, ``None`` past the head."""
    with chain.translating():
        try:
            block = chain.w3.eth.get_block(int(number))
        except BlockNotFound:
            return None
    return Web3.to_hex(block["hash"])


def in_order(events: Iterable[ChainEvent]) -> list[ChainEvent]:
    """Events sorted the way the chain applied them."""
    return sorted(events, key=lambda e: e.position)


def _plain(value: Any) -> Any:
    # web3 already checksums ``address`` fields; HexBytes become plain bytes
    return bytes(value) if isinstance(value, (bytes, bytearray)) else value
