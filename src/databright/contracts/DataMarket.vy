# SPDX-License-Identifier: Apache-2.0
# pragma version 0.4.3
# pragma evm-version cancun
"""
@title DataMarket
@notice Datasets built together: contributors propose batches of items with a stake,
        shareholders vote with their shares at the proposal's snapshot, accepted batches
        become immutable registry entries and earn new shares, rejected stakes are paid
        to the shareholders as a dividend.
@dev Hot proposal fields are packed by hand (Vyper does not pack structs):
     - `_p_head[p]`  = share token (160) | snapshot block (40) | deadline (40).
     - `_p_tally[p]` = yes (96) | no (96) | status (8) | scored (1) | score_bps (16).
     - `_p_info[p]`  = proposer (160) | dataset id (96).
     - `_p_items[p]` = item count (128) | position (128): items accepted or pending when
                       the batch was proposed, which prices it (see `finalize`).
     - `_p_result[p]` = snapshot supply (128) | shares minted (128), written at finalize.
     - `_votes[p][a]` = voted (bit 255) | support (bit 254) | weight (low 128 bits).
     - `_commits[a][c]` = block (40) | timestamp (40) | dataset id (96), of a commitment.
     A vote reads two words, writes one fresh slot and one tally word, and makes one
     static call to the token. The snapshot supply is read once, at finalize.
     A proposal is made in two steps: `commit` a hash bound to the proposer, then, in a later
     block, `propose` the batch it hashes. The commit block is the vote snapshot.
"""

interface IShareToken:
    def mint(to: address, amount: uint256): nonpayable
    def snapshot(): nonpayable
    def distribute(): payable
    def balance_at(account: address, block_number: uint256) -> uint256: view
    def total_supply_at(block_number: uint256) -> uint256: view

BPS: constant(uint256) = 10_000
MAX_SCORE: constant(uint256) = 20_000
MAX_PROOF: constant(uint256) = 64
MAX_VOTING_PERIOD: constant(uint256) = 3650 * 86400
MAX_BATCH: constant(uint256) = 2**64
MAX_N0: constant(uint256) = 2**64
SUPPLY_CAP: constant(uint256) = 2**88 - 1
MIN_SEED_SHARES: constant(uint256) = 10**18
COMMIT_TTL: constant(uint256) = 86400
MAX_FEE: constant(uint256) = 2**128 - 1

ROOT_FREE: constant(uint256) = 0
ROOT_PENDING: constant(uint256) = 1
ROOT_REGISTERED: constant(uint256) = 2

STATUS_NONE: constant(uint256) = 0
STATUS_OPEN: constant(uint256) = 1
STATUS_ACCEPTED: constant(uint256) = 2
STATUS_REJECTED: constant(uint256) = 3
STATUS_EXPIRED: constant(uint256) = 4

ADDR_MASK: constant(uint256) = 2**160 - 1
BLK_MASK: constant(uint256) = 2**40 - 1
W96: constant(uint256) = 2**96 - 1
W128: constant(uint256) = 2**128 - 1
TS_SHIFT: constant(uint256) = 40
COMMIT_DATASET_SHIFT: constant(uint256) = 80
SNAPSHOT_SHIFT: constant(uint256) = 160
DEADLINE_SHIFT: constant(uint256) = 200
NO_SHIFT: constant(uint256) = 96
STATUS_SHIFT: constant(uint256) = 192
SCORED_BIT: constant(uint256) = 2**200
SCORE_SHIFT: constant(uint256) = 201
VOTED_BIT: constant(uint256) = 2**255
SUPPORT_BIT: constant(uint256) = 2**254


struct Dataset:
    name: String[64]
    symbol: String[32]
    card_cid: String[100]
    initiator: address
    share_token: address
    quorum_bps: uint256
    approval_bps: uint256
    voting_period: uint256
    stake: uint256
    reward_r0: uint256
    reward_n0: uint256
    evaluator: address
    item_count: uint256
    entry_count: uint256
    pending_items: uint256
    training_fee: uint256
    min_royalty_bps: uint256

struct Proposal:
    dataset_id: uint256
    proposer: address
    manifest_cid: String[100]
    merkle_root: bytes32
    item_count: uint256
    stake: uint256
    snapshot: uint256
    snapshot_supply: uint256
    deadline: uint256
    yes: uint256
    no: uint256
    score_bps: uint256
    scored: bool
    status: uint256
    shares_minted: uint256
    position: uint256

struct Entry:
    manifest_cid: String[100]
    merkle_root: bytes32
    item_count: uint256
    contributor: address
    proposal_id: uint256
    shares_minted: uint256
    first_item: uint256


share_token_blueprint: public(address)
dataset_count: public(uint256)
proposal_count: public(uint256)
dataset_id_of: public(HashMap[String[64], uint256])
refund_of: public(HashMap[address, uint256])
# 0 free, 1 in an open proposal, 2 in the registry (the seed included)
root_state: public(HashMap[uint256, HashMap[bytes32, uint256]])
# rejected stakes the token could not take (distribute failed), until `release_dividends`
held_dividends: public(HashMap[uint256, uint256])

_datasets: HashMap[uint256, Dataset]
_entries: HashMap[uint256, HashMap[uint256, Entry]]
_p_head: HashMap[uint256, uint256]
_p_tally: HashMap[uint256, uint256]
_p_info: HashMap[uint256, uint256]
_p_root: HashMap[uint256, bytes32]
_p_items: HashMap[uint256, uint256]
_p_stake: HashMap[uint256, uint256]
_p_cid: HashMap[uint256, String[100]]
_p_result: HashMap[uint256, uint256]
_votes: HashMap[uint256, HashMap[address, uint256]]
_commits: HashMap[address, HashMap[bytes32, uint256]]


event DatasetCreated:
    dataset_id: indexed(uint256)
    name: String[64]
    symbol: String[32]
    share_token: address
    initiator: indexed(address)
    card_cid: String[100]
    quorum_bps: uint256
    approval_bps: uint256
    voting_period: uint256
    stake: uint256
    reward_r0: uint256
    reward_n0: uint256
    evaluator: address
    training_fee: uint256
    min_royalty_bps: uint256

event EntryAdded:
    dataset_id: indexed(uint256)
    index: uint256
    manifest_cid: String[100]
    merkle_root: bytes32
    item_count: uint256
    contributor: indexed(address)
    proposal_id: uint256
    shares_minted: uint256
    first_item: uint256

event ProposalCommitted:
    commitment: indexed(bytes32)
    dataset_id: indexed(uint256)
    proposer: indexed(address)
    snapshot: uint256

event ProposalCreated:
    proposal_id: indexed(uint256)
    dataset_id: indexed(uint256)
    proposer: indexed(address)
    manifest_cid: String[100]
    merkle_root: bytes32
    item_count: uint256
    stake: uint256
    snapshot: uint256
    deadline: uint256
    position: uint256

event Voted:
    proposal_id: indexed(uint256)
    voter: indexed(address)
    support: bool
    weight: uint256

event ScorePosted:
    proposal_id: indexed(uint256)
    score_bps: uint256

event ProposalFinalized:
    proposal_id: indexed(uint256)
    dataset_id: indexed(uint256)
    status: uint256
    shares_minted: uint256
    snapshot_supply: uint256
    yes: uint256
    no: uint256
    position: uint256

event DividendsHeld:
    dataset_id: indexed(uint256)
    proposal_id: indexed(uint256)
    amount: uint256

event DividendsReleased:
    dataset_id: indexed(uint256)
    amount: uint256

event RefundCredited:
    account: indexed(address)
    amount: uint256

event RefundWithdrawn:
    account: indexed(address)
    amount: uint256


@deploy
def __init__(share_token_blueprint: address):
    """
    @notice Create the market.
    @param share_token_blueprint ERC-5202 blueprint of ShareToken (code offset 3).
    """
    self.share_token_blueprint = share_token_blueprint


@external
def create_dataset(
    name: String[64],
    symbol: String[32],
    card_cid: String[100],
    seed_cid: String[100],
    seed_root: bytes32,
    seed_count: uint256,
    quorum_bps: uint256,
    approval_bps: uint256,
    voting_period: uint256,
    stake: uint256,
    reward_r0: uint256,
    reward_n0: uint256,
    evaluator: address,
    training_fee: uint256,
    min_royalty_bps: uint256,
) -> uint256:
    """
    @notice Create a dataset, deploy its ShareToken and record the caller's seed as entry 0.
    @dev The seed earns the price of items [0, seed_count) (score 10,000). The reward rule
         must satisfy r0 * n0 * MAX_SCORE / BPS <= SUPPLY_CAP: every batch earns at most its
         price at its place among the accepted batches, those prices sum below F(0) = r0 * n0,
         and a score at most doubles them, so no finalize can ever reach the supply cap.
    @param name Unique dataset name (also the token name).
    @param symbol Token symbol.
    @param card_cid CID of the dataset card.
    @param seed_cid Manifest CID of the seed batch.
    @param seed_root Merkle root of the seed batch.
    @param seed_count Number of items in the seed batch (at least 1; must earn >= 1 share).
    @param quorum_bps Share of the snapshot supply that must vote, in bps (at least 1).
    @param approval_bps Share of the votes that must be yes, in bps.
    @param voting_period Seconds a proposal stays open.
    @param stake Wei each proposal must lock.
    @param reward_r0 Shares per item for the first items (18 decimals).
    @param reward_n0 Size at which rewards per item have fallen to a quarter.
    @param evaluator Account allowed to post scores, or the zero address.
    @param training_fee Wei a model registry must pay the shareholders per model and checkpoint.
    @param min_royalty_bps The lowest royalty on paid predictions a model may set, in bps.
    @return The new dataset id.
    """
    assert len(name) > 0, "market: empty name"
    assert self.dataset_id_of[name] == 0, "market: name taken"
    assert quorum_bps > 0 and quorum_bps <= BPS, "market: bad quorum"
    assert approval_bps <= BPS, "market: bad approval"
    assert voting_period > 0 and voting_period <= MAX_VOTING_PERIOD, "market: bad voting period"
    assert reward_n0 > 0 and reward_n0 <= MAX_N0 and reward_r0 <= SUPPLY_CAP, "market: bad reward rule"
    # no overflow: r0 < 2**88, n0 <= 2**64, MAX_SCORE < 2**15
    assert reward_r0 * reward_n0 * MAX_SCORE // BPS <= SUPPLY_CAP, "market: bad reward rule"
    assert seed_count > 0 and seed_count <= MAX_BATCH, "market: bad seed"
    assert min_royalty_bps <= BPS, "market: bad royalty floor"
    assert training_fee <= MAX_FEE, "market: bad training fee"
    dataset_id: uint256 = self.dataset_count + 1
    self.dataset_count = dataset_id
    token: address = create_from_blueprint(self.share_token_blueprint, name, symbol, self)
    shares: uint256 = self._reward(reward_r0, reward_n0, 0, seed_count, BPS)
    # at least one whole share, so the per-share dividend total cannot be driven to its cap
    # (2**56 wei per share unit, 7.2e16 ether per whole share)
    assert shares >= MIN_SEED_SHARES, "market: bad seed"
    self._datasets[dataset_id] = Dataset(
        name=name,
        symbol=symbol,
        card_cid=card_cid,
        initiator=msg.sender,
        share_token=token,
        quorum_bps=quorum_bps,
        approval_bps=approval_bps,
        voting_period=voting_period,
        stake=stake,
        reward_r0=reward_r0,
        reward_n0=reward_n0,
        evaluator=evaluator,
        item_count=seed_count,
        entry_count=1,
        pending_items=0,
        training_fee=training_fee,
        min_royalty_bps=min_royalty_bps,
    )
    self.dataset_id_of[name] = dataset_id
    self.root_state[dataset_id][seed_root] = ROOT_REGISTERED
    self._entries[dataset_id][0] = Entry(
        manifest_cid=seed_cid,
        merkle_root=seed_root,
        item_count=seed_count,
        contributor=msg.sender,
        proposal_id=0,
        shares_minted=shares,
        first_item=0,
    )
    log DatasetCreated(
        dataset_id=dataset_id,
        name=name,
        symbol=symbol,
        share_token=token,
        initiator=msg.sender,
        card_cid=card_cid,
        quorum_bps=quorum_bps,
        approval_bps=approval_bps,
        voting_period=voting_period,
        stake=stake,
        reward_r0=reward_r0,
        reward_n0=reward_n0,
        evaluator=evaluator,
        training_fee=training_fee,
        min_royalty_bps=min_royalty_bps,
    )
    log EntryAdded(
        dataset_id=dataset_id,
        index=0,
        manifest_cid=seed_cid,
        merkle_root=seed_root,
        item_count=seed_count,
        contributor=msg.sender,
        proposal_id=0,
        shares_minted=shares,
        first_item=0,
    )
    if shares > 0:
        extcall IShareToken(token).mint(msg.sender, shares)
    return dataset_id


@external
def commit(dataset_id: uint256, commitment: bytes32):
    """
    @notice First step of a proposal: record a commitment to a batch, bound to the caller.
    @dev commitment = keccak256(abi_encode(proposer, dataset_id, merkle_root,
         keccak256(manifest_cid), item_count)) (see `commitment_of`). Only the caller can
         reveal it with `propose`, in a later block and within COMMIT_TTL seconds. This block
         becomes the proposal's vote snapshot. Committing again refreshes the commitment.
    @param dataset_id The dataset.
    @param commitment The hash of the batch and its proposer.
    """
    assert dataset_id != 0 and dataset_id <= self.dataset_count, "market: unknown dataset"
    self._commits[msg.sender][commitment] = (
        block.number | (block.timestamp << TS_SHIFT) | (dataset_id << COMMIT_DATASET_SHIFT)
    )
    log ProposalCommitted(
        commitment=commitment, dataset_id=dataset_id, proposer=msg.sender, snapshot=block.number
    )
    extcall IShareToken(self._datasets[dataset_id].share_token).snapshot()


@external
@payable
@nonreentrant
def propose(
    dataset_id: uint256, manifest_cid: String[100], merkle_root: bytes32, item_count: uint256
) -> uint256:
    """
    @notice Reveal a committed batch as a proposal, locking exactly the dataset's stake.
    @dev Needs the caller's own commitment to exactly these arguments from an earlier block,
         at most COMMIT_TTL old; it is consumed. Snapshot = the commit block (votes count
         balances at its end). The root must be neither pending nor registered in the
         dataset. The batch is priced at its position: accepted plus pending items now.
         Gas does not depend on `item_count`.
    @param dataset_id The dataset.
    @param manifest_cid CID of the batch manifest.
    @param merkle_root StandardMerkleTree root of the batch's (cid_digest, label) leaves.
    @param item_count Number of items in the batch.
    @return The new proposal id.
    """
    assert dataset_id != 0 and dataset_id <= self.dataset_count, "market: unknown dataset"
    assert len(manifest_cid) > 0, "market: empty manifest"
    assert item_count > 0 and item_count <= MAX_BATCH, "market: bad item count"
    assert msg.value == self._datasets[dataset_id].stake, "market: wrong stake"
    commitment: bytes32 = self._commitment(
        msg.sender, dataset_id, manifest_cid, merkle_root, item_count
    )
    record: uint256 = self._commits[msg.sender][commitment]
    assert record != 0 and record >> COMMIT_DATASET_SHIFT == dataset_id, "market: no commitment"
    snapshot: uint256 = record & BLK_MASK
    assert snapshot < block.number, "market: commitment too new"
    committed_at: uint256 = (record >> TS_SHIFT) & BLK_MASK
    assert block.timestamp <= committed_at + COMMIT_TTL, "market: commitment expired"
    self._commits[msg.sender][commitment] = 0
    state: uint256 = self.root_state[dataset_id][merkle_root]
    assert state != ROOT_PENDING, "market: root pending"
    assert state != ROOT_REGISTERED, "market: root registered"
    self.root_state[dataset_id][merkle_root] = ROOT_PENDING
    pending: uint256 = self._datasets[dataset_id].pending_items
    position: uint256 = self._datasets[dataset_id].item_count + pending
    self._datasets[dataset_id].pending_items = pending + item_count

    token: address = self._datasets[dataset_id].share_token
    deadline: uint256 = block.timestamp + self._datasets[dataset_id].voting_period
    proposal_id: uint256 = self.proposal_count + 1
    self.proposal_count = proposal_id
    self._p_head[proposal_id] = (
        convert(token, uint256)
        | (snapshot << SNAPSHOT_SHIFT)
        | (deadline << DEADLINE_SHIFT)
    )
    self._p_tally[proposal_id] = STATUS_OPEN << STATUS_SHIFT
    self._p_info[proposal_id] = convert(msg.sender, uint256) | (dataset_id << 160)
    self._p_root[proposal_id] = merkle_root
    self._p_items[proposal_id] = item_count | (position << 128)
    if msg.value > 0:
        self._p_stake[proposal_id] = msg.value
    self._p_cid[proposal_id] = manifest_cid
    log ProposalCreated(
        proposal_id=proposal_id,
        dataset_id=dataset_id,
        proposer=msg.sender,
        manifest_cid=manifest_cid,
        merkle_root=merkle_root,
        item_count=item_count,
        stake=msg.value,
        snapshot=snapshot,
        deadline=deadline,
        position=position,
    )
    return proposal_id


@external
def vote(proposal_id: uint256, support: bool):
    """
    @notice Vote on an open proposal with the caller's shares at its snapshot.
    @param proposal_id The proposal.
    @param support True for yes, False for no.
    """
    head: uint256 = self._p_head[proposal_id]
    assert head != 0, "market: unknown proposal"
    tally: uint256 = self._p_tally[proposal_id]
    assert (tally >> STATUS_SHIFT) & 255 == STATUS_OPEN, "market: proposal not open"
    assert block.timestamp < head >> DEADLINE_SHIFT, "market: voting closed"
    # the snapshot is the commit block, always before the proposal's own block
    snapshot: uint256 = (head >> SNAPSHOT_SHIFT) & BLK_MASK
    assert self._votes[proposal_id][msg.sender] == 0, "market: already voted"
    weight: uint256 = staticcall IShareToken(convert(head & ADDR_MASK, address)).balance_at(
        msg.sender, snapshot
    )
    assert weight > 0, "market: no voting power"
    record: uint256 = VOTED_BIT | weight
    if support:
        record |= SUPPORT_BIT
        tally += weight  # yes < 2**88, no overflow into `no`
    else:
        tally += weight << NO_SHIFT
    self._votes[proposal_id][msg.sender] = record
    self._p_tally[proposal_id] = tally
    log Voted(proposal_id=proposal_id, voter=msg.sender, support=support, weight=weight)


@external
def post_score(proposal_id: uint256, score_bps: uint256):
    """
    @notice The dataset's evaluator scores an open proposal once, before its deadline;
            shares scale by score/10,000.
    @param proposal_id The proposal.
    @param score_bps Score in [0, 20000].
    """
    head: uint256 = self._p_head[proposal_id]
    assert head != 0, "market: unknown proposal"
    tally: uint256 = self._p_tally[proposal_id]
    assert (tally >> STATUS_SHIFT) & 255 == STATUS_OPEN, "market: proposal not open"
    assert block.timestamp < head >> DEADLINE_SHIFT, "market: voting closed"
    dataset_id: uint256 = self._p_info[proposal_id] >> 160
    assert msg.sender == self._datasets[dataset_id].evaluator, "market: only evaluator"
    assert tally & SCORED_BIT == 0, "market: already scored"
    assert score_bps <= MAX_SCORE, "market: score out of range"
    self._p_tally[proposal_id] = tally | SCORED_BIT | (score_bps << SCORE_SHIFT)
    log ScorePosted(proposal_id=proposal_id, score_bps=score_bps)


@external
@nonreentrant
def finalize(proposal_id: uint256):
    """
    @notice Decide an open proposal: after the deadline, or earlier once the outcome
            (including the score, if an evaluator is named) can no longer change.
    @dev Accepted: entry, shares, stake refundable. Rejected (quorum met, approval failed):
         stake distributed to holders, or held for `release_dividends` if the token refuses
         it, so a finalize never depends on `distribute`. Expired (no quorum at the
         deadline): stake refundable. Rejected and expired roots become free again.
    @param proposal_id The proposal.
    """
    head: uint256 = self._p_head[proposal_id]
    assert head != 0, "market: unknown proposal"
    tally: uint256 = self._p_tally[proposal_id]
    assert (tally >> STATUS_SHIFT) & 255 == STATUS_OPEN, "market: proposal not open"
    snapshot: uint256 = (head >> SNAPSHOT_SHIFT) & BLK_MASK
    token: address = convert(head & ADDR_MASK, address)
    info: uint256 = self._p_info[proposal_id]
    dataset_id: uint256 = info >> 160
    supply: uint256 = staticcall IShareToken(token).total_supply_at(snapshot)
    status: uint256 = self._decide(dataset_id, tally, supply, block.timestamp >= head >> DEADLINE_SHIFT)
    assert status != STATUS_OPEN, "market: outcome not final"

    proposer: address = convert(info & ADDR_MASK, address)
    stake: uint256 = self._p_stake[proposal_id]
    items: uint256 = self._p_items[proposal_id]
    count: uint256 = items & W128
    position: uint256 = items >> 128
    pending: uint256 = self._datasets[dataset_id].pending_items
    self._datasets[dataset_id].pending_items = pending - count
    shares: uint256 = 0
    if status == STATUS_ACCEPTED:
        # Batches proposed earlier and still to be accepted are now either accepted or
        # pending, so accepted + pending - own items still covers them: taking the smaller
        # keeps the price at most the batch's place among accepted batches, and drops what
        # rejected or expired proposals ahead of it had added to its position.
        position = min(position, self._datasets[dataset_id].item_count + pending - count)
        shares = self._accept(proposal_id, dataset_id, proposer, tally, count, position)
    else:
        self.root_state[dataset_id][self._p_root[proposal_id]] = ROOT_FREE
    self._p_tally[proposal_id] = (tally & ~(255 << STATUS_SHIFT)) | (status << STATUS_SHIFT)
    self._p_result[proposal_id] = supply | (shares << 128)
    log ProposalFinalized(
        proposal_id=proposal_id,
        dataset_id=dataset_id,
        status=status,
        shares_minted=shares,
        snapshot_supply=supply,
        yes=tally & W96,
        no=(tally >> NO_SHIFT) & W96,
        position=position,
    )
    if status != STATUS_REJECTED and stake > 0:
        self.refund_of[proposer] += stake
        log RefundCredited(account=proposer, amount=stake)
    if shares > 0:
        extcall IShareToken(token).mint(proposer, shares)
    if status == STATUS_REJECTED and stake > 0:
        paid: bool = raw_call(
            token, method_id("distribute()"), value=stake, revert_on_failure=False
        )
        if not paid:
            self.held_dividends[dataset_id] += stake
            log DividendsHeld(dataset_id=dataset_id, proposal_id=proposal_id, amount=stake)


@external
@nonreentrant
def release_dividends(dataset_id: uint256) -> uint256:
    """
    @notice Pay the dataset's held rejected stakes to its holders (anyone may call).
    @param dataset_id The dataset.
    @return The amount distributed in wei.
    """
    assert dataset_id != 0 and dataset_id <= self.dataset_count, "market: unknown dataset"
    amount: uint256 = self.held_dividends[dataset_id]
    assert amount > 0, "market: nothing held"
    self.held_dividends[dataset_id] = 0
    log DividendsReleased(dataset_id=dataset_id, amount=amount)
    extcall IShareToken(self._datasets[dataset_id].share_token).distribute(value=amount)
    return amount


@external
@nonreentrant
def withdraw_refund() -> uint256:
    """
    @notice Send the caller all its refunded stakes.
    @return The amount paid in wei.
    """
    amount: uint256 = self.refund_of[msg.sender]
    assert amount > 0, "market: nothing to refund"
    self.refund_of[msg.sender] = 0
    log RefundWithdrawn(account=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)
    return amount


@external
@view
def get_dataset(dataset_id: uint256) -> Dataset:
    """
    @notice A dataset's metadata, rules and size.
    @param dataset_id The dataset.
    @return The Dataset record.
    """
    assert dataset_id != 0 and dataset_id <= self.dataset_count, "market: unknown dataset"
    return self._datasets[dataset_id]


@external
@view
def model_terms(dataset_id: uint256) -> (address, address, uint256, uint256, uint256):
    """
    @notice What a model registry needs to know of a dataset, without reverting.
    @param dataset_id The dataset.
    @return (share token, evaluator, training fee, royalty floor in bps, entry count);
            the zero share token for an unknown dataset.
    """
    if dataset_id == 0 or dataset_id > self.dataset_count:
        return empty(address), empty(address), 0, 0, 0
    # member by member: copying the whole record would read its strings too
    return (
        self._datasets[dataset_id].share_token,
        self._datasets[dataset_id].evaluator,
        self._datasets[dataset_id].training_fee,
        self._datasets[dataset_id].min_royalty_bps,
        self._datasets[dataset_id].entry_count,
    )


@external
@view
def get_proposal(proposal_id: uint256) -> Proposal:
    """
    @notice A proposal's full state. Before finalize, `snapshot_supply` is read live from
            the token once the snapshot block is final (0 before).
    @param proposal_id The proposal.
    @return The Proposal record.
    """
    head: uint256 = self._p_head[proposal_id]
    assert head != 0, "market: unknown proposal"
    tally: uint256 = self._p_tally[proposal_id]
    info: uint256 = self._p_info[proposal_id]
    result: uint256 = self._p_result[proposal_id]
    items: uint256 = self._p_items[proposal_id]
    status: uint256 = (tally >> STATUS_SHIFT) & 255
    snapshot: uint256 = (head >> SNAPSHOT_SHIFT) & BLK_MASK
    supply: uint256 = result & W128
    if status == STATUS_OPEN and snapshot < block.number:
        supply = staticcall IShareToken(convert(head & ADDR_MASK, address)).total_supply_at(snapshot)
    scored: bool = tally & SCORED_BIT != 0
    score: uint256 = BPS
    if scored:
        score = (tally >> SCORE_SHIFT) & 65535
    return Proposal(
        dataset_id=info >> 160,
        proposer=convert(info & ADDR_MASK, address),
        manifest_cid=self._p_cid[proposal_id],
        merkle_root=self._p_root[proposal_id],
        item_count=items & W128,
        stake=self._p_stake[proposal_id],
        snapshot=snapshot,
        snapshot_supply=supply,
        deadline=head >> DEADLINE_SHIFT,
        yes=tally & W96,
        no=(tally >> NO_SHIFT) & W96,
        score_bps=score,
        scored=scored,
        status=status,
        shares_minted=result >> 128,
        position=items >> 128,
    )


@external
@view
def get_entry(dataset_id: uint256, index: uint256) -> Entry:
    """
    @notice A registry entry (entry 0 is the seed).
    @param dataset_id The dataset.
    @param index Entry index.
    @return The Entry record.
    """
    assert index < self._datasets[dataset_id].entry_count, "market: unknown entry"
    return self._entries[dataset_id][index]


@external
@view
def has_voted(proposal_id: uint256, account: address) -> bool:
    """
    @notice Whether `account` voted on `proposal_id`.
    @param proposal_id The proposal.
    @param account The voter.
    @return True if it voted.
    """
    return self._votes[proposal_id][account] != 0


@external
@view
def vote_of(proposal_id: uint256, account: address) -> (bool, bool, uint256):
    """
    @notice The vote of `account` on `proposal_id`.
    @param proposal_id The proposal.
    @param account The voter.
    @return (voted, support, weight)
    """
    record: uint256 = self._votes[proposal_id][account]
    return record & VOTED_BIT != 0, record & SUPPORT_BIT != 0, record & W128


@external
@view
def reward_for(dataset_id: uint256, item_count: uint256, score_bps: uint256) -> uint256:
    """
    @notice Shares a batch of `item_count` items proposed now would earn at `score_bps`
            (priced after the accepted and the pending items).
    @param dataset_id The dataset.
    @param item_count Batch size.
    @param score_bps Score in [0, 20000].
    @return Shares (18 decimals).
    """
    assert dataset_id != 0 and dataset_id <= self.dataset_count, "market: unknown dataset"
    assert score_bps <= MAX_SCORE, "market: score out of range"
    assert item_count <= MAX_BATCH, "market: bad item count"
    d: Dataset = self._datasets[dataset_id]
    return self._reward(
        d.reward_r0, d.reward_n0, d.item_count + d.pending_items, item_count, score_bps
    )


@external
@pure
def commitment_of(
    proposer: address,
    dataset_id: uint256,
    manifest_cid: String[100],
    merkle_root: bytes32,
    item_count: uint256,
) -> bytes32:
    """
    @notice The commitment `commit` expects for a batch.
    @param proposer The account that will call `propose`.
    @param dataset_id The dataset.
    @param manifest_cid CID of the batch manifest.
    @param merkle_root Merkle root of the batch.
    @param item_count Number of items in the batch.
    @return keccak256(abi_encode(proposer, dataset_id, merkle_root, keccak256(manifest_cid), item_count))
    """
    return self._commitment(proposer, dataset_id, manifest_cid, merkle_root, item_count)


@external
@view
def commit_of(account: address, commitment: bytes32) -> (uint256, uint256, uint256):
    """
    @notice The unconsumed commitment `commitment` of `account`.
    @param account The committer.
    @param commitment The commitment.
    @return (block, timestamp, dataset id), all 0 if none.
    """
    record: uint256 = self._commits[account][commitment]
    return record & BLK_MASK, (record >> TS_SHIFT) & BLK_MASK, record >> COMMIT_DATASET_SHIFT


@external
@view
def verify_item(
    dataset_id: uint256,
    entry: uint256,
    cid_digest: bytes32,
    label: String[64],
    proof: DynArray[bytes32, MAX_PROOF],
) -> bool:
    """
    @notice Check that (cid_digest, label) is a leaf of an entry's StandardMerkleTree.
    @dev Leaf = keccak256(keccak256(abi.encode(cid_digest, label))); pairs hashed sorted.
    @param dataset_id The dataset.
    @param entry Entry index.
    @param cid_digest sha2-256 digest of the item's CID.
    @param label The item's label.
    @param proof Sibling hashes from leaf to root.
    @return True if the proof reaches the entry's root.
    """
    assert entry < self._datasets[dataset_id].entry_count, "market: unknown entry"
    node: bytes32 = keccak256(keccak256(abi_encode(cid_digest, label)))
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    return node == self._entries[dataset_id][entry].merkle_root


@internal
@view
def _decide(dataset_id: uint256, tally: uint256, supply: uint256, closed: bool) -> uint256:
    """
    @dev The status the proposal takes now, or STATUS_OPEN if not yet decided. Before the
         deadline, the rest of the snapshot supply may still vote either way.
    """
    yes: uint256 = tally & W96
    no: uint256 = (tally >> NO_SHIFT) & W96
    quorum: bool = (yes + no) * BPS >= self._datasets[dataset_id].quorum_bps * supply
    approval_bps: uint256 = self._datasets[dataset_id].approval_bps
    if closed:
        if not quorum:
            return STATUS_EXPIRED
        if yes * BPS >= approval_bps * (yes + no):
            return STATUS_ACCEPTED
        return STATUS_REJECTED
    if not quorum:
        return STATUS_OPEN
    if yes * BPS >= approval_bps * supply:
        # even if everyone left votes no; the score must be known too
        if tally & SCORED_BIT != 0 or self._datasets[dataset_id].evaluator == empty(address):
            return STATUS_ACCEPTED
        return STATUS_OPEN
    if (supply - no) * BPS < approval_bps * supply:
        # even if everyone left votes yes
        return STATUS_REJECTED
    return STATUS_OPEN


@internal
def _accept(
    proposal_id: uint256,
    dataset_id: uint256,
    proposer: address,
    tally: uint256,
    count: uint256,
    position: uint256,
) -> uint256:
    """
    @dev Append the registry entry, register the root and grow the dataset; return the shares
         to mint, priced at the batch's position in proposal order.
    """
    score: uint256 = BPS
    if tally & SCORED_BIT != 0:
        score = (tally >> SCORE_SHIFT) & 65535
    d: Dataset = self._datasets[dataset_id]
    shares: uint256 = self._reward(d.reward_r0, d.reward_n0, position, count, score)
    index: uint256 = d.entry_count
    root: bytes32 = self._p_root[proposal_id]
    self.root_state[dataset_id][root] = ROOT_REGISTERED
    cid: String[100] = self._p_cid[proposal_id]
    self._entries[dataset_id][index] = Entry(
        manifest_cid=cid,
        merkle_root=root,
        item_count=count,
        contributor=proposer,
        proposal_id=proposal_id,
        shares_minted=shares,
        first_item=d.item_count,
    )
    self._datasets[dataset_id].item_count = d.item_count + count
    self._datasets[dataset_id].entry_count = index + 1
    log EntryAdded(
        dataset_id=dataset_id,
        index=index,
        manifest_cid=cid,
        merkle_root=root,
        item_count=count,
        contributor=proposer,
        proposal_id=proposal_id,
        shares_minted=shares,
        first_item=d.item_count,
    )
    return shares


@internal
@pure
def _reward(r0: uint256, n0: uint256, n: uint256, c: uint256, score_bps: uint256) -> uint256:
    """
    @dev The price of items [n, n + c): floor(f(n) - f(n + c)) * score / 10,000 with
         f(n) = r0 * n0**2 / (n0 + n) exact, i.e. floor(r0 * n0**2 * c / ((n0 + n)(n0 + n + c))).
         One floor makes the price non-increasing in n, so a batch priced at a position at
         least its place among accepted batches never earns more than there; prices of
         consecutive batches sum to at most f(n) - f(n + total) (splitting never earns more,
         and at most one unit per extra piece less). No overflow: r0 * n0 < 2**88,
         n0, c <= 2**64; n stays far below 2**100.
    """
    a: uint256 = n0 + n
    return r0 * n0 * n0 * c // (a * (a + c)) * score_bps // BPS


@internal
@pure
def _commitment(
    proposer: address,
    dataset_id: uint256,
    manifest_cid: String[100],
    merkle_root: bytes32,
    item_count: uint256,
) -> bytes32:
    """
    @dev keccak256(abi_encode(proposer, dataset_id, merkle_root, keccak256(manifest_cid), item_count)).
    """
    return keccak256(
        abi_encode(proposer, dataset_id, merkle_root, keccak256(manifest_cid), item_count)
    )
