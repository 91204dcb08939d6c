"""The contracts' on-chain behaviour through web3.py, on the embedded chain and on anvil.

The unit tests of test_data_market.py and test_share_token.py run on titanoboa (fast, with
pranks and storage pokes); this module replays the behaviour a user relies on through the same
provider fixture as tests/chain (``chain``: embedded, then anvil), with real signed transactions,
one block each. What needs two transactions in one block, another sender than a key, or storage
pokes stays on titanoboa.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_canonical_address

from databright.chain.data_market import DataMarket, commitment_of
from databright.chain.deploy import deploy_market
from databright.chain.provider import Chain
from databright.chain.share_token import ShareToken
from databright.chain.wrapper import ZERO_ADDRESS
from databright.errors import (
    AlreadyVotedError,
    ContractNotFoundError,
    ContractRevert,
    InsufficientSharesError,
    InvalidArgumentError,
    NothingToWithdrawError,
    PermissionDenied,
    TooEarlyError,
    VotingClosedError,
)
from tests.chain.conftest import anvil_url, chain  # noqa: F401 - the provider fixtures

ETHER = 10**18
STAKE = ETHER // 100
PERIOD = 3600
R0, N0 = ETHER, 1000
ZERO = "0x" + "00" * 20
SEED_ROOT = b"\x01" * 32
ACCT_SLOT = 7  # storage slot of ShareToken._acct (vyper -f layout)


def price(n: int, c: int, score: int = 10_000) -> int:
    return R0 * N0 * N0 * c // ((N0 + n) * (N0 + n + c)) * score // 10_000


class World:
    """A market on ``chain`` with alice (initiator), bob and carol, all funded."""

    def __init__(self, chain: Chain) -> None:  # noqa: F811 - the fixture
        self.chain = chain
        self.alice, self.bob, self.carol = (self.account() for _ in range(3))
        addresses = deploy_market(chain, self.alice)
        self.market = DataMarket(chain, addresses["DataMarket"])
        self.roots = 0

    def account(self, wei: int = 1000 * ETHER) -> LocalAccount:
        account: LocalAccount = Account.create()
        self.chain.fund(account.address, wei)
        return account

    def create(self, name: str = "digits", **overrides: Any) -> tuple[int, ShareToken]:
        args: dict[str, Any] = {
            "name": name,
            "symbol": "DIG",
            "card_cid": "bafkreicard",
            "seed_cid": "bafkreiseed",
            "seed_root": SEED_ROOT,
            "seed_count": 100,
            "quorum_bps": 2000,
            "approval_bps": 5000,
            "voting_period": PERIOD,
            "stake": STAKE,
            "reward_r0": R0,
            "reward_n0": N0,
        }
        args.update(overrides)
        dataset_id, _ = self.market.create_dataset(self.alice, **args)
        token = ShareToken(self.chain, self.market.get_dataset(dataset_id).share_token)
        return dataset_id, token

    def root(self) -> bytes:
        self.roots += 1
        return keccak(f"root-{self.roots}".encode())

    def propose(self, who: LocalAccount, dataset_id: int, items: int = 10) -> int:
        pid, _ = self.market.propose(who, dataset_id, "bafkreim", self.root(), items)
        return pid

    def vote(self, who: LocalAccount, pid: int, support: bool) -> int:
        return self.market.vote(who, pid, support).value

    def after_deadline(self) -> None:
        self.chain.advance_time(PERIOD + 1)


@pytest.fixture
def world(chain: Chain) -> World:  # noqa: F811 - the fixture
    return World(chain)


@pytest.fixture
def digits(world: World) -> tuple[int, ShareToken]:
    return world.create()


def events(world: World, receipt: Any, *names: str) -> list[dict[str, Any]]:
    """Decoded market events of ``names`` in ``receipt`` (in log order per name)."""
    contract = world.market.contract
    found: list[dict[str, Any]] = []
    for name in names:
        for log in contract.events[name]().process_receipt(receipt, errors=_discard()):
            found.append({"event": name, "logIndex": log["logIndex"], **dict(log["args"])})
    return sorted(found, key=lambda e: e["logIndex"])


def _discard() -> Any:
    from web3.logs import DISCARD

    return DISCARD


# --- create_dataset ---------------------------------------------------------------------------


def test_create_dataset_records_every_rule(world: World) -> None:
    evaluator = world.account()
    dataset_id, receipt = world.market.create_dataset(
        world.alice,
        name="digits",
        symbol="DIG",
        card_cid="bafkreicard",
        seed_cid="bafkreiseed",
        seed_root=SEED_ROOT,
        seed_count=100,
        quorum_bps=2000,
        approval_bps=5000,
        voting_period=PERIOD,
        stake=STAKE,
        reward_r0=R0,
        reward_n0=N0,
        evaluator=evaluator.address,
        training_fee=10**17,
        min_royalty_bps=2000,
    )
    created, entry = events(world, receipt, "DatasetCreated", "EntryAdded")
    assert (created["name"], created["symbol"], created["initiator"]) == (
        "digits",
        "DIG",
        world.alice.address,
    )
    rules = ("quorum_bps", "approval_bps", "voting_period", "stake", "reward_r0", "reward_n0")
    assert tuple(created[k] for k in rules) == (2000, 5000, PERIOD, STAKE, R0, N0)
    assert created["evaluator"] == evaluator.address
    assert (created["training_fee"], created["min_royalty_bps"]) == (10**17, 2000)
    assert (entry["index"], entry["item_count"], entry["shares_minted"], entry["first_item"]) == (
        0,
        100,
        price(0, 100),
        0,
    )
    d = world.market.get_dataset(dataset_id)
    assert (d.item_count, d.entry_count, d.pending_items, d.share_token) == (
        100,
        1,
        0,
        created["share_token"],
    )
    token = ShareToken(world.chain, d.share_token)
    assert token.balanceOf(world.alice.address) == token.totalSupply() == price(0, 100)
    assert world.market.root_state(dataset_id, SEED_ROOT) == "registered"
    assert (d.training_fee, d.min_royalty_bps) == (10**17, 2000)
    assert world.market.model_terms(dataset_id) == (
        d.share_token, evaluator.address, 10**17, 2000, 1
    )
    assert world.market.model_terms(dataset_id + 1) == (ZERO_ADDRESS, ZERO_ADDRESS, 0, 0, 0)


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"name": ""}, "market: empty name"),
        ({"quorum_bps": 0}, "market: bad quorum"),
        ({"quorum_bps": 10_001}, "market: bad quorum"),
        ({"approval_bps": 10_001}, "market: bad approval"),
        ({"voting_period": 0}, "market: bad voting period"),
        ({"reward_n0": 0}, "market: bad reward rule"),
        ({"reward_r0": 2**57, "reward_n0": 2**30}, "market: bad reward rule"),
        ({"seed_count": 0}, "market: bad seed"),
        ({"reward_r0": 10**15, "seed_count": 1}, "market: bad seed"),
        ({"min_royalty_bps": 10_001}, "market: bad royalty floor"),
        ({"training_fee": 2**128}, "market: bad training fee"),
    ],
)
def test_create_dataset_refusals(world: World, overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidArgumentError, match=reason):
        world.create(**{"name": "x", **overrides})


# --- commit / propose -------------------------------------------------------------------------


def test_commit_then_propose(world: World, digits: tuple[int, ShareToken]) -> None:
    dataset_id, token = digits
    root = world.root()
    c = commitment_of(world.bob.address, dataset_id, "bafkreim", root, 25)
    snapshot, receipt = world.market.commit(world.bob, dataset_id, c)
    (committed,) = events(world, receipt, "ProposalCommitted")
    assert (committed["commitment"], committed["proposer"], committed["snapshot"]) == (
        c,
        world.bob.address,
        snapshot,
    )
    assert token.last_snapshot() == snapshot
    pid, receipt = world.market.reveal(world.bob, dataset_id, "bafkreim", root, 25)
    (created,) = events(world, receipt, "ProposalCreated")
    now = world.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert (created["snapshot"], created["position"], created["deadline"]) == (
        snapshot,
        100,
        now + PERIOD,
    )
    p = world.market.get_proposal(pid)
    assert (p.proposer, p.item_count, p.stake, p.status, p.snapshot) == (
        world.bob.address,
        25,
        STAKE,
        "open",
        snapshot,
    )
    assert p.snapshot_supply == token.totalSupply() and p.position == 100
    assert world.chain.balance(world.market.address) == STAKE
    assert world.market.commit_of(world.bob.address, c) == (0, 0, 0)


def test_propose_needs_its_own_commitment(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, _ = digits
    root = world.root()
    with pytest.raises(PermissionDenied, match="market: no commitment"):
        world.market.reveal(world.bob, dataset_id, "m", root, 5)
    c = commitment_of(world.bob.address, dataset_id, "m", root, 5)
    world.market.commit(world.bob, dataset_id, c)
    with pytest.raises(PermissionDenied, match="market: no commitment"):
        world.market.reveal(world.bob, dataset_id, "m", root, 6)  # another batch
    world.market.commit(world.carol, dataset_id, c)  # bob's commitment, copied by carol
    with pytest.raises(PermissionDenied, match="market: no commitment"):
        world.market.reveal(world.carol, dataset_id, "m", root, 5)
    other, _ = world.create("other")
    world.market.commit(world.bob, other, c)  # the right hash, recommitted under another dataset
    with pytest.raises(PermissionDenied, match="market: no commitment"):
        world.market.reveal(world.bob, dataset_id, "m", root, 5)
    world.market.commit(world.bob, dataset_id, c)
    world.market.reveal(world.bob, dataset_id, "m", root, 5)
    with pytest.raises(ContractRevert, match="market: root pending"):
        world.market.propose(world.carol, dataset_id, "m", root, 5)


def test_commitment_expires(world: World, digits: tuple[int, ShareToken]) -> None:
    dataset_id, _ = digits
    root = world.root()
    world.market.commit(
        world.bob, dataset_id, commitment_of(world.bob.address, dataset_id, "m", root, 5)
    )
    world.chain.advance_time(86400 + 1)
    with pytest.raises(ContractRevert, match="market: commitment expired"):
        world.market.reveal(world.bob, dataset_id, "m", root, 5)


def test_roots_pending_registered_and_freed(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, _ = digits
    with pytest.raises(ContractRevert, match="market: root registered"):
        world.market.propose(world.bob, dataset_id, "m", SEED_ROOT, 5)
    root = world.root()
    pid, _ = world.market.propose(world.bob, dataset_id, "m", root, 5)
    world.vote(world.alice, pid, False)
    world.market.finalize(world.carol, pid)  # rejected: the root is free again
    assert world.market.root_state(dataset_id, root) == "free"
    pid, _ = world.market.propose(world.carol, dataset_id, "m", root, 5)
    world.vote(world.alice, pid, True)
    world.market.finalize(world.carol, pid)
    assert world.market.root_state(dataset_id, root) == "registered"
    with pytest.raises(ContractRevert, match="market: root registered"):
        world.market.propose(world.bob, dataset_id, "m2", root, 5)


def test_propose_refusals(world: World, digits: tuple[int, ShareToken]) -> None:
    dataset_id, _ = digits
    with pytest.raises(ContractNotFoundError, match="market: unknown dataset"):
        world.market.propose(world.bob, 9, "m", world.root(), 5, value=STAKE)
    with pytest.raises(InvalidArgumentError, match="market: empty manifest"):
        world.market.propose(world.bob, dataset_id, "", world.root(), 5)
    with pytest.raises(InvalidArgumentError, match="market: bad item count"):
        world.market.propose(world.bob, dataset_id, "m", world.root(), 2**64 + 1)
    with pytest.raises(ContractRevert, match="market: wrong stake"):
        world.market.propose(world.bob, dataset_id, "m", world.root(), 5, value=STAKE + 1)


# --- votes ------------------------------------------------------------------------------------


def test_vote_weight_is_the_commit_block_balance(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, token = digits
    token.transfer(world.alice, world.bob.address, 10 * ETHER)
    root = world.root()
    world.market.commit(
        world.carol, dataset_id, commitment_of(world.carol.address, dataset_id, "m", root, 5)
    )
    token.transfer(world.alice, world.carol.address, 5 * ETHER)  # after the commit block
    pid, _ = world.market.reveal(world.carol, dataset_id, "m", root, 5)
    token.transfer(world.alice, world.bob.address, 7 * ETHER)  # rented once visible
    supply = token.totalSupply()
    assert world.vote(world.alice, pid, True) == supply - 10 * ETHER
    assert world.vote(world.bob, pid, False) == 10 * ETHER
    with pytest.raises(PermissionDenied, match="market: no voting power"):
        world.vote(world.carol, pid, True)
    with pytest.raises(AlreadyVotedError, match="market: already voted"):
        world.vote(world.bob, pid, True)
    p = world.market.get_proposal(pid)
    assert (p.yes, p.no) == (supply - 10 * ETHER, 10 * ETHER)
    assert world.market.vote_of(pid, world.bob.address) == (True, False, 10 * ETHER)


def test_vote_closed_and_not_open(world: World, digits: tuple[int, ShareToken]) -> None:
    dataset_id, _ = digits
    with pytest.raises(ContractNotFoundError, match="market: unknown proposal"):
        world.vote(world.alice, 1, True)
    pid = world.propose(world.bob, dataset_id)
    world.after_deadline()
    with pytest.raises(VotingClosedError, match="market: voting closed"):
        world.vote(world.alice, pid, True)
    assert world.market.finalize(world.bob, pid).value == "expired"
    with pytest.raises(VotingClosedError, match="market: proposal not open"):
        world.vote(world.alice, pid, True)


# --- scores -----------------------------------------------------------------------------------


def test_scores(world: World) -> None:
    evaluator = world.account()
    dataset_id, token = world.create("scored", evaluator=evaluator.address)
    pid = world.propose(world.bob, dataset_id, 50)
    with pytest.raises(PermissionDenied, match="market: only evaluator"):
        world.market.post_score(world.bob, pid, 1)
    with pytest.raises(InvalidArgumentError, match="market: score out of range"):
        world.market.post_score(evaluator, pid, 20_001)
    world.vote(world.alice, pid, True)
    with pytest.raises(TooEarlyError, match="market: outcome not final"):
        world.market.finalize(world.carol, pid)  # waits for the evaluator
    world.market.post_score(evaluator, pid, 20_000)
    with pytest.raises(ContractRevert, match="market: already scored"):
        world.market.post_score(evaluator, pid, 1)
    assert world.market.finalize(world.carol, pid).value == "accepted"
    assert token.balanceOf(world.bob.address) == price(100, 50, 20_000)
    late = world.propose(world.bob, dataset_id, 5)
    world.after_deadline()
    with pytest.raises(VotingClosedError, match="market: voting closed"):
        world.market.post_score(evaluator, late, 10_000)


# --- finalize ---------------------------------------------------------------------------------


def test_accept_mints_registers_and_refunds(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, token = digits
    pid = world.propose(world.bob, dataset_id, 40)
    world.vote(world.alice, pid, True)
    supply = token.totalSupply()
    status, receipt = world.market.finalize(world.carol, pid)
    assert status == "accepted"
    added, final, refund = events(
        world, receipt, "EntryAdded", "ProposalFinalized", "RefundCredited"
    )
    assert (added["shares_minted"], added["first_item"], added["proposal_id"]) == (
        price(100, 40),
        100,
        pid,
    )
    assert (final["snapshot_supply"], final["yes"], final["no"], final["position"]) == (
        supply,
        supply,
        0,
        100,
    )
    assert (refund["account"], refund["amount"]) == (world.bob.address, STAKE)
    assert token.balanceOf(world.bob.address) == price(100, 40)
    d = world.market.get_dataset(dataset_id)
    assert (d.item_count, d.entry_count, d.pending_items) == (140, 2, 0)
    paid, _ = world.market.withdraw_refund(world.bob)
    assert paid == STAKE and world.market.refund_of(world.bob.address) == 0
    with pytest.raises(NothingToWithdrawError, match="market: nothing to refund"):
        world.market.withdraw_refund(world.bob)
    with pytest.raises(VotingClosedError, match="market: proposal not open"):
        world.market.finalize(world.carol, pid)


def test_reject_pays_the_holders(world: World, digits: tuple[int, ShareToken]) -> None:
    dataset_id, token = digits
    pid = world.propose(world.bob, dataset_id)
    world.vote(world.alice, pid, False)
    assert world.market.finalize(world.carol, pid).value == "rejected"
    assert world.market.refund_of(world.bob.address) == 0
    assert world.market.held_dividends(dataset_id) == 0
    assert world.chain.balance(token.address) == STAKE == token.total_distributed()
    owed = token.dividends_of(world.alice.address)
    assert STAKE - 1 <= owed + token.carried() <= STAKE
    assert world.chain.balance(world.market.address) == 0
    with pytest.raises(NothingToWithdrawError, match="market: nothing held"):
        world.market.release_dividends(world.carol, dataset_id)


def test_batches_are_priced_in_proposal_order(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, token = digits
    first = world.propose(world.bob, dataset_id, 40)
    second = world.propose(world.carol, dataset_id, 10)
    assert world.market.reward_for(dataset_id, 5) == price(150, 5)
    for pid in (first, second):
        world.vote(world.alice, pid, True)
    world.market.finalize(world.carol, second)  # the later one first
    world.market.finalize(world.carol, first)
    assert token.balanceOf(world.carol.address) == price(140, 10)
    assert token.balanceOf(world.bob.address) == price(100, 40)


# --- ShareToken -------------------------------------------------------------------------------


def _acct_word(chain: Chain, token: ShareToken, account: str) -> int:  # noqa: F811 - the fixture
    slot = keccak(ACCT_SLOT.to_bytes(32, "big") + to_canonical_address(account).rjust(32, b"\0"))
    return int.from_bytes(chain.w3.eth.get_storage_at(token.address, slot), "big")


def test_transfers_and_allowances(world: World, digits: tuple[int, ShareToken]) -> None:
    _, token = digits
    token.transfer(world.alice, world.bob.address, 3 * ETHER)
    with pytest.raises(InsufficientSharesError, match="shares: insufficient balance"):
        token.transfer(world.carol, world.bob.address, 1)
    with pytest.raises(InvalidArgumentError, match="shares: zero address"):
        token.transfer(world.bob, ZERO, 1)
    token.approve(world.bob, world.carol.address, ETHER)
    token.transferFrom(world.carol, world.bob.address, world.carol.address, ETHER)
    assert (token.balanceOf(world.bob.address), token.balanceOf(world.carol.address)) == (
        2 * ETHER,
        ETHER,
    )
    assert token.allowance(world.bob.address, world.carol.address) == 0
    with pytest.raises(InsufficientSharesError, match="shares: insufficient allowance"):
        token.transferFrom(world.carol, world.bob.address, world.carol.address, 1)
    token.approve(world.bob, world.carol.address, 2**256 - 1)
    token.transferFrom(world.carol, world.bob.address, world.carol.address, ETHER)
    assert token.allowance(world.bob.address, world.carol.address) == 2**256 - 1
    with pytest.raises(PermissionDenied, match="shares: only market"):
        world.chain.send(token.contract.functions.mint(world.bob.address, 1), world.bob)


def test_zero_moves_by_a_stranger_write_nothing(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, token = digits
    token.transfer(world.alice, world.bob.address, ETHER)
    world.propose(world.carol, dataset_id)  # a snapshot since bob's last move
    before = _acct_word(world.chain, token, world.bob.address)
    token.transferFrom(world.carol, world.bob.address, world.carol.address, 0)
    token.transfer(world.carol, world.bob.address, 0)
    assert _acct_word(world.chain, token, world.bob.address) == before
    assert _acct_word(world.chain, token, world.carol.address) == 0


def test_snapshots_are_exact(world: World, digits: tuple[int, ShareToken]) -> None:
    dataset_id, token = digits
    supply = token.totalSupply()
    pid = world.propose(world.bob, dataset_id)
    snapshot = world.market.get_proposal(pid).snapshot
    token.transfer(world.alice, world.bob.address, ETHER)
    assert token.balance_at(world.alice.address, snapshot) == supply
    assert token.balance_at(world.bob.address, snapshot) == 0
    assert token.total_supply_at(snapshot) == supply
    with pytest.raises(TooEarlyError, match="shares: snapshot not final"):
        token.balance_at(world.bob.address, world.chain.block_number() + 1)


def test_dividends_pro_rata_with_carried_rounding(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    _, token = digits
    supply = token.totalSupply()
    token.transfer(world.alice, world.bob.address, supply // 4)
    with pytest.raises(NothingToWithdrawError, match="shares: nothing to distribute"):
        token.distribute(world.carol, 0)
    token.distribute(world.carol, 4 * 10**16)
    bob, alice, carried = (
        token.dividends_of(world.bob.address),
        token.dividends_of(world.alice.address),
        token.carried(),
    )
    assert carried <= supply // 2**32 + 1
    assert 4 * 10**16 - 2 <= bob + alice + carried <= 4 * 10**16
    assert 10**16 - carried - 1 <= bob <= 10**16
    paid, _ = token.withdraw(world.bob)
    assert paid == bob == token.withdrawn_of(world.bob.address) == token.total_withdrawn()
    with pytest.raises(NothingToWithdrawError, match="shares: nothing to withdraw"):
        token.withdraw(world.bob)


def test_distribute_withdraw_loop_cannot_freeze_dividends(world: World) -> None:
    """14 loops of 10,000 ether on a 2-share dataset pass the old 65,536-ether-per-share cap;
    a rejected finalize after them still pays the holders."""
    dataset_id, token = world.create("tiny", seed_count=2)
    world.chain.fund(world.alice.address, 20_000 * ETHER)
    for _ in range(14):
        token.distribute(world.alice, 10_000 * ETHER)
        token.withdraw(world.alice)
    assert token.total_distributed() == 140_000 * ETHER > 65_536 * 2 * ETHER
    pid = world.propose(world.bob, dataset_id)
    world.vote(world.alice, pid, False)
    assert world.market.finalize(world.carol, pid).value == "rejected"
    assert world.market.held_dividends(dataset_id) == 0
    assert token.total_distributed() == 140_000 * ETHER + STAKE


def test_third_party_cannot_freeze_an_account(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, token = digits
    token.transfer(world.alice, world.bob.address, 10 * ETHER)
    token.transfer(world.alice, world.carol.address, 1000)
    pid = world.propose(world.bob, dataset_id, 5)
    for i in range(8):  # a snapshot, dust and a zero transferFrom in every block
        root = keccak(f"grief-{i}".encode())
        c = commitment_of(world.carol.address, dataset_id, "g", root, 1)
        world.market.commit(world.carol, dataset_id, c)
        token.transfer(world.carol, world.bob.address, 1)
        token.transferFrom(world.carol, world.bob.address, world.carol.address, 0)
    token.transfer(world.bob, world.alice.address, ETHER)
    world.vote(world.alice, pid, True)
    world.vote(world.bob, pid, True)
    assert world.market.finalize(world.carol, pid).value == "accepted"
    assert token.balanceOf(world.bob.address) == 9 * ETHER + 8 + price(100, 5)


def test_rejected_at_deadline_and_frozen_after(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, token = digits
    supply = token.totalSupply()
    token.transfer(world.alice, world.bob.address, supply * 3 // 10)
    token.transfer(world.alice, world.carol.address, supply * 2 // 10)
    pid = world.propose(world.carol, dataset_id)
    world.vote(world.bob, pid, False)
    world.vote(world.carol, pid, True)  # 30 % no, 20 % yes: alice's 50 % could swing it
    with pytest.raises(TooEarlyError, match="market: outcome not final"):
        world.market.finalize(world.bob, pid)
    world.after_deadline()
    assert world.market.finalize(world.bob, pid).value == "rejected"
    before = world.market.get_proposal(pid)
    token.transfer(world.alice, world.bob.address, ETHER)
    world.propose(world.bob, dataset_id)
    world.chain.advance_time(10 * PERIOD)
    assert world.market.get_proposal(pid) == before


def test_verify_item_on_an_accepted_entry(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    from eth_abi import encode

    def leaf(digest: bytes, label: str) -> bytes:
        return keccak(keccak(encode(["bytes32", "string"], [digest, label])))

    items = [(keccak(f"img{i}".encode()), ["cat", "dog", "éléphant"][i % 3]) for i in range(3)]
    a, b, c = (leaf(*item) for item in items)
    ab = keccak(min(a, b) + max(a, b))
    root = keccak(min(ab, c) + max(ab, c))
    dataset_id, _ = digits
    pid, _ = world.market.propose(world.bob, dataset_id, "bafkreim", root, 3)
    world.vote(world.alice, pid, True)
    world.market.finalize(world.carol, pid)
    assert world.market.verify_item(dataset_id, 1, items[0][0], "cat", [b, c])
    assert world.market.verify_item(dataset_id, 1, items[2][0], "éléphant", [ab])
    assert not world.market.verify_item(dataset_id, 1, items[0][0], "dog", [b, c])
    assert not world.market.verify_item(dataset_id, 0, items[2][0], "éléphant", [ab])
    with pytest.raises(ContractNotFoundError, match="market: unknown entry"):
        world.market.verify_item(dataset_id, 2, items[0][0], "cat", [b, c])


def test_dividends_follow_the_shares_held_at_each_payment(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    _, token = digits
    supply = token.totalSupply()
    token.distribute(world.carol, ETHER)  # all alice's
    token.transfer(world.alice, world.bob.address, supply // 2)
    token.distribute(world.carol, 2 * ETHER)  # half each
    carried = token.carried()
    alice, bob = token.dividends_of(world.alice.address), token.dividends_of(world.bob.address)
    assert 3 * ETHER - 3 <= alice + bob + carried <= 3 * ETHER
    assert 2 * ETHER - carried - 2 <= alice <= 2 * ETHER
    assert ETHER - carried - 2 <= bob <= ETHER
    token.transfer(world.bob, world.alice.address, supply // 2)  # after the fact: no change
    assert token.dividends_of(world.bob.address) == bob


def test_balance_at_every_snapshot_matches_a_model(
    world: World, digits: tuple[int, ShareToken]
) -> None:
    dataset_id, token = digits
    people = [world.alice, world.bob, world.carol]
    model = {p.address: token.balanceOf(p.address) for p in people}
    expected: dict[int, dict[str, int]] = {}
    for step in range(6):
        src, dst = people[step % 3], people[(step + 1) % 3]
        amount = model[src.address] // 3
        token.transfer(src, dst.address, amount)
        model[src.address] -= amount
        model[dst.address] += amount
        root = keccak(f"snap-{step}".encode())
        snapshot, _ = world.market.commit(
            world.carol, dataset_id, commitment_of(world.carol.address, dataset_id, "s", root, 1)
        )
        expected[snapshot] = dict(model)
    token.transfer(world.alice, world.bob.address, 1)  # one more block
    for block, balances in expected.items():
        for address, balance in balances.items():
            assert token.balance_at(address, block) == balance, (block, address)


def test_copycat_under_a_new_root_earns_nothing(world: World) -> None:
    """carol re-roots bob's items after his proposal: priced after it and scored 0 by the
    evaluator, her copy earns no shares even when finalized first."""
    evaluator = world.account()
    dataset_id, token = world.create("guarded", evaluator=evaluator.address)
    genuine = world.propose(world.bob, dataset_id, 30)
    copy = world.propose(world.carol, dataset_id, 30)
    assert world.market.get_proposal(copy).position == 130
    world.market.post_score(evaluator, copy, 0)
    world.market.post_score(evaluator, genuine, 10_000)
    for pid in (copy, genuine):
        world.vote(world.alice, pid, True)
        assert world.market.finalize(world.carol, pid).value == "accepted"
    assert token.balanceOf(world.carol.address) == 0
    assert world.market.get_proposal(copy).shares_minted == 0
    assert token.balanceOf(world.bob.address) == price(100, 30)
