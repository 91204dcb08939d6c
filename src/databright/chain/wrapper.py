"""What the per-contract wrappers share: a bound web3 contract, calls, sends, event reading."""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from databright.chain.compile import CompiledContract, compile_contract
from databright.chain.provider import Chain
from databright.errors import ChainError, UsageError

T = TypeVar("T")
ZERO_ADDRESS = "0x" + "00" * 20


class Sent(NamedTuple, Generic[T]):
    """A mined transaction's result: what it produced (an id, an amount, ...) and its receipt."""

    value: T
    receipt: TxReceipt


def checksum(address: str) -> str:
    """``address`` in checksum form, or :class:`UsageError` if it is not an address."""
    if not isinstance(address, str) or not Web3.is_address(address):
        raise UsageError(f"not an Ethereum address: {address!r}")
    return str(Web3.to_checksum_address(address))


def as_bytes32(value: bytes | str) -> bytes:
    """A 32-byte value from bytes or ``0x``-hex (Merkle roots, CID digests)."""
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise UsageError(f"expected 32 bytes, got {len(raw)}")
    return raw


class BoundContract:
    """One deployed contract on one chain, by the ABI of one packaged ``.vy`` file.

    Args:
        chain: the open chain.
        address: where the contract lives.
        compiled: its compiled output; compiled (cached) from ``contract_name`` when ``None``.
    """

    contract_name = ""

    def __init__(
        self, chain: Chain, address: str, compiled: CompiledContract | None = None
    ) -> None:
        self.chain = chain
        self.address = checksum(address)
        self.compiled = compiled or compile_contract(self.contract_name)
        self.contract = chain.w3.eth.contract(
            address=Web3.to_checksum_address(self.address), abi=self.compiled.abi
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address} on {self.chain.url})"

    def _call(self, name: str, *args: Any) -> Any:
        return self.chain.call(self.contract.functions[name](*args))

    def _send(self, name: str, sender: LocalAccount, *args: Any, value: int = 0) -> TxReceipt:
        return self.chain.send(self.contract.functions[name](*args), sender, value=value)

    def _event(self, receipt: TxReceipt, event: str) -> dict[str, Any]:
        """The arguments of the first ``event`` this contract emitted in ``receipt``."""
        logs = self.contract.events[event]().process_receipt(receipt, errors=DISCARD)
        mine = [log for log in logs if log["address"] == self.address]
        if not mine:
            raise ChainError(f"{self.contract_name} emitted no {event} event in this transaction")
        return dict(mine[0]["args"])

    def _embedded_logs(self, event: str, from_block: int, to_block: int | str) -> list[Any]:
        from eth_utils import event_abi_to_log_topic
        from web3._utils.events import get_event_data

        from databright.chain.events import _embedded_logs

        abi = next(item for item in self.compiled.abi
                   if item.get("type") == "event" and item.get("name") == event)
        topic = bytes(event_abi_to_log_topic(abi))  # type: ignore[arg-type]
        last = self.chain.block_number() if to_block == "latest" else int(to_block)
        raw = _embedded_logs(self.chain, {self.address}, int(from_block), last)
        return [get_event_data(self.chain.w3.codec, abi, log) for log in raw
                if log["topics"] and log["topics"][0] == topic]

    def logs(
        self, event: str, from_block: int = 0, to_block: int | str = "latest"
    ) -> list[dict[str, Any]]:
        """Decoded ``event`` logs of this contract in a block range (for index sync).

        Each item has ``args``, ``blockNumber``, ``transactionHash``, ``logIndex``.
        """
        if self.chain.embedded is not None:  # eth-tester's getLogs is quadratic in chain length
            found = self._embedded_logs(event, from_block, to_block)
        else:
            with self.chain.translating():
                found = self.contract.events[event]().get_logs(from_block=from_block,
                                                               to_block=to_block)
        return [
            {
                "event": event,
                "args": dict(item["args"]),
                "blockNumber": int(item["blockNumber"]),
                "transactionHash": bytes(item["transactionHash"]),
                "logIndex": int(item["logIndex"]),
            }
            for item in found
        ]
