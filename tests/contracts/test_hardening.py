"""The review's attacks, replayed: each used to freeze or misprice something, none does now.

- maximal scores cannot push minting to the supply cap, so every finalize succeeds;
- a sole holder looping distribute + withdraw cannot drive the per-share total to its cap,
  and a rejected finalize never depends on `distribute` (the stake is held, then released);
- a third party's snapshots and dust transfers cannot freeze an account;
- batches are priced by their place in proposal order, whatever the finalize order;
- a score cannot be posted after the deadline.
"""

from __future__ import annotations

import boa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contracts.conftest import (
    ACCEPTED,
    ETHER,
    EXPIRED,
    PERIOD,
    REJECTED,
    STAKE,
    commit,
    create_dataset,
    deploy_market,
    new_account,
    next_block,
    propose,
)

SUPPLY_CAP = 2**88 - 1
MAG = 2**32


def price(n: int, c: int, score: int = 10_000, r0: int = ETHER, n0: int = 1000) -> int:
    return r0 * n0 * n0 * c // ((n0 + n) * (n0 + n + c)) * score // 10_000


def vote(market, voter, pid, support):
    with boa.env.prank(voter):
        market.vote(pid, support)


def after_deadline():
    boa.env.time_travel(seconds=PERIOD + 1)


# --- supply cap vs scores ---------------------------------------------------------------------


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    n0=st.sampled_from([1, 7, 1000, 2**20]),
    seed=st.integers(1, 50),
    batches=st.lists(
        st.tuples(
            st.integers(1, 10**6),  # items
            st.sampled_from([20_000, 20_000, 19_999, 10_000, 0]),  # score
            st.sampled_from(["yes", "yes", "no", "none"]),  # outcome
        ),
        min_size=1,
        max_size=8,
    ),
    order=st.randoms(use_true_random=False),
)
def test_maximal_scores_never_block_a_finalize(n0, seed, batches, order):
    """The largest reward rule allowed, every batch scored up to 20,000, finalized in any
    order: every finalize succeeds and the supply stays within 2 * r0 * n0 <= the cap."""
    market = deploy_market()
    alice, bob, evaluator = new_account(), new_account(), new_account()
    r0 = SUPPLY_CAP // (2 * n0)
    dataset_id, token = create_dataset(
        market,
        alice,
        "capped",
        reward_r0=r0,
        reward_n0=n0,
        seed_count=seed,
        evaluator=evaluator,
        quorum_bps=1,
    )
    pids = []
    for items, score, outcome in batches:
        pid = propose(market, bob, dataset_id, items)
        with boa.env.prank(evaluator):
            market.post_score(pid, score)
        if outcome != "none":
            vote(market, alice, pid, outcome == "yes")
        pids.append((pid, items, score, outcome))
    after_deadline()
    shuffled = list(pids)
    order.shuffle(shuffled)
    for pid, *_ in shuffled:
        market.finalize(pid)  # never reverts
    # each accepted batch earned at most its price at its place among the accepted batches
    accepted_before = seed
    for pid, items, score, outcome in pids:
        p = market.get_proposal(pid)
        assert p.status == {"yes": ACCEPTED, "no": REJECTED, "none": EXPIRED}[outcome]
        if outcome == "yes":
            assert p.shares_minted <= price(accepted_before, items, score, r0, n0)
            accepted_before += items
    assert token.totalSupply() <= 2 * r0 * n0 <= SUPPLY_CAP


# --- per-share dividend cap -------------------------------------------------------------------


def test_distribute_withdraw_loop_cannot_freeze_the_dividends(market, alice, bob):
    """A sole holder of a minimal supply recycles 200,000 ether through distribute and
    withdraw (over three times what reached the old 65,536-ether-per-share cap); later
    distributions and a rejected finalize still go through."""
    dataset_id, token = create_dataset(market, alice, "tiny", seed_count=2)  # ~2 shares
    supply = token.totalSupply()
    assert supply < 2 * ETHER
    boa.env.set_balance(alice, 2000 * ETHER)
    for _ in range(200):
        with boa.env.prank(alice):
            token.distribute(value=1000 * ETHER)
            token.withdraw()
    # the per-share total grew by 200,000 ether / supply * 2**32: far from its 2**88 cap
    assert token.per_share() <= 200_000 * ETHER * MAG // supply + 200
    assert token.per_share() * 10**10 < 2**88
    assert token.dividends_of(alice) == 0
    carried = token.carried()  # the loop's rounding, not lost: it joins the next payment
    payer = new_account()
    with boa.env.prank(payer):
        token.distribute(value=ETHER)
    pid = propose(market, bob, dataset_id)
    vote(market, alice, pid, False)
    market.finalize(pid)
    p = market.get_proposal(pid)
    assert p.status == REJECTED and market.held_dividends(dataset_id) == 0
    owed = token.dividends_of(alice) + token.carried()
    assert ETHER + STAKE + carried - 2 <= owed <= ETHER + STAKE + carried


def test_rejected_stake_is_held_when_distribute_fails_then_released(market, dataset, alice, bob):
    dataset_id, token = dataset
    pid = propose(market, bob, dataset_id)
    vote(market, alice, pid, False)
    # make the token refuse any distribution ("shares: distribution cap": too much held)
    real = boa.env.get_balance(token.address)
    boa.env.set_balance(token.address, 2**96)
    market.finalize(pid)
    logs = [type(e).__name__ for e in market.get_logs() if e.address == market.address]
    assert logs == ["ProposalFinalized", "DividendsHeld"]
    assert market.get_proposal(pid).status == REJECTED
    assert market.held_dividends(dataset_id) == STAKE
    assert boa.env.get_balance(market.address) == STAKE
    with boa.reverts("shares: distribution cap"):
        market.release_dividends(dataset_id)  # still refused: nothing lost, still held
    assert market.held_dividends(dataset_id) == STAKE
    boa.env.set_balance(token.address, real)
    with boa.env.prank(bob):
        assert market.release_dividends(dataset_id) == STAKE
    (log,) = [e for e in market.get_logs() if e.address == market.address]
    assert (type(log).__name__, log.dataset_id, log.amount) == (
        "DividendsReleased",
        dataset_id,
        STAKE,
    )
    assert market.held_dividends(dataset_id) == 0
    assert boa.env.get_balance(market.address) == 0
    assert token.total_distributed() == STAKE
    assert STAKE - 1 <= token.dividends_of(alice) + token.carried() <= STAKE
    with boa.reverts("market: nothing held"):
        market.release_dividends(dataset_id)
    with boa.reverts("market: unknown dataset"):
        market.release_dividends(dataset_id + 1)


# --- checkpoint-history griefing --------------------------------------------------------------


def test_third_party_cannot_freeze_an_account(market, dataset, alice, bob, carol):
    """carol snapshots every block (commits cost her only gas) and sends bob dust and
    zero-amount transferFroms in between; bob still sends, receives, votes and gets his
    accepted proposal finalized."""
    dataset_id, token = dataset
    with boa.env.prank(alice):
        token.transfer(bob, 10 * ETHER)
        token.transfer(carol, 1000)
    pid = propose(market, bob, dataset_id, 5)
    for i in range(60):
        commit(market, carol, dataset_id, 1, f"grief{i}", i.to_bytes(32, "big"))
        with boa.env.prank(carol):
            token.transfer(bob, 1)
            token.transferFrom(bob, carol, 0)
        next_block()
    with boa.env.prank(bob):
        token.transfer(alice, ETHER)
    with boa.env.prank(alice):
        token.transfer(bob, 3)
    vote(market, alice, pid, True)
    vote(market, bob, pid, True)
    market.finalize(pid)
    assert market.get_proposal(pid).status == ACCEPTED
    assert token.balanceOf(bob) == 9 * ETHER + 60 + 3 + price(100, 5)


# --- pricing order ----------------------------------------------------------------------------


def _two_proposals(reverse: bool) -> tuple[int, int, int]:
    market = deploy_market()
    alice, bob, carol = new_account(), new_account(), new_account()
    dataset_id, token = create_dataset(market, alice, "order")
    first = propose(market, bob, dataset_id, 40)
    second = propose(market, carol, dataset_id, 10)
    for pid in (first, second):
        vote(market, alice, pid, True)
    for pid in (second, first) if reverse else (first, second):
        market.finalize(pid)
    return token.balanceOf(bob), token.balanceOf(carol), market.get_proposal(second).position


def test_batches_are_priced_in_proposal_order():
    """The later proposer who finalizes first does not take the earlier batch's price."""
    bob_rev, carol_rev, position = _two_proposals(reverse=True)
    bob, carol, _ = _two_proposals(reverse=False)
    assert position == 140
    assert (bob_rev, carol_rev) == (bob, carol) == (price(100, 40), price(140, 10))
    # splitting the 50 items over two proposals earns at most what one batch would
    assert price(100, 50) - 2 < bob + carol <= price(100, 50)


def test_pending_batches_count_ahead_of_a_new_one(market, dataset, alice, bob, carol):
    dataset_id, _ = dataset
    first = propose(market, bob, dataset_id, 40)
    assert market.get_dataset(dataset_id).pending_items == 40
    second = propose(market, carol, dataset_id, 10)
    assert market.get_proposal(first).position == 100
    assert market.get_proposal(second).position == 140
    vote(market, alice, first, False)
    market.finalize(first)  # rejected: no longer pending
    assert market.get_dataset(dataset_id).pending_items == 10
    third = propose(market, bob, dataset_id, 5)
    assert market.get_proposal(third).position == 110


def test_a_junk_batch_ahead_stops_counting_once_it_is_gone(market, dataset, alice, bob, carol):
    """carol proposes 2**64 junk items to push bob's batch to a worthless position; once her
    proposal has expired (its deadline comes first), bob's batch is priced at its real place."""
    dataset_id, token = dataset
    junk = propose(market, carol, dataset_id, 2**64)
    genuine = propose(market, bob, dataset_id, 10)
    assert market.get_proposal(genuine).position == 100 + 2**64
    vote(market, alice, genuine, True)
    after_deadline()
    market.finalize(junk)
    assert market.get_proposal(junk).status == EXPIRED
    market.finalize(genuine)
    (log,) = [e for e in market.get_logs() if type(e).__name__ == "ProposalFinalized"]
    assert log.position == 100
    assert token.balanceOf(bob) == price(100, 10)


def test_finalizing_while_junk_is_pending_prices_behind_it(market, dataset, alice, bob, carol):
    """Finalized early, while an earlier batch is still open, a batch stays behind it: it can
    never earn more than its place among accepted batches."""
    dataset_id, token = dataset
    propose(market, carol, dataset_id, 1000)
    genuine = propose(market, bob, dataset_id, 10)
    vote(market, alice, genuine, True)
    market.finalize(genuine)
    assert token.balanceOf(bob) == price(1100, 10)


# --- post_score after the deadline ------------------------------------------------------------


def test_score_cannot_be_posted_after_the_deadline(market, alice, bob):
    evaluator = new_account()
    dataset_id, _ = create_dataset(market, alice, "late", evaluator=evaluator)
    pid = propose(market, bob, dataset_id)
    vote(market, alice, pid, True)
    after_deadline()
    with boa.env.prank(evaluator), boa.reverts("market: voting closed"):
        market.post_score(pid, 20_000)
    market.finalize(pid)
    assert market.get_proposal(pid).scored is False
