# SPDX-License-Identifier: Apache-2.0
# pragma version 0.4.3
# pragma evm-version cancun
"""
@title ShareToken
@notice One ERC-20 per DataBright dataset. Balances double as voting power at the
        market's snapshots (no delegation step) and as claims on dividends paid in
        ether through a running per-share total (O(1) per distribution, pull withdrawals).
@dev Deployed by DataMarket from an ERC-5202 blueprint. Storage is packed by hand
     because Vyper does not pack structs and every fresh slot costs 22.1k gas:
     - `_acct[a]`   = balance (88 bits) | block of last write (40) | history length (40)
                      | per-share total at the account's last settlement (88).
     - `_claims[a]` = settled, unwithdrawn wei (96) | wei withdrawn (159) | marker (bit 255),
                      set when the account first receives shares so that settling and
                      withdrawing never write a fresh slot.
     - `_hist[a][i]` = two archived checkpoints of 128 bits, each block (40) | balance (88).
     - `_global` = magnified per-share total (88) | latest snapshot block (40, at bit 88)
                   | previous distinct snapshot block (40, at bit 128) | carried wei (87, at
                   bit 168) | marker (bit 255).
     - `_totals` = wei distributed (128) | wei withdrawn (127) | marker (bit 255).
     Checkpoints are lazy: a write archives the old balance only when a snapshot block lies
     in [last write block, current block - 1], otherwise it overwrites in place. Lookups are
     therefore exact at every snapshot block (see `balance_at`). A history grows at most once
     a block, so its 40-bit length never overflows; zero-amount moves write nothing.
     Dividends settle on touch: an account's earnings since its last settlement are
     balance * (per_share - per_share_at_last_settlement) / MAG, credited (floored) before
     its balance changes. A settlement happens only when a distribution happened since the
     last one, so the flooring costs a holder less than 1 wei per distribution. The rounding
     of the per-share total is carried into the next distribution, never lost.
     The total supply uses the same word/history layout under the key `empty(address)`,
     which can never hold shares (mints and transfers to it revert).
"""

from ethereum.ercs import IERC20

implements: IERC20

# Per-share magnifier. A distribution's rounding (under supply / MAG + 1 wei) is carried
# into the next one, so a small MAG loses nothing and leaves the per-share total room:
# 2**88 / MAG = 2**56 wei per share unit, 7.2e16 ether per whole share, cumulated.
MAG: constant(uint256) = 2**32
SUPPLY_CAP: constant(uint256) = 2**88 - 1
PS_CAP: constant(uint256) = 2**88 - 1
# wei distributed in total (withdrawn <= distributed fits its 127 bits)
DISTRIBUTION_CAP: constant(uint256) = 2**127 - 1
# wei held for holders at any time (owed per account fits its 96 bits)
HELD_CAP: constant(uint256) = 2**96 - 1

BAL_MASK: constant(uint256) = 2**88 - 1
BLK_MASK: constant(uint256) = 2**40 - 1
LEN_MASK: constant(uint256) = 2**40 - 1
ENTRY_MASK: constant(uint256) = 2**128 - 1
PS_MASK: constant(uint256) = 2**88 - 1
CARRY_MASK: constant(uint256) = 2**87 - 1
LOW168: constant(uint256) = 2**168 - 1
W96: constant(uint256) = 2**96 - 1
W128: constant(uint256) = 2**128 - 1
W127: constant(uint256) = 2**127 - 1
W159: constant(uint256) = 2**159 - 1
BLK_SHIFT: constant(uint256) = 88
LEN_SHIFT: constant(uint256) = 128
PS_LAST_SHIFT: constant(uint256) = 168
LAST_SNAP_SHIFT: constant(uint256) = 88
PREV_SNAP_SHIFT: constant(uint256) = 128
CARRY_SHIFT: constant(uint256) = 168
WITHDRAWN_SHIFT: constant(uint256) = 128
MARKER: constant(uint256) = 2**255

SUPPLY_KEY: constant(address) = empty(address)

name: public(String[64])
symbol: public(String[32])
market: public(address)
allowance: public(HashMap[address, HashMap[address, uint256]])

_acct: HashMap[address, uint256]
_claims: HashMap[address, uint256]
_hist: HashMap[address, HashMap[uint256, uint256]]
_global: uint256
_totals: uint256

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event Snapshot:
    block_number: uint256

event DividendsDistributed:
    payer: indexed(address)
    amount: uint256
    per_share: uint256
    carried: uint256

event DividendsWithdrawn:
    account: indexed(address)
    amount: uint256


@deploy
def __init__(name: String[64], symbol: String[32], market: address):
    """
    @notice Set the token's metadata and the market allowed to mint and snapshot.
    @param name ERC-20 name.
    @param symbol ERC-20 symbol.
    @param market The DataMarket that owns this token.
    """
    self.name = name
    self.symbol = symbol
    self.market = market
    # gas: both words stay non-zero, so no distribution or withdrawal writes a fresh slot
    self._totals = MARKER
    self._global = MARKER


@external
@pure
def decimals() -> uint8:
    """
    @notice Shares have 18 decimals.
    @return 18
    """
    return 18


@external
@view
def totalSupply() -> uint256:
    """
    @notice The number of shares in existence.
    @return Current total supply.
    """
    return self._acct[SUPPLY_KEY] & BAL_MASK


@external
@view
def balanceOf(account: address) -> uint256:
    """
    @notice Shares held by `account`.
    @param account The holder.
    @return Current balance.
    """
    if account == SUPPLY_KEY:
        return 0
    return self._acct[account] & BAL_MASK


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` shares from the caller to `to`.
    @param to Receiver (not the zero address).
    @param amount Shares to move.
    @return True
    """
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` shares from `owner` to `to` using the caller's allowance.
    @dev An allowance of max(uint256) is never decreased; a decrease emits Approval.
         A zero amount writes nothing (it needs no allowance and only logs Transfer).
    @param owner Holder the shares come from.
    @param to Receiver (not the zero address).
    @param amount Shares to move.
    @return True
    """
    allowed: uint256 = self.allowance[owner][msg.sender]
    if allowed != max_value(uint256) and amount != 0:
        assert allowed >= amount, "shares: insufficient allowance"
        self.allowance[owner][msg.sender] = allowed - amount
        log Approval(owner=owner, spender=msg.sender, value=allowed - amount)
    self._transfer(owner, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` of the caller's shares.
    @param spender The approved account.
    @param amount The new allowance (replaces the old one).
    @return True
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(to: address, amount: uint256):
    """
    @notice Create `amount` new shares for `to`; the market only.
    @dev The new shares carry no claim on dividends paid before the mint.
    @param to Receiver (not the zero address).
    @param amount Shares to create.
    """
    assert msg.sender == self.market, "shares: only market"
    assert to != empty(address), "shares: zero address"
    g: uint256 = self._global
    sb: uint256 = self._snapshot_before(g)
    supply_word: uint256 = self._acct[SUPPLY_KEY]
    supply: uint256 = (supply_word & BAL_MASK) + amount
    assert supply <= SUPPLY_CAP, "shares: supply cap"
    self._acct[SUPPLY_KEY] = self._write(SUPPLY_KEY, supply_word, supply, sb)
    to_word: uint256 = self._settle(to, self._acct[to], g & PS_MASK)
    self._acct[to] = self._write(to, to_word, (to_word & BAL_MASK) + amount, sb)
    log Transfer(sender=empty(address), receiver=to, value=amount)


@external
def snapshot():
    """
    @notice Record the current block as a vote snapshot; the market only.
    @dev Balances at the end of this block become final for `balance_at` once it is mined.
    """
    assert msg.sender == self.market, "shares: only market"
    g: uint256 = self._global
    last: uint256 = (g >> LAST_SNAP_SHIFT) & BLK_MASK
    if last != block.number:
        self._global = (
            (g & ~((BLK_MASK << LAST_SNAP_SHIFT) | (BLK_MASK << PREV_SNAP_SHIFT)))
            | (block.number << LAST_SNAP_SHIFT)
            | (last << PREV_SNAP_SHIFT)
        )
        log Snapshot(block_number=block.number)


@external
@view
def balance_at(account: address, block_number: uint256) -> uint256:
    """
    @notice Shares `account` held at the end of `block_number`.
    @dev Exact when `block_number` is a snapshot block (any block `snapshot()` was called in).
         For other blocks the result is the balance at the end of some block between the
         latest snapshot block <= `block_number` (or genesis) and `block_number` itself, because writes
         between snapshots overwrite in place.
    @param account The holder.
    @param block_number A block number below the current one.
    @return The balance.
    """
    assert block_number < block.number, "shares: snapshot not final"
    if account == SUPPLY_KEY:
        return 0
    return self._value_at(account, block_number)


@external
@view
def total_supply_at(block_number: uint256) -> uint256:
    """
    @notice Total supply at the end of `block_number`; same guarantee as `balance_at`.
    @param block_number A block number below the current one.
    @return The supply.
    """
    assert block_number < block.number, "shares: snapshot not final"
    return self._value_at(SUPPLY_KEY, block_number)


@external
@view
def last_snapshot() -> uint256:
    """
    @notice The latest snapshot block (0 if none).
    @return Block number.
    """
    return (self._global >> LAST_SNAP_SHIFT) & BLK_MASK


@external
@payable
def distribute():
    """
    @notice Pay `msg.value` wei to all current holders pro rata; O(1) gas.
    @dev The wei the per-share total cannot represent (under supply / MAG + 1) is carried
         into the next distribution: total = msg.value + carry, the per-share total grows by
         floor(total * MAG / supply), carry = total - ceil(growth * supply / MAG). Holders
         lose less than 1 wei each per distribution to the flooring of their claims.
    """
    assert msg.value > 0, "shares: nothing to distribute"
    supply: uint256 = self._acct[SUPPLY_KEY] & BAL_MASK
    assert supply > 0, "shares: no holders"
    g: uint256 = self._global
    total: uint256 = msg.value + ((g >> CARRY_SHIFT) & CARRY_MASK)
    growth: uint256 = total * MAG // supply
    carry: uint256 = total - (growth * supply + MAG - 1) // MAG  # < supply / MAG + 1 < 2**57
    ps: uint256 = (g & PS_MASK) + growth
    totals: uint256 = self._totals
    distributed: uint256 = (totals & W128) + msg.value
    fits: bool = ps <= PS_CAP and distributed <= DISTRIBUTION_CAP and self.balance <= HELD_CAP
    assert fits, "shares: distribution cap"
    self._global = (g & ~(PS_MASK | (CARRY_MASK << CARRY_SHIFT))) | ps | (carry << CARRY_SHIFT)
    self._totals = totals + msg.value  # fits: distributed <= DISTRIBUTION_CAP
    log DividendsDistributed(payer=msg.sender, amount=msg.value, per_share=ps, carried=carry)


@external
@view
def dividends_of(account: address) -> uint256:
    """
    @notice Wei `account` can withdraw now.
    @param account The holder.
    @return Withdrawable wei.
    """
    if account == SUPPLY_KEY:
        return 0
    return (self._claims[account] & W96) + self._pending(
        self._acct[account], self._global & PS_MASK
    )


@external
@view
def withdrawn_of(account: address) -> uint256:
    """
    @notice Wei `account` has withdrawn so far.
    @param account The holder.
    @return Withdrawn wei.
    """
    if account == SUPPLY_KEY:
        return 0
    return (self._claims[account] >> 96) & W159


@external
@view
def total_distributed() -> uint256:
    """
    @notice Wei paid in through `distribute` so far.
    @return Total distributed.
    """
    return self._totals & W128


@external
@view
def total_withdrawn() -> uint256:
    """
    @notice Wei paid out through `withdraw` so far.
    @return Total withdrawn.
    """
    return (self._totals >> WITHDRAWN_SHIFT) & W127


@external
@view
def per_share() -> uint256:
    """
    @notice The running per-share dividend total, magnified by 2**32.
    @return Wei per share unit times 2**32 paid so far.
    """
    return self._global & PS_MASK


@external
@view
def carried() -> uint256:
    """
    @notice Wei received but not yet spread over the shares (added to the next distribution).
    @return Carried wei.
    """
    return (self._global >> CARRY_SHIFT) & CARRY_MASK


@external
@nonreentrant
def withdraw() -> uint256:
    """
    @notice Send the caller all its withdrawable dividends.
    @return The amount paid in wei.
    """
    assert msg.sender != empty(address), "shares: zero address"
    ps: uint256 = self._global & PS_MASK
    word: uint256 = self._acct[msg.sender]
    claims: uint256 = self._claims[msg.sender]
    amount: uint256 = (claims & W96) + self._pending(word, ps)
    assert amount > 0, "shares: nothing to withdraw"
    if word >> PS_LAST_SHIFT != ps:
        self._acct[msg.sender] = (word & LOW168) | (ps << PS_LAST_SHIFT)
    # owed -> 0, withdrawn += amount; withdrawn <= distributed <= DISTRIBUTION_CAP
    self._claims[msg.sender] = (claims & ~W96) + (amount << 96)
    self._totals += amount << WITHDRAWN_SHIFT
    log DividendsWithdrawn(account=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)
    return amount


@internal
def _transfer(owner: address, to: address, amount: uint256):
    """
    @dev Settle both accounts' dividends, then move the shares and archive checkpoints
         lazily. A self-transfer settles once (the second read sees the first write).
         A zero amount only logs: nobody can grow another account's storage for free.
    """
    # the zero key holds the supply word, so it can neither send nor receive
    assert to != empty(address) and owner != empty(address), "shares: zero address"
    if amount == 0:
        log Transfer(sender=owner, receiver=to, value=0)
        return
    g: uint256 = self._global
    ps: uint256 = g & PS_MASK
    sb: uint256 = self._snapshot_before(g)
    owner_word: uint256 = self._acct[owner]
    balance: uint256 = owner_word & BAL_MASK
    assert balance >= amount, "shares: insufficient balance"
    owner_word = self._settle(owner, owner_word, ps)
    self._acct[owner] = self._write(owner, owner_word, balance - amount, sb)
    to_word: uint256 = self._settle(to, self._acct[to], ps)
    self._acct[to] = self._write(to, to_word, (to_word & BAL_MASK) + amount, sb)
    log Transfer(sender=owner, receiver=to, value=amount)


@internal
@view
def _snapshot_before(g: uint256) -> uint256:
    """
    @dev The latest snapshot block strictly before the current block (0 if none).
    """
    last: uint256 = (g >> LAST_SNAP_SHIFT) & BLK_MASK
    if last < block.number:
        return last
    return (g >> PREV_SNAP_SHIFT) & BLK_MASK


@internal
def _write(key: address, word: uint256, balance: uint256, sb: uint256) -> uint256:
    """
    @dev Return `word` with a new balance written at this block. The old balance is
         archived only if a snapshot block lies in [its block, this block - 1].
    """
    blk: uint256 = (word >> BLK_SHIFT) & BLK_MASK
    length: uint256 = (word >> LEN_SHIFT) & LEN_MASK
    if blk != 0 and blk <= sb:
        entry: uint256 = (blk << BLK_SHIFT) | (word & BAL_MASK)
        slot: uint256 = length >> 1
        if length & 1 == 0:
            self._hist[key][slot] = entry  # gas: fresh slot every other archive
        else:
            self._hist[key][slot] = self._hist[key][slot] | (entry << 128)
        length += 1  # at most once a block: below 2**40
    return (word & ~LOW168) | (length << LEN_SHIFT) | (block.number << BLK_SHIFT) | balance


@internal
@view
def _value_at(key: address, block_number: uint256) -> uint256:
    """
    @dev Balance of `key` at the end of `block_number`: the current word, else a binary search
         over the archived checkpoints.
    """
    word: uint256 = self._acct[key]
    blk: uint256 = (word >> BLK_SHIFT) & BLK_MASK
    if blk <= block_number:
        return word & BAL_MASK
    lo: uint256 = 0
    hi: uint256 = (word >> LEN_SHIFT) & LEN_MASK
    for _: uint256 in range(41):
        if lo >= hi:
            break
        mid: uint256 = (lo + hi) >> 1
        if (self._entry(key, mid) >> BLK_SHIFT) <= block_number:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return 0
    return self._entry(key, lo - 1) & BAL_MASK


@internal
@view
def _entry(key: address, index: uint256) -> uint256:
    """
    @dev Archived checkpoint `index` of `key`, block (40 bits) | balance (88 bits).
    """
    return (self._hist[key][index >> 1] >> ((index & 1) * 128)) & ENTRY_MASK


@internal
def _settle(account: address, word: uint256, ps: uint256) -> uint256:
    """
    @dev Credit `account` what it earned since its last settlement and return its word
         stamped with the current per-share total. A first-time holder gets its claims
         marker here instead.
    """
    if word == 0:
        self._claims[account] = MARKER  # gas: the one fresh slot of a new holder
    last: uint256 = word >> PS_LAST_SHIFT
    if last == ps:
        return word
    earned: uint256 = (word & BAL_MASK) * (ps - last) // MAG
    if earned != 0:
        self._claims[account] += earned  # owed <= distributed <= DISTRIBUTION_CAP
    return (word & LOW168) | (ps << PS_LAST_SHIFT)


@internal
@pure
def _pending(word: uint256, ps: uint256) -> uint256:
    """
    @dev Wei earned since the last settlement: balance * (ps - ps_last) / MAG, floored.
    """
    return (word & BAL_MASK) * (ps - (word >> PS_LAST_SHIFT)) // MAG
