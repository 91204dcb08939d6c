"""Content identifiers: CIDv1, raw codec, sha2-256, base32 (``bafkrei…``).

The same string IPFS gives a raw block (``ipfs block put --cid-codec raw``), so a blob can be
fetched from or pinned to IPFS by the CID we record. A CID here is always exactly
``"b" + base32(0x01 0x55 0x12 0x20 + sha256(data))`` in lower case without padding: 59 characters.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "CID_LENGTH",
    "CID_PATTERN",
    "CidHasher",
    "cid_digest",
    "cid_from_digest",
    "cid_of_bytes",
    "cid_of_file",
    "is_cid",
]

# version 1, codec raw (0x55), multihash sha2-256 (0x12) of 32 bytes (0x20)
_PREFIX = b"\x01\x55\x12\x20"
CID_LENGTH = 59
# "bafkrei" spells the first 30 bits of the 4-byte header; the next character carries the
# header's last 2 bits (zero, so a-h) and 3 digest bits; the last character carries 3 digest
# bits and 2 zero padding bits (so every 4th letter). One canonical spelling per digest.
CID_PATTERN = re.compile(r"bafkrei[a-h][a-z2-7]{50}[aeimquy4]")
_CHUNK = 1 << 20


def cid_from_digest(digest: bytes) -> str:
    """CID string of a blob whose sha256 is ``digest`` (32 bytes)."""
    if len(digest) != 32:
        raise ValueError(f"a sha2-256 digest is 32 bytes, got {len(digest)}")
    return "b" + base64.b32encode(_PREFIX + digest).decode("ascii").rstrip("=").lower()


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
    return base64.b32decode(cid[1:].upper() + "======")[4:]


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
