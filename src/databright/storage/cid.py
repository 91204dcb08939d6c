"""Content identifiers: CIDv1, raw codec, sha2-256, base32 (``bafkrei…``).

The same string IPFS gives a raw block (``ipfs block put --cid-codec raw``), so a blob can be
fetched from or pinned to IPFS by the CID we record. A CID here is always exactly
``"b" + base32(0x01 0x55 0x12 0x20 + sha256(data))`` in lower case without padding: 59 characters.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = [
    "CID_LENGTH",
    "CID_PATTERN",
    "CidHasher",
    "cid_digest",
    "cid_from_digest",
    "cid_of_bytes",
    "cid_of_file",
    "digests_of",
    "is_cid",
]

CID_LENGTH = 59
# "bafkrei" spells the first 30 bits of the 4-byte header; the next character carries the
# header's last 2 bits (zero, so a-h) and 3 digest bits; the last character carries 3 digest
# bits and 2 zero padding bits (so every 4th letter). One canonical spelling per digest.
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(250, -1, -10))
_TO_INT_DIGITS = str.maketrans(_ALPHABET, "0123456789abcdefghijklmnopqrstuv")
_DECODE_TABLE = np.zeros(256, dtype=np.uint8)
_DECODE_TABLE[np.frombuffer(_ALPHABET.encode(), dtype=np.uint8)] = np.arange(32, dtype=np.uint8)
CID_PATTERN = re.compile(r"bafkrei[a-h][a-z2-7]{50}[aeimquy4]")
_CHUNK = 1 << 20


def cid_from_digest(digest: bytes) -> str:
    """CID string of a blob whose sha256 is ``digest`` (32 bytes)."""
    if len(digest) != 32:
        raise ValueError(f"a sha2-256 digest is 32 bytes, got {len(digest)}")
    # The 4 header bytes are constant: "bafkrei" spells their first 30 bits. What follows is the
    # base32 of (2 zero header bits + 256 digest bits + 2 zero padding bits) = 260 bits, done as 26
    # lookups of 10 bits (base64.b32encode is pure Python and 5x slower).
    n = int.from_bytes(digest, "big") << 2
    return "bafkrei" + "".join([_PAIRS[(n >> s) & 0x3FF] for s in _SHIFTS])


def cid_of_bytes(data: bytes | bytearray | memoryview) -> str:
    """CID of an in-memory blob."""
    return cid_from_digest(hashlib.sha256(data).digest())


def is_cid(s: object) -> bool:
    """True when ``s`` is a well-formed CID of the kind this project uses (never raises)."""
    return isinstance(s, str) and CID_PATTERN.fullmatch(s) is not None


def cid_digest(cid: str) -> bytes:
    """The 32-byte sha256 inside ``cid`` (what the chain stores as ``bytes32``)."""
    if not is_cid(cid):
        raise ValueError(f"not a CIDv1 raw sha2-256 base32 string: {cid!r}")
    # int() reads base 32 with digits 0-9a-v: translate the RFC 4648 alphabet to those digits
    return (int(cid[7:].translate(_TO_INT_DIGITS), 32) >> 2).to_bytes(32, "big")


def digests_of(cids: Sequence[str] | np.ndarray) -> bytes:
    """The sha256 digests of many (already validated) CIDs, concatenated; vectorised base32.
    ``cids`` is a sequence of CID strings or an ``(n, 59)`` uint8 array of their characters."""
    if isinstance(cids, np.ndarray) and cids.dtype == np.uint8:
        chars = cids.reshape(-1, CID_LENGTH)
    else:
        chars = np.frombuffer("".join(cids).encode("ascii"), dtype=np.uint8).reshape(-1, CID_LENGTH)
    n = len(chars)
    # 52 characters after "bafkrei" = 2 header bits + 256 digest bits + 2 padding bits
    values = _DECODE_TABLE.take(np.ascontiguousarray(chars[:, 7:]))  # 5 bits in each byte
    bits = np.unpackbits(values).reshape(n, 52, 8)[:, :, 3:].reshape(n, 260)
    return np.packbits(bits[:, 2:258], axis=1).tobytes()


class CidHasher:
    """Incremental CID computation for data that arrives in pieces."""

    __slots__ = ("_h", "size")

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    def digest(self) -> bytes:
        return self._h.digest()

    def cid(self) -> str:
        return cid_from_digest(self._h.digest())


def cid_of_stream(stream: BinaryIO, chunk_size: int = _CHUNK) -> tuple[str, int]:
    """CID and size of everything left in ``stream``, read in chunks (memory flat)."""
    h = CidHasher()
    while chunk := stream.read(chunk_size):
        h.update(chunk)
    return h.cid(), h.size


def cid_of_file(path: str | os.PathLike[str]) -> str:
    """CID of a file's content, streamed (memory flat in the file size)."""
    with Path(path).open("rb") as f:
        return cid_of_stream(f)[0]
