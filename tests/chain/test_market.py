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

from databright.chain.deploy import deploy_market
from databright.chain.market_contract import MarketContract
from databright.chain.provider import Chain
from databright.chain.share_token import ShareTokenContract
from databright.errors import (
    AlreadyVotedError,
    ContractNotFoundError,
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


def F(n: int) -> int:
    return R0 * N0 * N0 // (N0 + n)


class World:
    """A deployed market with three funded people: alice (initiator), bob, carol."""

    def __init__(self, chain: Chain, new_account: Callable[..., LocalAccount]) -> None:
        self.chain = chain
        self.alice, self.bob, self.carol = new_account(), new_account(), new_account()
        addresses = deploy_market(chain, self.alice)
        self.addresses = addresses
        self.market = MarketContract(chain, addresses["DataMarket"])

    def create(self, name: str = "digits", **overrides: Any) -> tuple[int, ShareTokenContract]:
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
        return dataset_id, ShareTokenContract(self.chain, info.share_token)

    def propose(self, dataset_id: int, who: LocalAccount, count: int = 5) -> int:
        pid, _ = self.market.propose(who, dataset_id, "bafkreimanifest", ROOT, count)
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
    assert seed.shares_minted == F(0) - F(10)
    assert token.balanceOf(world.alice.address) == token.totalSupply() == seed.shares_minted
    assert (token.name(), token.symbol(), token.decimals()) == ("digits", "DIG", 18)
    assert world.market.reward_for(ds, 5) == F(10) - F(15)


def test_create_dataset_refusals(world: World) -> None:
    world.create()
    with pytest.raises(NameTakenError, match="market: name taken"):
        world.create()
    with pytest.raises(InvalidArgumentError, match="market: bad quorum"):
        world.create("other", quorum_bps=10_001)
    with pytest.raises(InvalidArgumentError, match="market: empty name"):
        world.create("")


def test_propose_and_read(world: World) -> None:
    ds, _ = world.create()
    pid, receipt = world.market.propose(world.bob, ds, "bafkreimanifest", ROOT, 5)
    assert pid == 1
    p = world.market.get_proposal(pid)
    block = world.chain.w3.eth.get_block(receipt["blockNumber"])
    assert (p.dataset_id, p.proposer, p.item_count, p.stake, p.status) == (
        ds,
        world.bob.address,
        5,
        STAKE,
        "open",
    )
    assert p.snapshot == receipt["blockNumber"] and p.deadline == block["timestamp"] + PERIOD
    assert p.merkle_root == ROOT and p.yes == p.no == 0


def test_propose_refusals(world: World) -> None:
    ds, _ = world.create()
    with pytest.raises(WrongStakeError, match="market: wrong stake"):
        world.market.propose(world.bob, ds, "bafkreim", ROOT, 5, value=STAKE - 1)
    with pytest.raises(ContractNotFoundError):
        world.market.propose(world.bob, 99, "bafkreim", ROOT, 5, value=STAKE)
    with pytest.raises(InvalidArgumentError, match="market: bad item count"):
        world.market.propose(world.bob, ds, "bafkreim", ROOT, 0)


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
    assert p.status == "accepted" and p.shares_minted == F(10) - F(15)
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
    assert STAKE - 1 <= owed <= STAKE  # running-total rounding: under 1 wei per holder
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
    assert token.dividends_of(world.bob.address) == pytest.approx(10**16, abs=2)
    assert token.dividends_of(world.alice.address) == pytest.approx(3 * 10**16, abs=2)
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
    assert world.market.get_proposal(pid).shares_minted == (F(10) - F(15)) * 5000 // 10_000


def test_market_only_functions(world: World) -> None:
    _, token = world.create()
    with pytest.raises(PermissionDenied, match="shares: only market"):
        world.chain.send(token.contract.functions.mint(world.bob.address, 1), world.bob)


def test_event_logs(world: World) -> None:
    ds, _ = world.create()
    world.propose(ds, world.bob)
    created = world.market.logs("DatasetCreated")
    assert [e["args"]["name"] for e in created] == ["digits"]
    proposed = world.market.logs("ProposalCreated", from_block=0)
    assert proposed[0]["args"]["proposer"] == world.bob.address
