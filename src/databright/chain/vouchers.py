"""Checking payment-channel vouchers fast, by the contract's own rule, for a prediction server.

:func:`databright.chain.model_registry.signed_by` builds the full EIP-712 document for every
check (about 1 ms). A server checks one voucher per request for one registry on one chain, so
:class:`VoucherVerifier` hashes the domain once and each voucher as the contract does
(``keccak256(0x1901 ‖ domain ‖ keccak256(VOUCHER_TYPEHASH ‖ channelId ‖ amount))``), then recovers
the signer. It also applies the contract's ``_recover`` rule, which a plain off-chain recovery
does not: ``r, s ≠ 0``, ``s`` in the lower half of the curve order, ``v`` 27/28 or 0/1. The
high-``s`` twin of a valid signature recovers to the same signer off chain but is refused by
``close``; a server accepting it would serve for a voucher it can never redeem.
"""

from __future__ import annotations

from eth_abi import encode
from eth_keys import keys
from eth_utils import keccak

from databright.chain.model_registry import DOMAIN_NAME, DOMAIN_VERSION
from databright.chain.wrapper import checksum

SECP256K1N_HALF = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
_VOUCHER_TYPEHASH = keccak(text="Voucher(uint256 channelId,uint256 amount)")


def canonical(signature: bytes) -> bool:
    """Whether ``close`` can accept this 65-byte ``r ‖ s ‖ v`` signature's form."""
    if len(signature) != 65:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    return r != 0 and 0 < s <= SECP256K1N_HALF and signature[64] in (0, 1, 27, 28)


class VoucherVerifier:
    """Vouchers of the registry at ``registry`` on chain ``chain_id``."""

    def __init__(self, chain_id: int, registry: str) -> None:
        self.chain_id = int(chain_id)
        self.registry = checksum(registry)
        self._domain = keccak(encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [_DOMAIN_TYPEHASH, keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION),
             self.chain_id, self.registry]))

    def digest(self, channel_id: int, amount: int) -> bytes:
        """The 32 bytes the payer signs (the contract's ``voucher_digest``)."""
        struct = keccak(_VOUCHER_TYPEHASH + int(channel_id).to_bytes(32, "big")
                        + int(amount).to_bytes(32, "big"))
        return bytes(keccak(b"\x19\x01" + self._domain + struct))

    def signer(self, channel_id: int, amount: int, signature: bytes | str) -> str | None:
        """The checksum address that signed the voucher, or ``None`` if the signature is
        malformed, not canonical, or recovers to nothing."""
        try:
            raw = (bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str)
                   else bytes(signature))
        except ValueError:
            return None
        if not canonical(raw) or not 0 <= amount < 2**256 or not 0 <= channel_id < 2**256:
            return None
        v = raw[64] - 27 if raw[64] >= 27 else raw[64]
        try:
            sig = keys.Signature(vrs=(v, int.from_bytes(raw[:32], "big"),
                                      int.from_bytes(raw[32:64], "big")))
            return str(sig.recover_public_key_from_msg_hash(
                self.digest(channel_id, amount)).to_checksum_address())
        except Exception:  # noqa: BLE001 - eth_keys raises several types for a bad signature
            return None

    def signed_by(self, channel_id: int, amount: int, signature: bytes | str, signer: str
                  ) -> bool:
        return self.signer(channel_id, amount, signature) == checksum(signer)
