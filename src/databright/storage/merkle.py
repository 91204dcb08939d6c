"""Merkle trees in OpenZeppelin's ``StandardMerkleTree`` format, leaves ``(bytes32, string)``.

* leaf = ``keccak256(keccak256(abi.encode(cid_digest, label)))`` (double hash: a leaf can never be
  mistaken for an inner node);
* leaves sorted ascending by hash, laid out as OpenZeppelin does: a heap array of ``2n - 1`` nodes,
  sorted leaf ``i`` at index ``2n - 2 - i``, node ``i`` = hash of the sorted pair of its children;
* proof = sibling hashes from the leaf up, checked by folding sorted pairs (what
  ``MerkleProof.verify`` does in Solidity and ``verify_item`` does in ``DataMarket``).

So any Solidity or JS tool verifies our proofs. Nodes live in one ``bytearray`` (32 bytes each):
a million leaves take 64 MB, not a million Python objects.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from databright.storage.cid import cid_digest

try:  # C keccak (safe-pysha3), ~5x faster per call than pycryptodome's
    from sha3 import keccak_256 as _k

    def keccak(data: bytes) -> bytes:
        return _k(data).digest()

except ImportError:  # pragma: no cover - depends on the environment
    from Crypto.Hash import keccak as _kc

    def keccak(data: bytes) -> bytes:
        return _kc.new(digest_bits=256, data=data).digest()


__all__ = ["MerkleTree", "encode_leaf", "keccak", "leaf_hash", "leaves_of", "merkle_root", "verify_proof"]

MAX_LABEL_BYTES = 64  # DataMarket.verify_item takes label: String[64]
_OFFSET = (64).to_bytes(32, "big")  # abi.encode: head of the dynamic string points past 2 words
_ZERO = bytes(32)


class _HasCidLabel(Protocol):
    @property
    def cid(self) -> str: ...

    @property
    def label(self) -> str: ...


def encode_leaf(cid_digest_: bytes, label: str) -> bytes:
    """``abi.encode(bytes32 cid_digest, string label)``."""
    if len(cid_digest_) != 32:
        raise ValueError("cid_digest must be 32 bytes")
    data = label.encode("utf-8")
    return b"".join(
        (cid_digest_, _OFFSET, len(data).to_bytes(32, "big"), data, _ZERO[: -len(data) % 32])
    )


def leaf_hash(cid_digest_: bytes, label: str) -> bytes:
    """The tree leaf of one item: ``keccak256(keccak256(abi.encode(cid_digest, label)))``."""
    return keccak(keccak(encode_leaf(cid_digest_, label)))


def leaves_of(digests: bytes, labels: Iterable[str]) -> bytes:
    """Leaf hashes, concatenated, of parallel columns: ``digests`` (32 bytes each, concatenated)
    and ``labels``. The ABI tail of each distinct label is encoded once."""
    tails: dict[str, bytes] = {}
    out = []
    k = keccak
    for i, label in enumerate(labels):
        tail = tails.get(label)
        if tail is None:
            tail = tails[label] = encode_leaf(_ZERO, label)[32:]
        out.append(k(k(digests[i * 32:i * 32 + 32] + tail)))
    if len(out) * 32 != len(digests):
        raise ValueError("digests and labels differ in length")
    return b"".join(out)


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b if a < b else b + a)


def verify_proof(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """True when ``proof`` leads from ``leaf`` to ``root`` (OpenZeppelin ``MerkleProof.verify``)."""
    node = bytes(leaf)
    for sibling in proof:
        if len(sibling) != 32:
            return False
        node = hash_pair(node, bytes(sibling))
    return node == bytes(root)


class MerkleTree:
    """A built tree: ``root``, and ``proof(...)`` for any leaf by input index, item or leaf hash."""

    def __init__(self, sorted_leaves: bytes, input_to_sorted: np.ndarray) -> None:
        n = len(sorted_leaves) // 32
        if n == 0:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.n = n
        self._pos = input_to_sorted  # input index -> position in the sorted leaves
        tree = bytearray((2 * n - 1) * 32)
        # sorted leaf i sits at heap index 2n-2-i: write the sorted block reversed, 32 bytes at a time
        rev = np.frombuffer(sorted_leaves, dtype=np.uint8).reshape(n, 32)[::-1]
        tree[(n - 1) * 32:] = rev.tobytes()
        mv = memoryview(tree)
        for i in range(n - 2, -1, -1):
            a = bytes(mv[(2 * i + 1) * 32:(2 * i + 2) * 32])
            b = bytes(mv[(2 * i + 2) * 32:(2 * i + 3) * 32])
            mv[i * 32:(i + 1) * 32] = keccak(a + b if a < b else b + a)
        self._tree = tree

    # construction -------------------------------------------------------------------------------
    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes] | np.ndarray) -> MerkleTree:
        """Tree over already hashed leaves (any order; ``proof(i)`` refers to this order)."""
        if isinstance(leaves, np.ndarray):
            arr = np.ascontiguousarray(leaves, dtype=np.uint8).reshape(-1, 32)
        else:
            buf = b"".join(leaves)
            if len(buf) % 32:
                raise ValueError("every leaf must be 32 bytes")
            arr = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 32)
        # exact lexicographic byte order: sort on the four big-endian 64-bit words
        words = arr.view(">u8").reshape(-1, 4)
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
        pos = np.empty(len(order), dtype=np.int64)
        pos[order] = np.arange(len(order))
        return cls(arr[order].tobytes(), pos)

    @classmethod
    def from_columns(cls, cids: Iterable[str], labels: Iterable[str]) -> MerkleTree:
        """Tree over parallel columns of CIDs and labels (the manifest's own columns)."""
        return cls.from_leaves(leaf_hash(cid_digest(c), lab) for c, lab in zip(cids, labels, strict=True))

    @classmethod
    def from_items(cls, items: Iterable[_HasCidLabel]) -> MerkleTree:
        """Tree over manifest items (anything with ``cid`` and ``label``)."""
        return cls.from_leaves(leaf_hash(cid_digest(it.cid), it.label) for it in items)

    # queries ------------------------------------------------------------------------------------
    @property
    def root(self) -> bytes:
        return bytes(self._tree[:32])

    def node(self, i: int) -> bytes:
        return bytes(self._tree[i * 32:(i + 1) * 32])

    def leaf(self, index: int) -> bytes:
        """Leaf hash of the input at ``index``."""
        return self.node(2 * self.n - 2 - int(self._pos[index]))

    def _sorted_position(self, leaf: bytes) -> int:
        n, node = self.n, self.node
        # the sorted leaves sit in reverse at the end of the heap: search on the sorted view
        i = bisect.bisect_left(range(n), leaf, key=lambda k: node(2 * n - 2 - k))
        if i == n or node(2 * n - 2 - i) != leaf:
            raise KeyError("leaf is not in the tree")
        return i

    def proof(self, item_or_index: int | _HasCidLabel | bytes) -> list[bytes]:
        """Sibling hashes from a leaf to the root. Pass the input index, an item, or a leaf hash."""
        if isinstance(item_or_index, (int, np.integer)):
            if not 0 <= item_or_index < self.n:
                raise IndexError(f"leaf index {item_or_index} out of range 0..{self.n - 1}")
            pos = int(self._pos[item_or_index])
        elif isinstance(item_or_index, (bytes, bytearray)):
            pos = self._sorted_position(bytes(item_or_index))
        else:
            pos = self._sorted_position(leaf_hash(cid_digest(item_or_index.cid), item_or_index.label))
        i = 2 * self.n - 2 - pos
        proof = []
        while i > 0:
            proof.append(self.node(i + 1 if i % 2 else i - 1))
            i = (i - 1) // 2
        return proof

    def __len__(self) -> int:
        return self.n


def merkle_root(items: Iterable[_HasCidLabel]) -> bytes:
    """Root of the StandardMerkleTree over ``items``' ``(cid_digest, label)`` leaves."""
    return MerkleTree.from_items(items).root
