"""ShareToken: ERC-20, market-only functions, lazy balance checkpoints, dividends."""

from __future__ import annotations

import boa
import pytest
from eth_utils import keccak, to_canonical_address

from tests.contracts.conftest import ETHER, ZERO, deployers, new_account, next_block

ACCT_SLOT = 7  # storage slot of `_acct` (vyper -f layout)
MAG = 2**32
LEN_SHIFT = 128  # history length: bits 128..167 of the account word


def acct_slot(account: str) -> int:
    return int.from_bytes(
        keccak(ACCT_SLOT.to_bytes(32, "big") + to_canonical_address(account).rjust(32, b"\0")),
        "big",
    )


def history_length(token, account: str) -> int:
    word = boa.env.evm.get_storage(token.address, acct_slot(account))
    return (word >> LEN_SHIFT) & (2**40 - 1)


def mint(token, owner, to, amount):
    with boa.env.prank(owner):
        token.mint(to, amount)


def snapshot(token, owner):
    with boa.env.prank(owner):
        token.snapshot()


def transfer(token, sender, to, amount):
    with boa.env.prank(sender):
        return token.transfer(to, amount)


# --- ERC-20 ---------------------------------------------------------------------------------


def test_metadata(token_with_owner):
    token, owner = token_with_owner
    assert token.name() == "Shares"
    assert token.symbol() == "SHR"
    assert token.decimals() == 18
    assert token.market() == owner
    assert token.totalSupply() == 0
    assert token.last_snapshot() == 0


def test_mint_credits_and_logs(token_with_owner):
    token, owner = token_with_owner
    a = new_account()
    mint(token, owner, a, 5 * ETHER)
    (log,) = token.get_logs()  # logs of the last transaction
    assert token.balanceOf(a) == 5 * ETHER
    assert token.totalSupply() == 5 * ETHER
    assert (type(log).__name__, log.sender, log.receiver, log.value) == (
        "Transfer",
        ZERO,
        a,
        5 * ETHER,
    )


def test_mint_only_market(token_with_owner):
    token, _ = token_with_owner
    with boa.reverts("shares: only market"):
        token.mint(new_account(), 1)


def test_mint_zero_address(token_with_owner):
    token, owner = token_with_owner
    with boa.env.prank(owner), boa.reverts("shares: zero address"):
        token.mint(ZERO, 1)


def test_mint_supply_cap(token_with_owner):
    token, owner = token_with_owner
    a = new_account()
    mint(token, owner, a, 2**88 - 2)
    mint(token, owner, a, 1)  # exactly at the cap
    with boa.env.prank(owner), boa.reverts("shares: supply cap"):
        token.mint(a, 1)


def test_transfer_moves_balance_and_logs(token_with_owner):
    token, owner = token_with_owner
    a, b = new_account(), new_account()
    mint(token, owner, a, 10)
    assert transfer(token, a, b, 4) is True
    log = token.get_logs()[-1]
    assert (log.sender, log.receiver, log.value) == (a, b, 4)
    assert (token.balanceOf(a), token.balanceOf(b), token.totalSupply()) == (6, 4, 10)


def test_transfer_to_self_and_zero_amount(token_with_owner):
    token, owner = token_with_owner
    a = new_account()
    mint(token, owner, a, 10)
    transfer(token, a, a, 7)
    transfer(token, a, new_account(), 0)
    assert token.balanceOf(a) == 10


def test_zero_amount_moves_write_no_storage(token_with_owner):
    """A zero transfer or transferFrom (no allowance needed) only logs: a third party
    cannot grow another account's checkpoint history or create its slots."""
    token, owner = token_with_owner
    victim, stranger, fresh = new_account(), new_account(), new_account()
    mint(token, owner, victim, 10)
    next_block()
    snapshot(token, owner)
    next_block()
    before = {k: boa.env.evm.get_storage(token.address, acct_slot(k)) for k in (victim, fresh)}
    with boa.env.prank(stranger):
        assert token.transferFrom(victim, fresh, 0) is True
    (log,) = token.get_logs()
    assert (type(log).__name__, log.sender, log.receiver, log.value) == (
        "Transfer",
        victim,
        fresh,
        0,
    )
    transfer(token, fresh, victim, 0)
    after = {k: boa.env.evm.get_storage(token.address, acct_slot(k)) for k in (victim, fresh)}
    assert after == before and history_length(token, victim) == 0
    assert token.allowance(victim, stranger) == 0


def test_history_length_has_room_to_spare(token_with_owner):
    """A history at the old 2**24 - 1 limit keeps growing: the length field is 40 bits and a
    history grows at most once a block, so it cannot fill."""
    token, owner = token_with_owner
    a, b = new_account(), new_account()
    mint(token, owner, a, 10)
    slot = acct_slot(a)
    word = boa.env.evm.get_storage(token.address, slot)
    boa.env.evm.set_storage(token.address, slot, word | ((2**24 - 1) << LEN_SHIFT))
    next_block()
    snapshot(token, owner)
    s1 = boa.env.evm.patch.block_number
    next_block()
    transfer(token, a, b, 1)
    mint(token, owner, a, 5)
    assert history_length(token, a) == 2**24
    next_block()
    assert token.balance_at(a, s1) == 10 and token.balanceOf(a) == 14
    # the dividend stamp above the length is intact
    payer = new_account()
    with boa.env.prank(payer):
        token.distribute(value=15 * 10**9)
    assert token.dividends_of(a) + token.dividends_of(b) + token.carried() == 15 * 10**9


def test_history_grows_at_most_once_a_block(token_with_owner):
    token, owner = token_with_owner
    a, b = new_account(), new_account()
    mint(token, owner, a, 1000)
    for _ in range(5):
        next_block()
        snapshot(token, owner)
        for _ in range(4):
            transfer(token, a, b, 1)
            transfer(token, b, a, 1)
    assert history_length(token, a) <= 5


def test_transfer_insufficient_balance(token_with_owner):
    token, owner = token_with_owner
    a = new_account()
    mint(token, owner, a, 10)
    with boa.env.prank(a), boa.reverts("shares: insufficient balance"):
        token.transfer(new_account(), 11)


def test_transfer_to_zero_address(token_with_owner):
    token, owner = token_with_owner
    a = new_account()
    mint(token, owner, a, 10)
    with boa.env.prank(a), boa.reverts("shares: zero address"):
        token.transfer(ZERO, 1)


def test_transfer_from_zero_address(token_with_owner):
    token, owner = token_with_owner
    mint(token, owner, new_account(), 10)
    with boa.env.prank(new_account()), boa.reverts("shares: zero address"):
        token.transferFrom(ZERO, new_account(), 0)


def test_balance_of_zero_address_is_zero(token_with_owner):
    token, owner = token_with_owner
    mint(token, owner, new_account(), 10)
    next_block()
    assert token.balanceOf(ZERO) == 0
    assert token.balance_at(ZERO, boa.env.evm.patch.block_number - 1) == 0
    assert token.dividends_of(ZERO) == 0
    assert token.withdrawn_of(ZERO) == 0


def test_approve_and_transfer_from(token_with_owner):
    token, owner = token_with_owner
    a, spender, b = new_account(), new_account(), new_account()
    mint(token, owner, a, 10)
    with boa.env.prank(a):
        assert token.approve(spender, 6) is True
    log = token.get_logs()[-1]
    assert (type(log).__name__, log.owner, log.spender, log.value) == ("Approval", a, spender, 6)
    with boa.env.prank(spender):
        assert token.transferFrom(a, b, 4) is True
    approval, moved = token.get_logs()
    assert (type(approval).__name__, approval.owner, approval.spender, approval.value) == (
        "Approval",
        a,
        spender,
        2,
    )
    assert (type(moved).__name__, moved.sender, moved.receiver, moved.value) == (
        "Transfer",
        a,
        b,
        4,
    )
    assert token.allowance(a, spender) == 2
    assert (token.balanceOf(a), token.balanceOf(b)) == (6, 4)


def test_transfer_from_infinite_allowance_is_kept(token_with_owner):
    token, owner = token_with_owner
    a, spender = new_account(), new_account()
    mint(token, owner, a, 10)
    with boa.env.prank(a):
        token.approve(spender, 2**256 - 1)
    with boa.env.prank(spender):
        token.transferFrom(a, spender, 10)
    assert token.allowance(a, spender) == 2**256 - 1


def test_transfer_from_insufficient_allowance(token_with_owner):
    token, owner = token_with_owner
    a, spender = new_account(), new_account()
    mint(token, owner, a, 10)
    with boa.env.prank(a):
        token.approve(spender, 3)
    with boa.env.prank(spender), boa.reverts("shares: insufficient allowance"):
        token.transferFrom(a, spender, 4)


# --- snapshots --------------------------------------------------------------------------------


def test_snapshot_only_market(token_with_owner):
    token, _ = token_with_owner
    with boa.reverts("shares: only market"):
        token.snapshot()


def test_snapshot_records_block_once(token_with_owner):
    token, owner = token_with_owner
    snapshot(token, owner)
    assert [type(e).__name__ for e in token.get_logs()] == ["Snapshot"]
    block = boa.env.evm.patch.block_number
    assert token.last_snapshot() == block
    snapshot(token, owner)  # same block: no new state, no event
    assert token.get_logs() == []


def test_balance_at_not_final(token_with_owner):
    token, _ = token_with_owner
    block = boa.env.evm.patch.block_number
    with boa.reverts("shares: snapshot not final"):
        token.balance_at(new_account(), block)
    with boa.reverts("shares: snapshot not final"):
        token.total_supply_at(block)


def test_balance_at_end_of_snapshot_block(token_with_owner):
    """Votes count the balance at the end of the snapshot block, later moves do not count."""
    token, owner = token_with_owner
    a, b = new_account(), new_account()
    mint(token, owner, a, 100)
    next_block()
    snapshot(token, owner)
    s1 = boa.env.evm.patch.block_number
    transfer(token, a, b, 30)  # same block, after the snapshot call: counts at s1
    next_block()
    transfer(token, a, b, 20)  # after s1: does not count
    mint(token, owner, b, 1000)
    next_block()
    assert token.balance_at(a, s1) == 70
    assert token.balance_at(b, s1) == 30
    assert token.total_supply_at(s1) == 100
    # s1 - 1 is not a snapshot block: a's write there was overwritten in place, and the
    # documented answer is a balance from [latest snapshot <= s1 - 1 (none: genesis), s1 - 1]
    assert token.balance_at(a, s1 - 1) in (0, 100)
    assert token.balance_at(b, s1 - 1) == 0
    assert token.balance_at(a, s1 + 1) == 50
    assert token.total_supply_at(s1 + 1) == 1100


def test_balance_at_many_snapshots_matches_model(token_with_owner):
    """Many snapshots and moves: every snapshot block answers exactly (binary search path)."""
    token, owner = token_with_owner
    holders = [new_account() for _ in range(3)]
    mint(token, owner, holders[0], 1000)
    model = {h: 0 for h in holders}
    model[holders[0]] = 1000
    expected: dict[int, dict[str, int]] = {}
    for step in range(40):
        src, dst = holders[step % 3], holders[(step + 1) % 3]
        amount = (step * 37) % (model[src] + 1)
        transfer(token, src, dst, amount)
        model[src] -= amount
        model[dst] += amount
        if step % 3 != 2:
            snapshot(token, owner)
            expected[boa.env.evm.patch.block_number] = dict(model)
        next_block()
    for block, balances in expected.items():
        for holder, balance in balances.items():
            assert token.balance_at(holder, block) == balance, (block, holder)
        assert token.total_supply_at(block) == 1000


# --- dividends --------------------------------------------------------------------------------


def test_distribute_requires_value(token_with_owner):
    token, owner = token_with_owner
    mint(token, owner, new_account(), 10)
    with boa.reverts("shares: nothing to distribute"):
        token.distribute()


def test_distribute_requires_holders(token_with_owner):
    token, _ = token_with_owner
    payer = new_account()
    with boa.env.prank(payer), boa.reverts("shares: no holders"):
        token.distribute(value=1)


def test_distribute_cap(token_with_owner):
    token, owner = token_with_owner
    mint(token, owner, new_account(), 1)
    payer = new_account(2**100)
    with boa.env.prank(payer):
        token.distribute(value=2**56 - 1)  # per-share total 2**88 - 2**32: just under
    with boa.env.prank(payer), boa.reverts("shares: distribution cap"):
        token.distribute(value=1)  # 2**32 more reaches 2**88


def test_distribute_cap_on_held_wei(token_with_owner):
    token, owner = token_with_owner
    mint(token, owner, new_account(), 10**26)
    payer = new_account(2**100)
    with boa.env.prank(payer), boa.reverts("shares: distribution cap"):
        token.distribute(value=2**96)  # more than any account's owed field can hold


def test_distribute_pro_rata_and_withdraw(token_with_owner):
    token, owner = token_with_owner
    a, b, payer = new_account(), new_account(), new_account()
    mint(token, owner, a, 3 * ETHER)
    mint(token, owner, b, ETHER)
    with boa.env.prank(payer):
        token.distribute(value=4 * ETHER)
    log = token.get_logs()[-1]
    assert (type(log).__name__, log.payer, log.amount) == ("DividendsDistributed", payer, 4 * ETHER)
    assert (log.per_share, log.carried) == (MAG, 0)  # 1 wei per share unit, exactly
    assert token.per_share() == MAG and token.carried() == 0
    assert token.total_distributed() == 4 * ETHER
    assert token.dividends_of(a) == 3 * ETHER
    assert token.dividends_of(b) == ETHER
    before = boa.env.get_balance(a)
    with boa.env.prank(a):
        assert token.withdraw() == 3 * ETHER
    log = token.get_logs()[-1]
    assert (type(log).__name__, log.account, log.amount) == ("DividendsWithdrawn", a, 3 * ETHER)
    assert boa.env.get_balance(a) == before + 3 * ETHER
    assert token.withdrawn_of(a) == 3 * ETHER
    assert token.dividends_of(a) == 0
    assert token.total_withdrawn() == 3 * ETHER
    assert boa.env.get_balance(token.address) == ETHER


def test_withdraw_nothing(token_with_owner):
    token, owner = token_with_owner
    a = new_account()
    mint(token, owner, a, 10)
    with boa.env.prank(a), boa.reverts("shares: nothing to withdraw"):
        token.withdraw()


def test_withdraw_from_zero_address(token_with_owner):
    """The zero key holds the supply word: it can never withdraw (its stamp never moves)."""
    token, owner = token_with_owner
    mint(token, owner, new_account(), 10)
    with boa.env.prank(new_account()):
        token.distribute(value=10**12)
    with boa.env.prank(ZERO), boa.reverts("shares: zero address"):
        token.withdraw()


def test_rounding_is_carried_to_the_next_distribution(token_with_owner):
    """What the per-share total cannot represent is carried, not left behind for good."""
    token, owner = token_with_owner
    a, payer = new_account(), new_account()
    supply = 3 * 10**20 + 1
    mint(token, owner, a, supply)
    with boa.env.prank(payer):
        token.distribute(value=1000)  # far below supply / 2**32: all carried
    log = token.get_logs()[-1]
    assert (log.amount, log.per_share, log.carried) == (1000, 0, 1000)
    assert token.per_share() == 0 and token.carried() == 1000
    with boa.env.prank(payer):
        token.distribute(value=10**18)
    growth = (10**18 + 1000) * MAG // supply
    assert token.per_share() == growth
    assert token.carried() == 10**18 + 1000 - -(-growth * supply // MAG)
    assert token.carried() <= supply // MAG + 1
    assert token.dividends_of(a) + token.carried() in (10**18 + 1000, 10**18 + 999)


def test_transfer_and_mint_keep_entitlements(token_with_owner):
    """Claims follow the shares held at each distribution, not the shares held at withdrawal."""
    token, owner = token_with_owner
    a, b, c, payer = (new_account() for _ in range(4))
    mint(token, owner, a, ETHER)
    with boa.env.prank(payer):
        token.distribute(value=ETHER)  # all to a
    transfer(token, a, b, ETHER // 2)
    mint(token, owner, c, ETHER)  # c earns nothing from the first dividend
    with boa.env.prank(payer):
        token.distribute(value=3 * ETHER)  # supply 2: a 0.75, b 0.75, c 1.5
    assert token.dividends_of(a) == ETHER + 3 * ETHER // 4
    assert token.dividends_of(b) == 3 * ETHER // 4
    assert token.dividends_of(c) == 3 * ETHER // 2
    transfer(token, b, a, ETHER // 2)  # moving shares after the fact changes nothing
    assert token.dividends_of(a) == ETHER + 3 * ETHER // 4
    assert token.dividends_of(b) == 3 * ETHER // 4


def test_rounding_dust_below_one_wei_per_holder(token_with_owner):
    token, owner = token_with_owner
    holders = [new_account() for _ in range(3)]
    for i, h in enumerate(holders):
        mint(token, owner, h, 10**18 + i)
    payer = new_account()
    for _ in range(5):
        with boa.env.prank(payer):
            token.distribute(value=10**15 + 7)
        transfer(token, holders[0], holders[1], 3)
    owed = sum(token.dividends_of(h) for h in holders)
    distributed = token.total_distributed()
    carried = token.carried()
    assert carried <= token.totalSupply() // MAG + 1
    assert owed + carried <= distributed
    assert distributed - owed - carried < len(holders) * 5 + 5


class _Reenter:
    SOURCE = """
interface T:
    def withdraw() -> uint256: nonpayable

token: public(address)
depth: public(uint256)

@deploy
def __init__(token: address):
    self.token = token

@external
def pull():
    extcall T(self.token).withdraw()

@external
@payable
def __default__():
    if self.depth == 0:
        self.depth = 1
        extcall T(self.token).withdraw()
"""


def test_withdraw_is_nonreentrant(token_with_owner):
    token, owner = token_with_owner
    attacker = boa.loads(_Reenter.SOURCE, token.address)
    mint(token, owner, attacker.address, ETHER)
    with boa.env.prank(new_account()):
        token.distribute(value=ETHER)
    with boa.reverts():
        attacker.pull()
    assert token.dividends_of(attacker.address) == ETHER


def test_blueprint_deploys_through_market(market, dataset, alice):
    _dataset_id, token = dataset
    assert token.market() == market.address
    assert token.name() == "digits"
    assert token.balanceOf(alice) == token.totalSupply() > 0
    assert deployers().token is not None


@pytest.mark.parametrize("amount", [1, 10**6, 10**18])
def test_withdraw_pays_exact_after_many_transfers(token_with_owner, amount):
    token, owner = token_with_owner
    a, b, payer = new_account(), new_account(), new_account()
    mint(token, owner, a, 2 * ETHER)
    mint(token, owner, b, 2 * ETHER)
    with boa.env.prank(payer):
        token.distribute(value=amount * 4)
    for _ in range(3):
        transfer(token, a, b, ETHER)
        transfer(token, b, a, ETHER)
    # only the flooring of the one distribution (< 1 wei per holder) is lost; what the
    # per-share total could not represent is carried to the next distribution
    owed = token.dividends_of(a) + token.dividends_of(b)
    assert amount * 4 - 2 <= owed + token.carried() <= amount * 4
    assert token.dividends_of(b) == token.dividends_of(a)
