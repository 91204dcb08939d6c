"""DataMarket: datasets, proposals, votes, scores, finalize outcomes, refunds, views, reverts."""

from __future__ import annotations

import boa
import pytest

from tests.contracts.conftest import (
    ACCEPTED,
    ETHER,
    EXPIRED,
    OPEN,
    PERIOD,
    REJECTED,
    STAKE,
    ZERO,
    commit,
    commitment,
    create_dataset,
    dataset_args,
    new_account,
    next_block,
    propose,
    reveal,
)


def reward(n: int, c: int, score: int = 10_000, r0: int = ETHER, n0: int = 1000) -> int:
    """The price of items [n, n + c): floor(f(n) - f(n + c)) scaled, f(n) = r0 n0^2 / (n0 + n)."""
    return r0 * n0 * n0 * c // ((n0 + n) * (n0 + n + c)) * score // 10_000


def vote(market, voter, proposal_id, support):
    with boa.env.prank(voter):
        market.vote(proposal_id, support)


def give(token, sender, to, amount):
    with boa.env.prank(sender):
        token.transfer(to, amount)


def events(contract):
    """Decoded events the last transaction emitted from `contract` itself."""
    return [e for e in contract.get_logs() if getattr(e, "address", None) == contract.address]


def after_deadline():
    boa.env.time_travel(seconds=PERIOD + 1)


# --- create_dataset ---------------------------------------------------------------------------


def test_create_dataset_records_everything(market, alice):
    with boa.env.prank(alice):
        dataset_id = market.create_dataset(*dataset_args("digits").values())
    logs = events(market)
    assert [type(e).__name__ for e in logs] == ["DatasetCreated", "EntryAdded"]
    created, entry_log = logs
    assert (created.dataset_id, created.name, created.initiator, created.card_cid) == (
        1,
        "digits",
        alice,
        "bafkreicard",
    )
    # every rule is in the event: the index can rebuild the dataset from logs alone
    assert (created.symbol, created.quorum_bps, created.approval_bps, created.voting_period) == (
        "DIG",
        2000,
        5000,
        PERIOD,
    )
    assert (created.stake, created.reward_r0, created.reward_n0, created.evaluator) == (
        STAKE,
        ETHER,
        1000,
        ZERO,
    )
    assert (
        entry_log.index,
        entry_log.item_count,
        entry_log.contributor,
        entry_log.proposal_id,
        entry_log.shares_minted,
        entry_log.first_item,
        entry_log.merkle_root,
    ) == (0, 100, alice, 0, reward(0, 100), 0, b"\x01" * 32)
    assert dataset_id == 1 and market.dataset_count() == 1 and market.proposal_count() == 0
    assert market.share_token_blueprint() != ZERO
    assert market.dataset_id_of("digits") == 1 and market.dataset_id_of("other") == 0
    d = market.get_dataset(1)
    assert (d.name, d.symbol, d.card_cid, d.initiator) == ("digits", "DIG", "bafkreicard", alice)
    assert (d.quorum_bps, d.approval_bps, d.voting_period, d.stake) == (2000, 5000, PERIOD, STAKE)
    assert (d.reward_r0, d.reward_n0, d.evaluator, d.item_count, d.entry_count) == (
        ETHER,
        1000,
        ZERO,
        100,
        1,
    )
    assert d.pending_items == 0
    assert market.root_state(1, b"\x01" * 32) == 2  # the seed's root is registered
    assert created.share_token == d.share_token
    e = market.get_entry(1, 0)
    assert (e.manifest_cid, e.merkle_root, e.item_count, e.contributor) == (
        "bafkreiseed",
        b"\x01" * 32,
        100,
        alice,
    )
    assert (e.proposal_id, e.shares_minted, e.first_item) == (0, reward(0, 100), 0)


def test_seed_shares_minted(market, dataset, alice):
    _, token = dataset
    assert token.balanceOf(alice) == token.totalSupply() == reward(0, 100)


def test_two_datasets_get_two_tokens(market, alice, bob):
    _, t1 = create_dataset(market, alice, "one")
    _, t2 = create_dataset(market, bob, "two")
    assert t1.address != t2.address
    assert market.dataset_count() == 2


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"name": ""}, "market: empty name"),
        ({"quorum_bps": 10_001}, "market: bad quorum"),
        ({"quorum_bps": 0}, "market: bad quorum"),
        ({"approval_bps": 10_001}, "market: bad approval"),
        ({"voting_period": 0}, "market: bad voting period"),
        ({"voting_period": 3650 * 86400 + 1}, "market: bad voting period"),
        ({"reward_n0": 0}, "market: bad reward rule"),
        ({"reward_r0": 2**60, "reward_n0": 2**30}, "market: bad reward rule"),
        ({"reward_r0": 1, "reward_n0": 2**64 + 1}, "market: bad reward rule"),
        ({"reward_r0": 2**88, "reward_n0": 1}, "market: bad reward rule"),
        # r0 * n0 fits the cap, but a maximal score would double it past the cap
        ({"reward_r0": 2**57, "reward_n0": 2**30}, "market: bad reward rule"),
        ({"seed_count": 0}, "market: bad seed"),
        ({"seed_count": 2**64 + 1}, "market: bad seed"),
        ({"reward_r0": 10**15, "seed_count": 1}, "market: bad seed"),  # < 1 whole share
    ],
)
def test_create_dataset_rejects_bad_rules(market, alice, overrides, reason):
    args = dataset_args(**{"name": "x", **overrides})
    with boa.env.prank(alice), boa.reverts(reason):
        market.create_dataset(*args.values())


def test_create_dataset_name_taken(market, alice, bob, dataset):
    with boa.env.prank(bob), boa.reverts("market: name taken"):
        market.create_dataset(*dataset_args("digits").values())


# --- propose ----------------------------------------------------------------------------------


def test_largest_reward_rule_is_accepted(market, alice):
    """The bound is exact: r0 * n0 * 2 == the cap passes (and its seed mints)."""
    n0 = 2**30
    r0 = (2**88 - 1) // (2 * n0)
    dataset_id, token = create_dataset(market, alice, "big", reward_r0=r0, reward_n0=n0)
    assert token.totalSupply() == r0 * n0 * n0 * 100 // (n0 * (n0 + 100))
    assert market.get_dataset(dataset_id).reward_r0 == r0


def test_propose_records_proposal(market, dataset, bob):
    dataset_id, token = dataset
    c = commitment(market, bob, dataset_id, "bafkreim", b"\x02" * 32, 25)
    with boa.env.prank(bob):
        market.commit(dataset_id, c)
    (committed,) = events(market)
    snapshot = boa.env.evm.patch.block_number
    assert (type(committed).__name__, committed.commitment, committed.dataset_id) == (
        "ProposalCommitted",
        c,
        dataset_id,
    )
    assert (committed.proposer, committed.snapshot) == (bob, snapshot)
    assert token.last_snapshot() == snapshot
    assert market.commit_of(bob, c)[0] == snapshot and market.commit_of(bob, c)[2] == dataset_id
    next_block()
    with boa.env.prank(bob):
        pid = market.propose(dataset_id, "bafkreim", b"\x02" * 32, 25, value=STAKE)
    logs = events(market)
    block, now = boa.env.evm.patch.block_number, boa.env.evm.patch.timestamp
    assert block > snapshot
    (log,) = [e for e in logs if type(e).__name__ == "ProposalCreated"]
    assert (log.proposal_id, log.dataset_id, log.proposer, log.manifest_cid) == (
        1,
        1,
        bob,
        "bafkreim",
    )
    assert (log.item_count, log.stake, log.snapshot, log.deadline, log.position) == (
        25,
        STAKE,
        snapshot,
        now + PERIOD,
        100,
    )
    assert pid == 1 and market.proposal_count() == 1
    p = market.get_proposal(pid)
    assert (p.dataset_id, p.proposer, p.manifest_cid, p.merkle_root) == (
        1,
        bob,
        "bafkreim",
        b"\x02" * 32,
    )
    assert (p.item_count, p.stake, p.snapshot, p.deadline) == (25, STAKE, snapshot, now + PERIOD)
    assert p.position == 100
    # the snapshot (the commit block) is already final: its supply is known at once
    assert (p.snapshot_supply, p.yes, p.no, p.score_bps, p.scored, p.status, p.shares_minted) == (
        token.totalSupply(),
        0,
        0,
        10_000,
        False,
        OPEN,
        0,
    )
    assert boa.env.get_balance(market.address) == STAKE
    assert market.commit_of(bob, c) == (0, 0, 0)  # consumed
    assert market.root_state(dataset_id, b"\x02" * 32) == 1
    assert market.get_dataset(dataset_id).pending_items == 25


def test_propose_zero_stake_dataset(market, alice, bob):
    dataset_id, _ = create_dataset(market, alice, "free", stake=0)
    pid = propose(market, bob, dataset_id, value=0)
    assert market.get_proposal(pid).stake == 0


@pytest.mark.parametrize(
    "dataset_id, cid, items, value, reason",
    [
        (0, "m", 1, STAKE, "market: unknown dataset"),
        (2, "m", 1, STAKE, "market: unknown dataset"),
        (1, "", 1, STAKE, "market: empty manifest"),
        (1, "m", 0, STAKE, "market: bad item count"),
        (1, "m", 2**64 + 1, STAKE, "market: bad item count"),
        (1, "m", 1, STAKE - 1, "market: wrong stake"),
        (1, "m", 1, STAKE + 1, "market: wrong stake"),
    ],
)
def test_propose_rejects(market, dataset, bob, dataset_id, cid, items, value, reason):
    commit(market, bob, 1, items, cid, b"\x02" * 32)
    next_block()
    with boa.env.prank(bob), boa.reverts(reason):
        market.propose(dataset_id, cid, b"\x02" * 32, items, value=value)


def test_commit_unknown_dataset(market, dataset, bob):
    with boa.env.prank(bob), boa.reverts("market: unknown dataset"):
        market.commit(2, b"\x05" * 32)


def test_propose_needs_own_earlier_commitment(market, dataset, bob, carol):
    dataset_id, _ = dataset
    root = b"\x09" * 32
    with boa.env.prank(bob), boa.reverts("market: no commitment"):
        market.propose(dataset_id, "m", root, 5, value=STAKE)
    commit(market, bob, dataset_id, 5, "m", root)
    with boa.env.prank(bob), boa.reverts("market: commitment too new"):
        market.propose(dataset_id, "m", root, 5, value=STAKE)
    next_block()
    # a commitment covers exactly one batch: another count, root or CID is not committed
    for args in [("m", root, 6), ("m2", root, 5), ("m", b"\x0a" * 32, 5)]:
        with boa.env.prank(bob), boa.reverts("market: no commitment"):
            market.propose(dataset_id, *args, value=STAKE)
    # bob's commitment is his: carol cannot reveal it, nor commit bob's hash for herself
    with boa.env.prank(carol), boa.reverts("market: no commitment"):
        market.propose(dataset_id, "m", root, 5, value=STAKE)
    with boa.env.prank(carol):
        market.commit(dataset_id, commitment(market, bob, dataset_id, "m", root, 5))
    next_block()
    with boa.env.prank(carol), boa.reverts("market: no commitment"):
        market.propose(dataset_id, "m", root, 5, value=STAKE)
    pid = reveal(market, bob, dataset_id, 5, STAKE, "m", root)
    assert market.get_proposal(pid).proposer == bob
    # consumed: a second reveal has no commitment
    with boa.env.prank(bob), boa.reverts("market: no commitment"):
        market.propose(dataset_id, "m", root, 5, value=STAKE)


def test_commitment_is_bound_to_its_dataset(market, dataset, alice, bob):
    create_dataset(market, alice, "other")
    c = commitment(market, bob, 1, "m", b"\x09" * 32, 5)
    with boa.env.prank(bob):
        market.commit(2, c)  # the right hash, committed under another dataset
    next_block()
    with boa.env.prank(bob), boa.reverts("market: no commitment"):
        market.propose(1, "m", b"\x09" * 32, 5, value=STAKE)


def test_commitment_expires_after_a_day(market, dataset, bob):
    dataset_id, _ = dataset
    commit(market, bob, dataset_id, 5, "m", b"\x09" * 32)
    boa.env.time_travel(seconds=86400 + 1)
    with boa.env.prank(bob), boa.reverts("market: commitment expired"):
        market.propose(dataset_id, "m", b"\x09" * 32, 5, value=STAKE)
    commit(market, bob, dataset_id, 5, "m", b"\x09" * 32)  # committing again refreshes it
    boa.env.time_travel(seconds=86400)
    reveal(market, bob, dataset_id, 5, STAKE, "m", b"\x09" * 32)


def test_commitment_matches_the_python_formula(market, bob):
    from eth_abi import encode
    from eth_utils import keccak

    expected = keccak(
        encode(
            ["address", "uint256", "bytes32", "bytes32", "uint256"],
            [bob, 7, b"\x0b" * 32, keccak(b"bafkreim"), 12],
        )
    )
    assert market.commitment_of(bob, 7, "bafkreim", b"\x0b" * 32, 12) == expected


def test_root_pending_and_registered_are_refused(market, dataset, alice, bob, carol):
    dataset_id, _ = dataset
    commit(market, bob, dataset_id, 5, "seedcopy", b"\x01" * 32)
    next_block()
    with boa.env.prank(bob), boa.reverts("market: root registered"):
        market.propose(dataset_id, "seedcopy", b"\x01" * 32, 5, value=STAKE)
    root = b"\x0c" * 32
    pid = propose(market, bob, dataset_id, 5, root=root)
    commit(market, carol, dataset_id, 5, "copy", root)
    next_block()
    with boa.env.prank(carol), boa.reverts("market: root pending"):
        market.propose(dataset_id, "copy", root, 5, value=STAKE)
    vote(market, alice, pid, False)
    market.finalize(pid)  # rejected: the root is free again
    assert market.root_state(dataset_id, root) == 0
    pid2 = reveal(market, carol, dataset_id, 5, STAKE, "copy", root)
    vote(market, alice, pid2, True)
    market.finalize(pid2)
    assert market.root_state(dataset_id, root) == 2
    commit(market, bob, dataset_id, 5, "again", root)
    next_block()
    with boa.env.prank(bob), boa.reverts("market: root registered"):
        market.propose(dataset_id, "again", root, 5, value=STAKE)


def test_expired_proposal_frees_its_root(market, dataset, bob):
    dataset_id, _ = dataset
    root = b"\x0d" * 32
    pid = propose(market, bob, dataset_id, 5, root=root)
    after_deadline()
    market.finalize(pid)
    assert market.get_proposal(pid).status == EXPIRED
    assert market.root_state(dataset_id, root) == 0
    assert market.get_dataset(dataset_id).pending_items == 0
    propose(market, bob, dataset_id, 5, root=root)


def test_copycat_cannot_get_in_first(market, dataset, alice, bob, carol):
    """carol sees bob's propose (manifest, root) before it is mined and races it."""
    dataset_id, _ = dataset
    root, cid = b"\x0e" * 32, "bafkreibob"
    commit(market, bob, dataset_id, 20, cid, root)
    next_block()
    # without a commitment of her own from an earlier block, carol cannot propose it now
    with boa.env.prank(carol), boa.reverts("market: no commitment"):
        market.propose(dataset_id, cid, root, 20, value=STAKE)
    # her commitment in the same block as her race is too new
    commit(market, carol, dataset_id, 20, cid, root)
    with boa.env.prank(carol), boa.reverts("market: commitment too new"):
        market.propose(dataset_id, cid, root, 20, value=STAKE)
    pid = reveal(market, bob, dataset_id, 20, STAKE, cid, root)
    next_block()
    with boa.env.prank(carol), boa.reverts("market: root pending"):
        market.propose(dataset_id, cid, root, 20, value=STAKE)
    assert market.get_proposal(pid).proposer == bob


def test_copycat_under_a_new_root_earns_nothing(market, alice, bob, carol):
    """Same items re-rooted after the genuine proposal: priced after it, scored 0 by the
    evaluator (duplicates), so it earns no shares even if finalized first."""
    evaluator = new_account()
    dataset_id, token = create_dataset(market, alice, "guarded", evaluator=evaluator)
    genuine = propose(market, bob, dataset_id, 30, root=b"\x10" * 32)
    copy = propose(market, carol, dataset_id, 30, root=b"\x11" * 32)
    assert market.get_proposal(copy).position == market.get_proposal(genuine).position + 30
    with boa.env.prank(evaluator):
        market.post_score(copy, 0)
        market.post_score(genuine, 10_000)
    vote(market, alice, copy, True)
    market.finalize(copy)  # finalized first: no head start
    vote(market, alice, genuine, True)
    market.finalize(genuine)
    assert token.balanceOf(carol) == 0 and market.get_proposal(copy).shares_minted == 0
    assert token.balanceOf(bob) == reward(100, 30)


# --- vote -------------------------------------------------------------------------------------


def test_vote_weight_is_snapshot_balance(market, dataset, alice, bob, carol):
    dataset_id, token = dataset
    give(token, alice, bob, 10 * ETHER)
    commit(market, carol, dataset_id, 10, "m", b"\x02" * 32)
    give(token, alice, carol, 5 * ETHER)  # same block as the commit (the snapshot): counts
    next_block()
    pid = reveal(market, carol, dataset_id, 10, STAKE, "m", b"\x02" * 32)
    give(token, alice, bob, 7 * ETHER)  # the proposal's own block: adds no weight
    next_block()
    supply = token.totalSupply()
    vote(market, alice, pid, True)
    (log,) = events(market)
    assert (type(log).__name__, log.proposal_id, log.voter, log.support, log.weight) == (
        "Voted",
        pid,
        alice,
        True,
        supply - 15 * ETHER,
    )
    vote(market, bob, pid, False)
    vote(market, carol, pid, True)
    p = market.get_proposal(pid)
    assert p.yes == supply - 10 * ETHER and p.no == 10 * ETHER
    assert market.vote_of(pid, bob) == (True, False, 10 * ETHER)
    assert market.vote_of(pid, alice) == (True, True, supply - 15 * ETHER)
    assert market.has_voted(pid, carol) and not market.has_voted(pid, new_account())
    assert market.vote_of(pid, new_account()) == (False, False, 0)


def test_vote_shares_moved_after_snapshot_add_no_weight(market, dataset, alice, bob):
    dataset_id, token = dataset
    pid = propose(market, bob, dataset_id)
    next_block()
    give(token, alice, bob, token.balanceOf(alice))
    with boa.env.prank(bob), boa.reverts("market: no voting power"):
        market.vote(pid, True)
    vote(market, alice, pid, True)  # alice keeps her snapshot weight
    assert market.get_proposal(pid).yes == token.totalSupply()


def test_vote_unknown_proposal(market, dataset, alice):
    with boa.env.prank(alice), boa.reverts("market: unknown proposal"):
        market.vote(1, True)


def test_shares_rented_for_the_proposal_block_never_vote(market, dataset, alice, bob):
    """Vote rental: borrowing shares once the proposal is visible buys no weight, because
    the snapshot is the commit block, before the proposal's block."""
    dataset_id, token = dataset
    commit(market, bob, dataset_id, 10, "m", b"\x02" * 32)
    next_block()
    pid = reveal(market, bob, dataset_id, 10, STAKE, "m", b"\x02" * 32)
    give(token, alice, bob, token.balanceOf(alice))  # rented in the proposal's block
    with boa.env.prank(bob), boa.reverts("market: no voting power"):
        market.vote(pid, True)
    give(token, bob, alice, token.balanceOf(bob))  # and returned
    # voting is open at once, in the proposal's own block
    vote(market, alice, pid, True)
    assert market.get_proposal(pid).yes == token.totalSupply()


def test_vote_closed(market, dataset, alice):
    pid = propose(market, alice, dataset[0])
    after_deadline()
    with boa.env.prank(alice), boa.reverts("market: voting closed"):
        market.vote(pid, True)


def test_vote_twice(market, dataset, alice, bob):
    dataset_id, token = dataset
    give(token, alice, bob, ETHER)
    pid = propose(market, alice, dataset_id)
    next_block()
    vote(market, bob, pid, True)
    with boa.env.prank(bob), boa.reverts("market: already voted"):
        market.vote(pid, False)


def test_vote_not_open(market, dataset, alice):
    pid = propose(market, alice, dataset[0])
    next_block()
    vote(market, alice, pid, True)
    market.finalize(pid)  # early accept: alice holds everything
    with boa.env.prank(alice), boa.reverts("market: proposal not open"):
        market.vote(pid, True)


# --- post_score -------------------------------------------------------------------------------


@pytest.fixture
def scored_dataset(market, alice):
    evaluator = new_account()
    dataset_id, token = create_dataset(market, alice, "scored", evaluator=evaluator)
    return dataset_id, token, evaluator


def test_post_score_scales_shares(market, scored_dataset, alice, bob):
    dataset_id, token, evaluator = scored_dataset
    pid = propose(market, bob, dataset_id, items=50)
    with boa.env.prank(evaluator):
        market.post_score(pid, 15_000)
    (log,) = events(market)
    assert (type(log).__name__, log.proposal_id, log.score_bps) == ("ScorePosted", pid, 15_000)
    p = market.get_proposal(pid)
    assert (p.scored, p.score_bps) == (True, 15_000)
    next_block()
    vote(market, alice, pid, True)
    market.finalize(pid)
    assert token.balanceOf(bob) == reward(100, 50, 15_000)
    assert market.get_proposal(pid).shares_minted == reward(100, 50, 15_000)


def test_post_score_zero_mints_nothing(market, scored_dataset, alice, bob):
    dataset_id, token, evaluator = scored_dataset
    pid = propose(market, bob, dataset_id)
    with boa.env.prank(evaluator):
        market.post_score(pid, 0)
    next_block()
    vote(market, alice, pid, True)
    market.finalize(pid)
    p = market.get_proposal(pid)
    assert (p.status, p.shares_minted, token.balanceOf(bob)) == (ACCEPTED, 0, 0)
    assert market.refund_of(bob) == STAKE


def test_post_score_reverts(market, scored_dataset, alice, bob):
    dataset_id, _, evaluator = scored_dataset
    with boa.env.prank(evaluator), boa.reverts("market: unknown proposal"):
        market.post_score(1, 1)
    pid = propose(market, bob, dataset_id)
    with boa.env.prank(bob), boa.reverts("market: only evaluator"):
        market.post_score(pid, 1)
    with boa.env.prank(evaluator), boa.reverts("market: score out of range"):
        market.post_score(pid, 20_001)
    with boa.env.prank(evaluator):
        market.post_score(pid, 20_000)
    with boa.env.prank(evaluator), boa.reverts("market: already scored"):
        market.post_score(pid, 1)
    after_deadline()
    market.finalize(pid)  # expired: no votes
    with boa.env.prank(evaluator), boa.reverts("market: proposal not open"):
        market.post_score(pid, 1)


def test_post_score_without_evaluator(market, dataset, bob):
    pid = propose(market, bob, dataset[0])
    with boa.env.prank(bob), boa.reverts("market: only evaluator"):
        market.post_score(pid, 1)


# --- finalize ---------------------------------------------------------------------------------


def test_finalize_accepted_after_deadline(market, dataset, alice, bob):
    dataset_id, token = dataset
    give(token, alice, bob, ETHER)
    pid = propose(market, bob, dataset_id, items=40, root=b"\x07" * 32, cid="bafkreibatch")
    vote(market, bob, pid, True)  # tiny yes, quorum not yet met early
    with boa.reverts("market: outcome not final"):
        market.finalize(pid)
    vote(market, alice, pid, True)
    after_deadline()
    supply = token.totalSupply()
    market.finalize(pid)
    logs = events(market)
    assert [type(e).__name__ for e in logs] == ["EntryAdded", "ProposalFinalized", "RefundCredited"]
    shares = reward(100, 40)
    added, finalized = logs[0], logs[1]
    assert (added.shares_minted, added.first_item, added.proposal_id) == (shares, 100, pid)
    assert (finalized.dataset_id, finalized.status, finalized.shares_minted) == (
        dataset_id,
        ACCEPTED,
        shares,
    )
    assert (finalized.snapshot_supply, finalized.yes, finalized.no) == (supply, supply, 0)
    p = market.get_proposal(pid)
    assert (p.status, p.shares_minted, p.snapshot_supply) == (ACCEPTED, shares, supply)
    assert token.balanceOf(bob) == ETHER + shares
    d = market.get_dataset(dataset_id)
    assert (d.item_count, d.entry_count) == (140, 2)
    e = market.get_entry(dataset_id, 1)
    assert (e.manifest_cid, e.merkle_root, e.item_count, e.contributor) == (
        "bafkreibatch",
        b"\x07" * 32,
        40,
        bob,
    )
    assert (e.proposal_id, e.shares_minted, e.first_item) == (pid, shares, 100)
    assert market.refund_of(bob) == STAKE


def test_finalize_rejected_pays_holders(market, dataset, alice, bob):
    dataset_id, token = dataset
    pid = propose(market, bob, dataset_id)
    next_block()
    vote(market, alice, pid, False)
    market.finalize(pid)  # early: alice holds all shares and said no
    p = market.get_proposal(pid)
    assert (p.status, p.shares_minted) == (REJECTED, 0)
    assert market.refund_of(bob) == 0
    assert boa.env.get_balance(market.address) == 0
    assert boa.env.get_balance(token.address) == STAKE
    # alice holds everything: all of it is hers, less what is carried to the next distribution
    assert STAKE - 1 <= token.dividends_of(alice) + token.carried() <= STAKE
    assert token.carried() <= token.totalSupply() // 2**32 + 1
    assert market.get_dataset(dataset_id).entry_count == 1


def test_finalize_expired_refunds(market, dataset, alice, bob):
    dataset_id, token = dataset
    give(token, alice, bob, ETHER)
    pid = propose(market, bob, dataset_id)
    next_block()
    vote(market, bob, pid, True)  # far below the 20 % quorum
    after_deadline()
    market.finalize(pid)
    p = market.get_proposal(pid)
    assert p.status == EXPIRED
    assert market.refund_of(bob) == STAKE
    before = boa.env.get_balance(bob)
    with boa.env.prank(bob):
        assert market.withdraw_refund() == STAKE
    (log,) = events(market)
    assert (type(log).__name__, log.account, log.amount) == ("RefundWithdrawn", bob, STAKE)
    assert boa.env.get_balance(bob) == before + STAKE
    assert market.refund_of(bob) == 0
    assert boa.env.get_balance(market.address) == 0


def test_finalize_rejected_at_deadline(market, dataset, alice, bob, carol):
    dataset_id, token = dataset
    supply = token.totalSupply()
    give(token, alice, bob, supply * 3 // 10)
    give(token, alice, carol, supply * 2 // 10)
    pid = propose(market, carol, dataset_id)
    next_block()
    vote(market, bob, pid, False)
    vote(market, carol, pid, True)  # 30 % no, 20 % yes: quorum met, approval failing
    with boa.reverts("market: outcome not final"):
        market.finalize(pid)  # alice's 50 % could still swing it
    after_deadline()
    market.finalize(pid)
    assert market.get_proposal(pid).status == REJECTED


def test_early_accept_waits_for_evaluator(market, scored_dataset, alice, bob):
    dataset_id, _, evaluator = scored_dataset
    pid = propose(market, bob, dataset_id)
    next_block()
    vote(market, alice, pid, True)
    with boa.reverts("market: outcome not final"):
        market.finalize(pid)
    with boa.env.prank(evaluator):
        market.post_score(pid, 10_000)
    market.finalize(pid)
    assert market.get_proposal(pid).status == ACCEPTED


def test_early_reject_ignores_missing_score(market, scored_dataset, alice, bob):
    dataset_id, _, _ = scored_dataset
    pid = propose(market, bob, dataset_id)
    next_block()
    vote(market, alice, pid, False)
    market.finalize(pid)
    assert market.get_proposal(pid).status == REJECTED


def test_finalize_reverts(market, dataset, alice, bob):
    dataset_id, _ = dataset
    with boa.reverts("market: unknown proposal"):
        market.finalize(1)
    pid = propose(market, bob, dataset_id)
    with boa.reverts("market: outcome not final"):
        market.finalize(pid)
    after_deadline()
    market.finalize(pid)
    with boa.reverts("market: proposal not open"):
        market.finalize(pid)


def test_finalized_proposal_is_frozen(market, dataset, alice, bob):
    dataset_id, token = dataset
    pid = propose(market, bob, dataset_id)
    next_block()
    vote(market, alice, pid, True)
    market.finalize(pid)
    before = market.get_proposal(pid)
    give(token, alice, bob, ETHER)
    propose(market, bob, dataset_id)
    boa.env.time_travel(seconds=10 * PERIOD)
    assert market.get_proposal(pid) == before


def test_withdraw_refund_nothing(market, alice):
    with boa.env.prank(alice), boa.reverts("market: nothing to refund"):
        market.withdraw_refund()


# --- views ------------------------------------------------------------------------------------


def test_view_reverts(market, dataset):
    with boa.reverts("market: unknown dataset"):
        market.get_dataset(0)
    with boa.reverts("market: unknown dataset"):
        market.get_dataset(2)
    with boa.reverts("market: unknown proposal"):
        market.get_proposal(1)
    with boa.reverts("market: unknown entry"):
        market.get_entry(1, 1)
    with boa.reverts("market: unknown entry"):
        market.get_entry(2, 0)
    with boa.reverts("market: unknown entry"):
        market.verify_item(1, 1, b"\x00" * 32, "cat", [])
    with boa.reverts("market: unknown dataset"):
        market.reward_for(2, 1, 10_000)
    with boa.reverts("market: score out of range"):
        market.reward_for(1, 1, 20_001)
    with boa.reverts("market: bad item count"):
        market.reward_for(1, 2**64 + 1, 10_000)


def test_reward_for_previews_current_size(market, dataset, alice, bob):
    dataset_id, _ = dataset
    assert market.reward_for(dataset_id, 10, 10_000) == reward(100, 10)
    assert market.reward_for(dataset_id, 10, 5_000) == reward(100, 10, 5_000)
    assert market.reward_for(dataset_id, 0, 10_000) == 0
    pid = propose(market, bob, dataset_id, items=10)
    # a pending batch is ahead of whatever is proposed next
    assert market.reward_for(dataset_id, 10, 10_000) == reward(110, 10)
    vote(market, alice, pid, True)
    market.finalize(pid)
    assert market.reward_for(dataset_id, 10, 10_000) == reward(110, 10)


class _Reenter:
    SOURCE = """
interface M:
    def commit(d: uint256, c: bytes32): nonpayable
    def commitment_of(p: address, d: uint256, cid: String[100], r: bytes32, n: uint256) -> bytes32: view
    def propose(d: uint256, cid: String[100], root: bytes32, n: uint256) -> uint256: payable
    def withdraw_refund() -> uint256: nonpayable

market: public(address)
depth: public(uint256)

@deploy
def __init__(market: address):
    self.market = market

@external
def prepare(dataset_id: uint256):
    c: bytes32 = staticcall M(self.market).commitment_of(self, dataset_id, "m", empty(bytes32), 1)
    extcall M(self.market).commit(dataset_id, c)

@external
@payable
def go(dataset_id: uint256):
    extcall M(self.market).propose(dataset_id, "m", empty(bytes32), 1, value=msg.value)

@external
def pull():
    extcall M(self.market).withdraw_refund()

@external
@payable
def __default__():
    if self.depth == 0:
        self.depth = 1
        extcall M(self.market).withdraw_refund()
"""


def test_withdraw_refund_is_nonreentrant(market, dataset, alice):
    dataset_id, _ = dataset
    attacker = boa.loads(_Reenter.SOURCE, market.address)
    with boa.env.prank(alice):
        attacker.prepare(dataset_id)
    next_block()
    with boa.env.prank(alice):
        attacker.go(dataset_id, value=STAKE)
    after_deadline()
    market.finalize(1)  # expired: refund credited to the attacker contract
    assert market.refund_of(attacker.address) == STAKE
    with boa.reverts():
        attacker.pull()
    assert market.refund_of(attacker.address) == STAKE
