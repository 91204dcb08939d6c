"""Merkle trees agree with an independent StandardMerkleTree implementation and with
OpenZeppelin's own npm package (skipped without node and the package, unless
``DATABRIGHT_REQUIRE_NPM`` is set, as CI does: then their absence fails)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from Crypto.Hash import keccak as _keccak
from eth_abi import encode as abi_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from databright.storage.cid import cid_from_digest
from databright.storage.manifest import Item
from databright.storage.merkle import MerkleTree, leaf_hash, merkle_root, verify_proof


# --- independent reference, written from the OpenZeppelin StandardMerkleTree spec --------------
def k256(data: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=data).digest()


def ref_leaf(digest: bytes, label: str) -> bytes:
    return k256(k256(abi_encode(["bytes32", "string"], [digest, label])))


def ref_tree(leaves: list[bytes]) -> list[bytes]:
    """Heap array as OpenZeppelin's makeMerkleTree: sorted leaves reversed at the end."""
    ordered = sorted(leaves)
    size = 2 * len(ordered) - 1
    tree: list[bytes] = [b""] * size
    for i, leaf in enumerate(ordered):
        tree[size - 1 - i] = leaf
    for i in reversed(range(size - len(ordered))):
        left, right = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = k256(b"".join(sorted([left, right])))
    return tree


def ref_proof(tree: list[bytes], leaf: bytes) -> list[bytes]:
    i = tree.index(leaf, len(tree) // 2)
    proof = []
    while i > 0:
        sibling = i + 1 if i % 2 == 1 else i - 1
        proof.append(tree[sibling])
        i = (i - 1) // 2
    return proof


def ref_verify(root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
    node = leaf
    for p in proof:
        node = k256(min(node, p) + max(node, p))
    return node == root


labels = st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 64)
leaf_values = st.lists(st.tuples(st.binary(min_size=32, max_size=32), labels), min_size=1, max_size=40,
                       unique_by=lambda v: v[0])


@settings(max_examples=150, deadline=None)
@given(leaf_values)
def test_roots_and_proofs_match_independent_implementation(values) -> None:
    leaves = [ref_leaf(d, lab) for d, lab in values]
    assert [leaf_hash(d, lab) for d, lab in values] == leaves
    tree = ref_tree(leaves)
    ours = MerkleTree.from_leaves(leaves)
    assert ours.root == tree[0]
    for i, leaf in enumerate(leaves):
        proof = ours.proof(i)
        assert proof == ref_proof(tree, leaf)
        assert ours.proof(leaf) == proof
        assert ours.leaf(i) == leaf
        assert ref_verify(tree[0], leaf, proof) and verify_proof(ours.root, leaf, proof)


@settings(max_examples=50, deadline=None)
@given(leaf_values, st.data())
def test_tampered_proofs_fail(values, data) -> None:
    leaves = [ref_leaf(d, lab) for d, lab in values]
    tree = MerkleTree.from_leaves(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = tree.proof(i)
    other = k256(b"not a leaf")
    assert not verify_proof(tree.root, other, proof)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        assert not verify_proof(tree.root, leaves[i], bad)
        assert not verify_proof(tree.root, leaves[i], proof[:-1])


def test_items_api_and_single_leaf() -> None:
    items = [Item(cid_from_digest(bytes([i]) * 32), f"l{i % 3}", 1, "text/plain", f"n{i}") for i in range(7)]
    tree = MerkleTree.from_items(items)
    assert merkle_root(items) == tree.root == MerkleTree.from_items(reversed(items)).root
    for it in items:
        assert verify_proof(tree.root, leaf_hash(_digest(it), it.label), tree.proof(it))
    one = MerkleTree.from_items(items[:1])
    assert one.root == ref_leaf(_digest(items[0]), items[0].label) and one.proof(0) == []
    with pytest.raises(ValueError):
        MerkleTree.from_leaves([])
    with pytest.raises(KeyError):
        tree.proof(Item(cid_from_digest(bytes(32)), "x", 1, "t", "n"))
    with pytest.raises(IndexError):
        tree.proof(7)


def test_label_changes_the_leaf() -> None:
    d = bytes(range(32))
    assert leaf_hash(d, "cat") != leaf_hash(d, "dog")
    assert leaf_hash(d, "a" * 32) == ref_leaf(d, "a" * 32)  # exactly one word of string data
    assert leaf_hash(d, "") == ref_leaf(d, "")


def _digest(it: Item) -> bytes:
    from databright.storage.cid import cid_digest

    return cid_digest(it.cid)


# --- OpenZeppelin's own implementation, when node and the package are present ------------------
def _oz_dir() -> Path | None:
    candidates = [os.environ.get("OZ_MERKLE_TREE_DIR", ""), str(Path(__file__).parents[2])]
    for c in candidates:
        if c and (Path(c) / "node_modules" / "@openzeppelin" / "merkle-tree").is_dir():
            return Path(c)
    return None


OZ_SCRIPT = """
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const values = JSON.parse(require("fs").readFileSync(0, "utf8"));
const t = StandardMerkleTree.of(values, ["bytes32", "string"]);
console.log(JSON.stringify({ root: t.root, proofs: values.map((_, i) => t.getProof(i)) }));
"""


def test_matches_openzeppelin_npm() -> None:
    # CI sets DATABRIGHT_REQUIRE_NPM=1 (scripts/test.sh): there a missing tool fails the test
    if _oz_dir() is None or shutil.which("node") is None:
        missing = "node" if shutil.which("node") is None else "node_modules/@openzeppelin/merkle-tree"
        if os.environ.get("DATABRIGHT_REQUIRE_NPM"):
            pytest.fail(f"DATABRIGHT_REQUIRE_NPM is set but {missing} is missing (set OZ_MERKLE_TREE_DIR)")
        pytest.skip(f"{missing} not installed (set OZ_MERKLE_TREE_DIR); CI requires it")
    rng = __import__("random").Random(7)
    values = [(rng.randbytes(32), rng.choice(["cat", "dog", "ünïcödé", "", "x" * 64])) for _ in range(33)]
    js = [["0x" + d.hex(), lab] for d, lab in values]
    out = json.loads(subprocess.run(["node", "-e", OZ_SCRIPT], input=json.dumps(js), capture_output=True,
                                    text=True, check=True, cwd=_oz_dir()).stdout)
    tree = MerkleTree.from_leaves(leaf_hash(d, lab) for d, lab in values)
    assert out["root"] == "0x" + tree.root.hex()
    for i in range(len(values)):
        assert out["proofs"][i] == ["0x" + p.hex() for p in tree.proof(i)]
