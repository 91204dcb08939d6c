"""Contract calls as unsigned transactions a wallet sends: ``{to, data, value}`` encoded with
the wrappers' ABIs, and a dry run that refuses, before any wallet is asked, what would revert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3

from databright.chain.provider import Chain
from databright.chain.wrapper import BoundContract, checksum


@dataclass(frozen=True)
class UnsignedTx:
    """One transaction for the viewer's wallet: ``value`` in wei (an int)."""

    to: str
    data: str
    value: int
    description: str

    def as_json(self) -> dict[str, str]:
        """The wire form: ``value`` as a decimal string of wei (JSON numbers lose precision)."""
        return {"to": self.to, "data": self.data, "value": str(self.value),
                "description": self.description}


def encode(contract: BoundContract, fn: str, *args: Any, value: int = 0,
           description: str = "") -> UnsignedTx:
    """``contract.fn(*args)`` as calldata to ``contract.address`` with ``value`` wei."""
    data = contract.contract.encode_abi(fn, args=list(args))
    return UnsignedTx(contract.address, str(data), int(value), description or fn)


def simulate(chain: Chain, tx: UnsignedTx, sender: str) -> int:
    """Run ``tx`` from ``sender`` without mining it (in the pending block, where it would run);
    returns the gas it needs.

    Raises:
        ContractRevert: (a subclass by reason) it would revert.
        InsufficientFundsError: ``sender`` cannot pay the value.
    """
    probe: dict[str, Any] = {"from": checksum(sender), "to": tx.to, "data": tx.data,
                             "value": int(tx.value)}
    with chain.translating():
        if chain.is_embedded:
            return int(chain.w3.eth.estimate_gas(probe))  # type: ignore[arg-type]
        return int(chain.w3.eth.estimate_gas(probe, "pending"))  # type: ignore[arg-type]


def send_as(chain: Chain, tx: UnsignedTx, signer: Any) -> str:
    """Sign ``tx`` with a local signer (an unlocked keystore account), send it and wait until
    mined; returns the transaction hash (0x hex).

    Raises:
        ContractRevert: it reverted (with the reason).
    """
    receipt = chain.send({"to": tx.to, "data": tx.data}, signer, value=int(tx.value))
    return str(Web3.to_hex(receipt["transactionHash"]))


@dataclass(frozen=True)
class TxStatus:
    """What the chain says of a transaction hash: mined (with status 1/0 and block) or not."""

    mined: bool
    status: int | None
    block: int | None


def tx_status(chain: Chain, tx_hash: str) -> TxStatus:
    """The receipt of ``tx_hash``, if mined."""
    from web3.exceptions import TransactionNotFound

    with chain.translating():
        try:
            receipt = chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return TxStatus(False, None, None)
    if receipt is None:
        return TxStatus(False, None, None)
    return TxStatus(True, int(receipt["status"]), int(receipt["blockNumber"]))
