"""Signed worker requests: who sent an HTTP request to the coordinator, and that it is fresh.

A worker signs every request with its registered account key (EIP-191 ``personal_sign``) over
the lines of :func:`request_message`::

    DataBright worker request v1
    POST
    /v1/commit
    <sha256 of the body, 64 lower-case hex digits>
    <nonce, 32 to 64 lower-case hex digits>
    <timestamp, unix seconds in decimal>

joined by ``\\n`` (no trailing newline). The path is the request target as sent, with its query
string. The four ``X-DataBright-*`` headers carry the address, nonce, timestamp and the 65-byte
``r || s || v`` signature (0x hex, v 27/28, low s: a malleable twin is refused). The
coordinator checks freshness (timestamp window, nonce never seen) and registration itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from databright.chain.wrapper import checksum
from databright.errors import DataBrightError, UsageError

__all__ = [
    "ADDRESS_HEADER",
    "DOMAIN_TAG",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "BadRequestSignature",
    "SignedHeaders",
    "recover_request",
    "request_message",
    "sign_request",
]

DOMAIN_TAG = "DataBright worker request v1"
ADDRESS_HEADER = "X-DataBright-Address"
NONCE_HEADER = "X-DataBright-Nonce"
TIMESTAMP_HEADER = "X-DataBright-Timestamp"
SIGNATURE_HEADER = "X-DataBright-Signature"

# secp256k1 group order: a signature with s > n/2 is the malleable twin of one with n - s
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_METHOD = re.compile(r"[A-Z]{1,16}")
_NONCE = re.compile(r"[0-9a-f]{32,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")


class BadRequestSignature(DataBrightError):
    """The request's signature headers are missing, malformed or do not verify."""

    http_status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SignedHeaders:
    """The parsed ``X-DataBright-*`` headers of a request."""

    address: str
    nonce: str
    timestamp: int
    signature: bytes

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> SignedHeaders:
        """Read the four headers (case-insensitive mapping, as Starlette's and httpx's are).

        Raises:
            BadRequestSignature: ``missing_signature`` or ``bad_signature``.
        """
        values = [headers.get(h) for h in (ADDRESS_HEADER, NONCE_HEADER, TIMESTAMP_HEADER,
                                           SIGNATURE_HEADER)]
        if any(v is None for v in values):
            raise BadRequestSignature("missing_signature", "sign the request: the X-DataBright-"
                                      "Address, -Nonce, -Timestamp and -Signature headers")
        address, nonce, timestamp, signature = (str(v) for v in values)
        try:
            address = checksum(address)
        except UsageError:
            raise BadRequestSignature("bad_signature", "X-DataBright-Address is not an address"
                                      ) from None
        if not _NONCE.fullmatch(nonce):
            raise BadRequestSignature("bad_signature", "the nonce is 32 to 64 lower-case hex "
                                      "digits")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise BadRequestSignature("bad_signature", "the timestamp is unix seconds")
        if not _SIGNATURE.fullmatch(signature):
            raise BadRequestSignature("bad_signature", "the signature is 65 bytes of 0x hex")
        return cls(address, nonce, int(timestamp), bytes.fromhex(signature[2:]))


def request_message(method: str, path: str, body_sha256: str, nonce: str, timestamp: int) -> bytes:
    """The bytes a worker signs (see the module docstring).

    Raises:
        BadRequestSignature: a field that cannot be part of a well-formed message.
    """
    if not _METHOD.fullmatch(method) or not path.startswith("/") or any(
            c in path for c in "\r\n") or not _HEX64.fullmatch(body_sha256) or not _NONCE.fullmatch(
            nonce) or not isinstance(timestamp, int) or timestamp < 0:
        raise BadRequestSignature("bad_signature", "malformed request fields")
    return "\n".join([DOMAIN_TAG, method, path, body_sha256, nonce, str(timestamp)]).encode()


def sign_request(key: LocalAccount | bytes | str, method: str, path: str, body: bytes, *,
                 nonce: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    """The four headers that sign ``method path`` with ``body`` (fresh nonce, now)."""
    account = key if isinstance(key, LocalAccount) else Account.from_key(key)
    nonce = secrets.token_hex(16) if nonce is None else nonce
    timestamp = int(time.time()) if timestamp is None else timestamp
    message = request_message(method, path, hashlib.sha256(body).hexdigest(), nonce, timestamp)
    signature = bytes(account.sign_message(encode_defunct(primitive=message)).signature)
    return {ADDRESS_HEADER: checksum(account.address), NONCE_HEADER: nonce,
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: "0x" + signature.hex()}


def recover_request(method: str, path: str, body: bytes, headers: Mapping[str, str]) -> \
        SignedHeaders:
    """Check a request's signature; returns its headers, whose ``address`` signed it.

    Raises:
        BadRequestSignature: missing or malformed headers, a high-s or odd-v signature, or a
            signer other than the address the request names.
    """
    signed = SignedHeaders.parse(headers)
    sig = signed.signature
    s = int.from_bytes(sig[32:64], "big")
    if sig[64] not in (27, 28) or not 0 < s <= _N // 2:
        raise BadRequestSignature("bad_signature", "signatures are low-s with v 27 or 28")
    message = request_message(method, path, hashlib.sha256(body).hexdigest(), signed.nonce,
                              signed.timestamp)
    try:
        signer = checksum(Account.recover_message(encode_defunct(primitive=message),
                                                  signature=sig))
    except Exception:  # noqa: BLE001 - eth_keys raises several types for bad signatures
        raise BadRequestSignature("bad_signature", "the signature does not recover") from None
    if signer != signed.address:
        raise BadRequestSignature("bad_signature", "the signature is not by X-DataBright-Address"
                                  " over this method, path, body, nonce and timestamp")
    return signed
