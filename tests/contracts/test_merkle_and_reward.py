"""`verify_item` against an independent StandardMerkleTree, and the reward rule under splits."""

from __future__ import annotations

import boa
from eth_abi import encode
from eth_utils import keccak
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.contracts.conftest import (
    ETHER,
    create_dataset,
    deploy_market,
    new_account,
    next_block,
    propose,
)

# --- a tiny StandardMerkleTree (OpenZeppelin @openzeppelin/merkle-tree format) -----------------
# leaf = keccak256(keccak256(abi.encode(bytes32, string))); leaves sorted by hash; the tree is a
# complete binary tree in an array (root at 0, children of i at 2i+1 and 2i+2, leaves at the end
# in reverse order); internal nodes hash their two children sorted.


def leaf_hash(cid_digest: bytes, label: str) -> bytes:
    return keccak(keccak(encode(["bytes32", "string"], [cid_digest, label])))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


def build_tree(leaves: list[bytes]) -> list[bytes]:
    hashes = sorted(leaves)
    tree: list[bytes] = [b""] * (2 * len(hashes) - 1)
    for i, h in enumerate(hashes):
        tree[len(tree) - 1 - i] = h
    for i in range(len(tree) - 1 - len(hashes), -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    return tree


def proof_for(tree: list[bytes], leaf: bytes) -> list[bytes]:
    i = tree.index(leaf, len(tree) // 2)
    proof = []
    while i > 0:
        sibling = i - 1 if i % 2 == 0 else i + 1
        proof.append(tree[sibling])
        i = (i - 1) // 2
    return proof


def test_known_vector_single_leaf():
    # one leaf: the root is the leaf hash, the proof is empty
    leaf = leaf_hash(b"\x00" * 32, "")
    assert build_tree([leaf]) == [leaf]


items_strategy = st.lists(
    st.tuples(
        st.binary(min_size=32, max_size=32),
        st.text(max_size=64).filter(lambda s: len(s.encode()) <= 64),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda t: t[0],
)


@settings(max_examples=15, deadline=None)
@given(items=items_strategy, data=st.data())
def test_verify_item_accepts_members_and_rejects_others(items, data):
    market = deploy_market()
    alice = new_account()
    leaves = [leaf_hash(d, label) for d, label in items]
    tree = build_tree(leaves)
    root = tree[0]
    dataset_id, _ = create_dataset(
        market, alice, "m", seed_root=root, seed_count=len(items), reward_r0=10 * ETHER
    )
    pick = data.draw(st.integers(0, len(items) - 1))
    digest, label = items[pick]
    proof = proof_for(tree, leaves[pick])
    assert market.verify_item(dataset_id, 0, digest, label, proof)
    assert not market.verify_item(dataset_id, 0, digest, label + "x", proof)
    other_digest = bytes([digest[0] ^ 1]) + digest[1:]
    assert not market.verify_item(dataset_id, 0, other_digest, label, proof)
    if proof:
        assert not market.verify_item(dataset_id, 0, digest, label, proof[:-1])


def test_verify_item_on_accepted_entry():
    market = deploy_market()
    alice, bob = new_account(), new_account()
    dataset_id, _ = create_dataset(market, alice, "m")
    items = [(keccak(text=f"img{i}"), ["cat", "dog", "éléphant"][i % 3]) for i in range(7)]
    leaves = [leaf_hash(d, label) for d, label in items]
    tree = build_tree(leaves)
    pid = propose(market, bob, dataset_id, items=7, root=tree[0])
    next_block()
    with boa.env.prank(alice):
        market.vote(pid, True)
    market.finalize(pid)
    for (digest, label), leaf in zip(items, leaves):
        assert market.verify_item(dataset_id, 1, digest, label, proof_for(tree, leaf))
        assert not market.verify_item(dataset_id, 0, digest, label, proof_for(tree, leaf))


# --- reward rule ------------------------------------------------------------------------------


def accept(market, proposer, holder, dataset_id, items):
    pid = propose(market, proposer, dataset_id, items=items)
    next_block()
    with boa.env.prank(holder):
        market.vote(pid, True)
    market.finalize(pid)
    return market.get_proposal(pid).shares_minted


def price(r0: int, n0: int, n: int, c: int) -> int:
    """floor(f(n) - f(n + c)) with f(n) = r0 * n0**2 / (n0 + n) exact."""
    return r0 * n0 * n0 * c // ((n0 + n) * (n0 + n + c))


@settings(max_examples=10, deadline=None)
@given(
    r0=st.integers(10**16, 10**20),
    n0=st.integers(1, 10**6),
    seed=st.integers(1, 10**4),
    parts=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
)
def test_splitting_a_batch_never_earns_more(r0, n0, seed, parts):
    """At score 10,000 consecutive batches earn their exact prices floored once each: the
    split total is at most the whole batch's and less by under one unit per extra piece."""
    market = deploy_market()
    alice, bob = new_account(), new_account()
    # create_dataset refuses a seed under one share and a rule a doubled score could push
    # over the supply cap
    assume(price(r0, n0, 0, seed) >= ETHER and r0 * n0 * 2 <= 2**88 - 1)
    whole_market = deploy_market()
    d_split, _ = create_dataset(
        market,
        alice,
        "split",
        reward_r0=r0,
        reward_n0=n0,
        seed_count=seed,
        quorum_bps=1,
        approval_bps=0,
    )
    d_whole, _ = create_dataset(
        whole_market,
        alice,
        "whole",
        reward_r0=r0,
        reward_n0=n0,
        seed_count=seed,
        quorum_bps=1,
        approval_bps=0,
    )
    split = sum(accept(market, bob, alice, d_split, c) for c in parts)
    whole = accept(whole_market, bob, alice, d_whole, sum(parts))
    assert whole == price(r0, n0, seed, sum(parts))
    assert whole - len(parts) < split <= whole
