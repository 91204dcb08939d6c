"""The DataMarket and ShareToken wrappers, end to end, on the embedded chain and on anvil.

The same tests run on both providers (the ``chain`` fixture); only the provider changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from databright.chain.data_market import DataMarket, commitment_of
from databright.chain.deploy import deploy_market
from databright.chain.provider import Chain
from databright.chain.share_token import ShareToken
from databright.errors import (
    AlreadyVotedError,
    ContractNotFoundError,
    ContractRevert,
    InsufficientSharesError,
    InvalidArgumentError,
    NameTakenError,
    NotFoundError,
    NothingToWithdrawError,
    PermissionDenied,
    TooEarlyError,
    VotingClosedError,
    WrongStakeError,
)

STAKE = 10**17
PERIOD = 3600
R0, N0 = 10**18, 100
SHARE = 10**18


def leaf(cid_digest: bytes, label: str) -> bytes:
    """OpenZeppelin StandardMerkleTree leaf of ``(bytes32, string)``."""
    return keccak(keccak(encode(["bytes32", "string"], [cid_digest, label])))


def pair(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


ITEMS = [(keccak(b"item-a"), "cat"), (keccak(b"item-b"), "dog")]
ROOT = pair(leaf(*ITEMS[0]), leaf(*ITEMS[1]))


def price(n: int, c: int, score: int = 10_000) -> int:
    """Shares for items [n, n + c): floor(f(n) - f(n + c)) * score, f(n) = r0 n0^2 / (n0 + n)."""
    return R0 * N0 * N0 * c // ((N0 + n) * (N0 + n + c)) * score // 10_000


def root(i: int) -> bytes:
    """A fresh batch root (the seed's is ROOT)."""
    return keccak(f"batch-{i}".encode())


class World:
    """A deployed market with three funded people: alice (initiator), bob, carol."""

    def __init__(self, chain: Chain, new_account: Callable[..., LocalAccount]) -> None:
        self.chain = chain
        self.alice, self.bob, self.carol = new_account(), new_account(), new_account()
        addresses = deploy_market(chain, self.alice)
        self.addresses = addresses
        self.market = DataMarket(chain, addresses["DataMarket"])
        self.batches = 0

    def create(self, name: str = "digits", **overrides: Any) -> tuple[int, ShareToken]:
        args: dict[str, Any] = {
            "name": name,
            "symbol": "DIG",
            "card_cid": "bafkreicard",
            "seed_cid": "bafkreiseed",
            "seed_root": ROOT,
            "seed_count": 10,
            "quorum_bps": 5000,
            "approval_bps": 5000,
            "voting_period": PERIOD,
            "stake": STAKE,
            "reward_r0": R0,
            "reward_n0": N0,
        }
        args.update(overrides)
        dataset_id, _ = self.market.create_dataset(self.alice, **args)
        info = self.market.get_dataset(dataset_id)
        return dataset_id, ShareToken(self.chain, info.share_token)

    def propose(self, dataset_id: int, who: LocalAccount, count: int = 5) -> int:
        self.batches += 1
        pid, _ = self.market.propose(who, dataset_id, "bafkreimanifest", root(self.batches), count)
        return pid


@pytest.fixture
def world(chain: Chain, new_account: Callable[..., LocalAccount]) -> World:
    return World(chain, new_account)


def test_deploy(world: World) -> None:
    code = bytes(world.chain.w3.eth.get_code(world.addresses["ShareTokenBlueprint"]))
    assert code.startswith(bytes.fromhex("fe7100"))
    assert world.market.dataset_count() == 0 and world.market.proposal_count() == 0


def test_create_dataset(world: World) -> None:
    ds, token = world.create()
    assert ds == 1 and world.market.dataset_id_of("digits") == 1
    assert world.market.dataset_id_of("nope") == 0
    info = world.market.get_dataset(ds)
    assert (info.name, info.symbol, info.initiator) == ("digits", "DIG", world.alice.address)
    assert (info.stake, info.voting_period, info.item_count, info.entry_count) == (
        STAKE,
        PERIOD,
        10,
        1,
    )
    with pytest.raises(FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]
    seed = world.market.get_entry(ds, 0)
    assert (seed.contributor, seed.item_count, seed.first_item, seed.merkle_root) == (
        world.alice.address,
        10,
        0,
        ROOT,
    )
    assert seed.shares_minted == price(0, 10)
    assert token.balanceOf(world.alice.address) == token.totalSupply() == seed.shares_minted
    assert (token.name(), token.symbol(), token.decimals()) == ("digits", "DIG", 18)
    assert world.market.reward_for(ds, 5) == price(10, 5)
    assert info.pending_items == 0 and world.market.root_state(ds, ROOT) == "registered"


def test_create_dataset_refusals(world: World) -> None:
    world.create()
    with pytest.raises(NameTakenError, match="market: name taken"):
        world.create()
    with pytest.raises(InvalidArgumentError, match="market: bad quorum"):
        world.create("other", quorum_bps=10_001)
    with pytest.raises(InvalidArgumentError, match="market: bad quorum"):
        world.create("other", quorum_bps=0)
    with pytest.raises(InvalidArgumentError, match="market: bad reward rule"):
        world.create("other", reward_r0=2**87 // N0 + 1)  # a doubled score would pass the cap
    with pytest.raises(InvalidArgumentError, match="market: empty name"):
        world.create("")


def test_propose_and_read(world: World) -> None:
    ds, token = world.create()
    batch = root(1)
    commitment = commitment_of(world.bob.address, ds, "bafkreimanifest", batch, 5)
    assert commitment == world.chain.call(
        world.market.contract.functions.commitment_of(
            world.bob.address, ds, "bafkreimanifest", batch, 5
        )
    )
    snapshot, _ = world.market.commit(world.bob, ds, commitment)
    assert token.last_snapshot() == snapshot
    committed = world.market.commit_of(world.bob.address, commitment)
    assert (committed.block, committed.dataset_id) == (snapshot, ds)
    pid, receipt = world.market.reveal(world.bob, ds, "bafkreimanifest", batch, 5)
    assert pid == 1 and receipt["blockNumber"] > snapshot
    assert world.market.commit_of(world.bob.address, commitment).block == 0  # consumed
    p = world.market.get_proposal(pid)
    block = world.chain.w3.eth.get_block(receipt["blockNumber"])
    assert (p.dataset_id, p.proposer, p.item_count, p.stake, p.status) == (
        ds,
        world.bob.address,
        5,
        STAKE,
        "open",
    )
    assert p.snapshot == snapshot and p.deadline == block["timestamp"] + PERIOD
    assert p.merkle_root == batch and p.yes == p.no == 0
    assert p.position == 10 and p.snapshot_supply == token.totalSupply()
    assert world.market.get_dataset(ds).pending_items == 5
    assert world.market.root_state(ds, batch) == "pending"
    # the wrapper's propose does both steps; a second batch is priced after the pending one
    pid2, _ = world.market.propose(world.carol, ds, "bafkreimanifest2", root(2), 3)
    assert world.market.get_proposal(pid2).position == 15


def test_propose_refusals(world: World) -> None:
    ds, _ = world.create()
    with pytest.raises(WrongStakeError, match="market: wrong stake"):
        world.market.propose(world.bob, ds, "bafkreim", root(1), 5, value=STAKE - 1)
    with pytest.raises(ContractNotFoundError):
        world.market.propose(world.bob, 99, "bafkreim", root(1), 5, value=STAKE)
    with pytest.raises(InvalidArgumentError, match="market: bad item count"):
        world.market.propose(world.bob, ds, "bafkreim", root(1), 0)
    with pytest.raises(ContractRevert, match="market: root registered"):
        world.market.propose(world.bob, ds, "bafkreim", ROOT, 5)  # the seed's root


def test_copycat_cannot_take_a_pending_batch(world: World) -> None:
    """carol copies bob's batch: his commitment is useless to her, the root is taken."""
    ds, _ = world.create()
    batch = root(1)
    commitment = commitment_of(world.bob.address, ds, "bafkreibob", batch, 5)
    world.market.commit(world.bob, ds, commitment)
    with pytest.raises(PermissionDenied, match="market: no commitment"):
        world.market.reveal(world.carol, ds, "bafkreibob", batch, 5)
    world.market.commit(world.carol, ds, commitment)  # bob's hash, committed by carol
    with pytest.raises(PermissionDenied, match="market: no commitment"):
        world.market.reveal(world.carol, ds, "bafkreibob", batch, 5)
    pid, _ = world.market.reveal(world.bob, ds, "bafkreibob", batch, 5)
    with pytest.raises(ContractRevert, match="market: root pending"):
        world.market.propose(world.carol, ds, "bafkreibob", batch, 5)
    assert world.market.get_proposal(pid).proposer == world.bob.address
    assert world.market.root_state(ds, batch) == "pending"


def test_unknown_ids_are_not_found(world: World) -> None:
    ds, _ = world.create()
    with pytest.raises(NotFoundError, match="market: unknown proposal"):
        world.market.get_proposal(7)
    with pytest.raises(NotFoundError, match="market: unknown dataset"):
        world.market.get_dataset(2)
    with pytest.raises(NotFoundError, match="market: unknown entry"):
        world.market.get_entry(ds, 1)


def test_vote_accept_early_mints_and_refunds(world: World) -> None:
    ds, token = world.create()
    pid = world.propose(ds, world.bob)
    weight, _ = world.market.vote(world.alice, pid, True)
    assert weight == token.balanceOf(world.alice.address)
    assert world.market.has_voted(pid, world.alice.address)
    assert world.market.vote_of(pid, world.alice.address) == (True, True, weight)
    with pytest.raises(AlreadyVotedError, match="market: already voted"):
        world.market.vote(world.alice, pid, False)
    status, _ = world.market.finalize(world.carol, pid)  # decisive before the deadline
    assert status == "accepted"
    p = world.market.get_proposal(pid)
    assert p.status == "accepted" and p.shares_minted == price(10, 5)
    assert token.balanceOf(world.bob.address) == p.shares_minted
    entry = world.market.get_entry(ds, 1)
    assert (entry.contributor, entry.first_item, entry.proposal_id) == (world.bob.address, 10, pid)
    assert world.market.get_dataset(ds).item_count == 15
    assert world.market.refund_of(world.bob.address) == STAKE
    before = world.chain.balance(world.bob.address)
    paid, receipt = world.market.withdraw_refund(world.bob)
    assert paid == STAKE
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert world.chain.balance(world.bob.address) == before + STAKE - fee
    with pytest.raises(NothingToWithdrawError, match="market: nothing to refund"):
        world.market.withdraw_refund(world.bob)
    with pytest.raises(VotingClosedError, match="market: proposal not open"):
        world.market.vote(world.bob, pid, True)
    with pytest.raises(VotingClosedError):
        world.market.finalize(world.carol, pid)


def test_verify_item(world: World) -> None:
    ds, _ = world.create()
    a, b = leaf(*ITEMS[0]), leaf(*ITEMS[1])
    assert world.market.verify_item(ds, 0, ITEMS[0][0], "cat", [b])
    assert world.market.verify_item(ds, 0, ITEMS[1][0], "dog", [a])
    assert not world.market.verify_item(ds, 0, ITEMS[0][0], "dog", [b])


def test_reject_pays_stake_to_holders(world: World) -> None:
    ds, token = world.create()
    pid = world.propose(ds, world.bob)
    world.market.vote(world.alice, pid, False)
    status, _ = world.market.finalize(world.carol, pid)
    assert status == "rejected"
    assert world.market.refund_of(world.bob.address) == 0
    owed = token.dividends_of(world.alice.address)
    # alice holds everything: the stake is hers, less the rounding carried to the next payment
    assert STAKE - 1 <= owed + token.carried() <= STAKE
    assert token.carried() <= token.totalSupply() // 2**32 + 1
    assert world.market.held_dividends(ds) == 0
    assert token.total_distributed() == STAKE
    paid, _ = token.withdraw(world.alice)
    assert paid == owed and token.withdrawn_of(world.alice.address) == owed
    assert token.total_withdrawn() == owed
    with pytest.raises(NothingToWithdrawError, match="shares: nothing to withdraw"):
        token.withdraw(world.alice)


def test_expire_after_deadline_with_time_travel(world: World) -> None:
    ds, _ = world.create()
    pid = world.propose(ds, world.bob)
    with pytest.raises(TooEarlyError, match="market: outcome not final"):
        world.market.finalize(world.carol, pid)
    world.chain.advance_time(PERIOD + 1)
    with pytest.raises(VotingClosedError, match="market: voting closed"):
        world.market.vote(world.alice, pid, True)
    status, _ = world.market.finalize(world.carol, pid)
    assert status == "expired"
    assert world.market.refund_of(world.bob.address) == STAKE


def test_accept_after_deadline(world: World) -> None:
    ds, token = world.create(approval_bps=6000)
    token.transfer(world.alice, world.carol.address, token.balanceOf(world.alice.address) // 2)
    pid = world.propose(ds, world.bob)
    world.market.vote(world.alice, pid, True)  # half the supply: quorum, not yet decisive
    with pytest.raises(TooEarlyError):
        world.market.finalize(world.bob, pid)
    world.chain.advance_time(PERIOD)
    assert world.market.finalize(world.bob, pid).value == "accepted"


def test_shares_moved_after_snapshot_add_no_weight(world: World) -> None:
    ds, token = world.create()
    pid = world.propose(ds, world.bob)
    snapshot = world.market.get_proposal(pid).snapshot
    token.transfer(world.alice, world.carol.address, SHARE)
    assert token.balanceOf(world.carol.address) == SHARE
    assert token.balance_at(world.carol.address, snapshot) == 0
    with pytest.raises(PermissionDenied, match="market: no voting power"):
        world.market.vote(world.carol, pid, True)
    weight, _ = world.market.vote(world.alice, pid, True)
    assert weight == token.total_supply_at(snapshot)


def test_transfer_and_allowance(world: World) -> None:
    _ds, token = world.create()
    token.transfer(world.alice, world.bob.address, 3 * SHARE)
    assert token.balanceOf(world.bob.address) == 3 * SHARE
    with pytest.raises(InsufficientSharesError, match="shares: insufficient balance"):
        token.transfer(world.carol, world.bob.address, 1)
    token.approve(world.bob, world.carol.address, SHARE)
    assert token.allowance(world.bob.address, world.carol.address) == SHARE
    token.transferFrom(world.carol, world.bob.address, world.carol.address, SHARE)
    assert token.balanceOf(world.carol.address) == SHARE
    with pytest.raises(InsufficientSharesError, match="shares: insufficient allowance"):
        token.transferFrom(world.carol, world.bob.address, world.carol.address, 1)


def test_distribute_and_withdraw(world: World) -> None:
    _ds, token = world.create()
    supply = token.totalSupply()
    token.transfer(world.alice, world.bob.address, supply // 4)
    amount, _ = token.distribute(world.carol, 4 * 10**16)
    assert amount == 4 * 10**16
    bob, alice, carried = (
        token.dividends_of(world.bob.address),
        token.dividends_of(world.alice.address),
        token.carried(),
    )
    # pro rata, less under 1 wei each and the carried rounding (< supply / 2**32 + 1 wei)
    assert carried <= supply // 2**32 + 1
    assert 4 * 10**16 - 2 <= bob + alice + carried <= 4 * 10**16
    assert 10**16 - carried - 1 <= bob <= 10**16
    assert 3 * 10**16 - carried - 1 <= alice <= 3 * 10**16
    paid, _ = token.withdraw(world.bob)
    assert (
        paid == token.withdrawn_of(world.bob.address) and token.dividends_of(world.bob.address) == 0
    )
    with pytest.raises(NothingToWithdrawError, match="shares: nothing to distribute"):
        token.distribute(world.carol, 0)


def test_post_score(world: World) -> None:
    ds, _ = world.create(evaluator=world.carol.address)
    pid = world.propose(ds, world.bob)
    with pytest.raises(PermissionDenied, match="market: only evaluator"):
        world.market.post_score(world.bob, pid, 5000)
    with pytest.raises(InvalidArgumentError, match="market: score out of range"):
        world.market.post_score(world.carol, pid, 20_001)
    assert world.market.post_score(world.carol, pid, 5000).value == 5000
    p = world.market.get_proposal(pid)
    assert p.scored and p.score_bps == 5000
    world.market.vote(world.alice, pid, True)
    assert world.market.finalize(world.bob, pid).value == "accepted"
    assert world.market.get_proposal(pid).shares_minted == price(10, 5, 5000)


def test_market_only_functions(world: World) -> None:
    _, token = world.create()
    with pytest.raises(PermissionDenied, match="shares: only market"):
        world.chain.send(token.contract.functions.mint(world.bob.address, 1), world.bob)


def test_event_logs(world: World) -> None:
    """The logs alone carry each dataset's rules and each proposal's price and snapshot."""
    ds, _ = world.create(evaluator=world.carol.address)
    pid = world.propose(ds, world.bob)
    (created,) = [e["args"] for e in world.market.logs("DatasetCreated")]
    assert (created["name"], created["symbol"], created["quorum_bps"]) == ("digits", "DIG", 5000)
    assert (created["approval_bps"], created["voting_period"], created["stake"]) == (
        5000,
        PERIOD,
        STAKE,
    )
    assert (created["reward_r0"], created["reward_n0"], created["evaluator"]) == (
        R0,
        N0,
        world.carol.address,
    )
    (seed,) = [e["args"] for e in world.market.logs("EntryAdded")]
    assert (seed["shares_minted"], seed["first_item"]) == (price(0, 10), 0)
    (committed,) = [e["args"] for e in world.market.logs("ProposalCommitted")]
    (proposed,) = [e["args"] for e in world.market.logs("ProposalCreated", from_block=0)]
    assert proposed["proposer"] == committed["proposer"] == world.bob.address
    assert (proposed["snapshot"], proposed["position"]) == (committed["snapshot"], 10)
    world.market.post_score(world.carol, pid, 5000)
    world.market.vote(world.alice, pid, True)
    world.market.finalize(world.bob, pid)
    (final,) = [e["args"] for e in world.market.logs("ProposalFinalized")]
    supply = price(0, 10)
    assert (final["status"], final["shares_minted"], final["dataset_id"]) == (
        2,
        price(10, 5, 5000),
        ds,
    )
    assert (final["snapshot_supply"], final["yes"], final["no"]) == (supply, supply, 0)
