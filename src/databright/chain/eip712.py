"""EIP-712 signing, hashing and recovery for the contracts' typed messages.

An item is anything with ``typed_data()`` returning an EIP-712 ``full_message`` (attestations and
vouchers of the ModelRegistry, receipts of the ComputeMarket). Signatures are 65 bytes
``r || s || v`` with low s and v 27/28, as the contracts expect.
"""

from __future__ import annotations

from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount

from databright.chain.wrapper import checksum
from databright.errors import UsageError

__all__ = ["DOMAIN_FIELDS", "Key", "Typed", "digest", "domain", "recover", "sign", "signable",
           "signed_by"]

DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

Key = LocalAccount | bytes | str


class Typed(Protocol):
    def typed_data(self) -> dict[str, Any]: ...


def domain(name: str, version: str, chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 domain of one contract on one chain."""
    return {"name": name, "version": version, "chainId": int(chain_id),
            "verifyingContract": checksum(contract)}


def signable(item: Typed) -> SignableMessage:
    """The EIP-712 message of ``item``."""
    return encode_typed_data(full_message=item.typed_data())


def digest(item: Typed) -> bytes:
    """The 32-byte hash that gets signed (equals the contracts' ``*_digest`` views)."""
    from eth_utils import keccak

    message = signable(item)
    return bytes(keccak(b"\x19" + message.version + message.header + message.body))


def sign(item: Typed, key: Key) -> bytes:
    """A 65-byte ``r || s || v`` signature (low s, v 27/28) as the contracts expect."""
    private_key = key.key if isinstance(key, LocalAccount) else key
    signed = Account.sign_typed_data(private_key, full_message=item.typed_data())
    return bytes(signed.signature)


def recover(item: Typed, signature: bytes | str) -> str:
    """The checksum address that signed ``item``.

    Raises:
        UsageError: the signature is not 65 bytes or cannot be recovered.
    """
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    if len(raw) != 65:
        raise UsageError(f"a signature is 65 bytes, got {len(raw)}")
    try:
        return str(Account.recover_message(signable(item), signature=raw))
    except Exception as exc:  # eth_keys raises several types for bad signatures
        raise UsageError(f"cannot recover a signer from this signature ({exc})") from exc


def signed_by(item: Typed, signature: bytes | str, signer: str) -> bool:
    """Whether ``signature`` over ``item`` is by ``signer`` (False for a malformed signature)."""
    try:
        return recover(item, signature) == checksum(signer)
    except UsageError:
        return False
