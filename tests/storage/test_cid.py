"""CID vectors, computed independently: hashlib sha256 + a hand-written RFC 4648 base32."""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databright.storage.cid import (
    CidHasher,
    cid_digest,
    cid_from_digest,
    cid_of_bytes,
    cid_of_file,
    cid_of_stream,
    is_cid,
)

EMPTY = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def b32_lower_nopad(data: bytes) -> str:
    """RFC 4648 base32 by hand: 5 bits at a time, most significant first, zero-filled tail."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    bits = "".join(f"{byte:08b}" for byte in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(alphabet[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))


def reference_cid(data: bytes) -> str:
    # CIDv1 (0x01), raw codec (0x55), multihash sha2-256 (0x12) length 32 (0x20), multibase "b"
    return "b" + b32_lower_nopad(bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest())


def test_empty_blob_vector() -> None:
    assert cid_of_bytes(b"") == EMPTY
    assert reference_cid(b"") == EMPTY  # the reference itself agrees with the published vector


@pytest.mark.parametrize("data", [b"hello", b"\x00" * 1000, b"DataBright\n", bytes(range(256)) * 5])
def test_vectors_match_reference(data: bytes) -> None:
    cid = cid_of_bytes(data)
    assert cid == reference_cid(data)
    assert cid_digest(cid) == hashlib.sha256(data).digest()
    assert cid_from_digest(cid_digest(cid)) == cid
    assert is_cid(cid) and len(cid) == 59


@given(st.binary(max_size=300))
def test_any_bytes_match_reference(data: bytes) -> None:
    cid = cid_of_bytes(data)
    assert cid == reference_cid(data)
    assert is_cid(cid)


@given(st.binary(min_size=32, max_size=32))
def test_digest_roundtrip(digest: bytes) -> None:
    assert cid_digest(cid_from_digest(digest)) == digest


@pytest.mark.parametrize(
    "bad",
    [
        "", "bafkrei", EMPTY.upper(), EMPTY[:-1], EMPTY + "a", "Q" + EMPTY[1:],
        EMPTY[:-1] + "b",  # non-zero padding bits: a second spelling of the same digest
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CID, not raw
        EMPTY[:7] + "z" + EMPTY[8:],  # header bits wrong
        None, 42, b"bafkrei",
    ],
)
def test_is_cid_rejects(bad: object) -> None:
    assert not is_cid(bad)


def test_cid_digest_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        cid_digest("not a cid")
    with pytest.raises(ValueError):
        cid_from_digest(b"short")


def test_streaming_hasher_matches(tmp_path) -> None:
    data = bytes(range(256)) * 10_000
    h = CidHasher()
    for i in range(0, len(data), 777):
        h.update(data[i:i + 777])
    assert h.cid() == cid_of_bytes(data) and h.size == len(data)
    assert cid_of_stream(io.BytesIO(data), chunk_size=1000) == (cid_of_bytes(data), len(data))
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    assert cid_of_file(p) == cid_of_bytes(data)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=50))
def test_vectorised_digests(digests) -> None:
    from databright.storage.cid import digests_of

    assert digests_of([cid_from_digest(d) for d in digests]) == b"".join(digests)
