"""EIP-191 ``personal_sign`` messages: signing (tests, local accounts) and recovering the signer
of an untrusted signature (Sign-In with Ethereum, signed comments).

A signature is 65 bytes ``r ‖ s ‖ v`` as hex; only the canonical form is accepted (``r, s ≠ 0``,
``s`` in the lower half of the curve order, ``v`` 27/28 or 0/1), so each message and signer has
one signature string, and a stored signature can be re-checked by anyone.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct

from databright.chain.vouchers import canonical
from databright.chain.wrapper import checksum
from databright.errors import DataBrightError

#: longest message recovered (a SIWE message is well under 2 KB; a comment is its body's size)
MAX_MESSAGE_BYTES = 64 * 1024


class BadSignature(DataBrightError):
    """The signature is malformed, not canonical, or recovers no account."""

    http_status = 401


def _bytes(signature: str) -> bytes:
    text = signature.strip()
    if not text.startswith("0x") or len(text) != 132:
        raise BadSignature("a signature is 65 bytes as 0x-prefixed hex (132 characters)")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise BadSignature("the signature is not hex") from None
    if not canonical(raw):
        raise BadSignature("the signature is not canonical (r, s ≠ 0, low s, v 27/28 or 0/1)")
    return raw


def recover_personal(message: str, signature: str) -> str:
    """The checksummed address that ``personal_sign``-ed ``message``.

    Raises:
        BadSignature: malformed, high-s, too long a message, or unrecoverable.
    """
    data = message.encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadSignature(f"the signed message exceeds {MAX_MESSAGE_BYTES} bytes")
    raw = _bytes(signature)
    v = raw[64] - 27 if raw[64] >= 27 else raw[64]
    try:
        return checksum(Account.recover_message(encode_defunct(data),
                                                signature=raw[:64] + bytes([v + 27])))
    except Exception as exc:  # noqa: BLE001 - eth-keys raises several types for bad points
        raise BadSignature(f"the signature recovers no account: {exc}") from None


def sign_personal(key: bytes | str, message: str) -> str:
    """``personal_sign`` of ``message`` by ``key``, as 0x hex (canonical: eth-account signs low-s)."""
    signed = Account.sign_message(encode_defunct(message.encode()), private_key=key)
    return "0x" + bytes(signed.signature).hex()
