# SPDX-License-Identifier: Apache-2.0
# pragma version 0.4.3
# pragma evm-version cancun
"""
@title ModelRegistry
@notice Models trained on DataMarket datasets, their checkpoints, and payment channels for
        paid predictions. Training a model (register, submit_checkpoint) pays the dataset's
        training fee and every closed channel pays the model's royalty, both as dividends to
        the dataset's ShareToken.
@dev Attestations and vouchers are EIP-712 typed data under the domain
     (name "DataBright ModelRegistry", version "1", chain id, this contract).
     A checkpoint becomes a model's best only with a metric attested by the dataset's
     evaluator or a registry-trusted attestor and higher than the current best.
     Channel hot fields are packed by hand:
     - `_ch_head[c]`  = payer (160) | expiry (40) | reclaim_at (40) | status (8).
     - `_ch_funds[c]` = deposit (96) | model id (160).
     - `_cp_word[m][n]` = attestor (160) | entries (40) | metric (16) | submitted at (40).
     Money leaves only through `withdraw` (pull); a dividend the ShareToken refuses is held
     per dataset until anyone calls `release_held`.
"""

interface IDataTerms:
    def model_terms(dataset_id: uint256) -> (address, address, uint256, uint256, uint256): view

interface IShareToken:
    def distribute(): payable

BPS: constant(uint256) = 10_000
MAX_TIMEOUT: constant(uint256) = 3650 * 86400
MAX_CHALLENGE: constant(uint256) = 365 * 86400
# secp256k1 order / 2: a higher s is the malleable twin of a valid signature
SECP256K1N_HALF: constant(uint256) = (
    57896044618658097711785492504343953926418782139537452191302581570759080747168
)

STATUS_NONE: constant(uint256) = 0
STATUS_OPEN: constant(uint256) = 1
STATUS_RECLAIMING: constant(uint256) = 2
STATUS_CLOSED: constant(uint256) = 3
STATUS_RECLAIMED: constant(uint256) = 4

SOURCE_TRAINING: constant(uint256) = 1
SOURCE_ROYALTY: constant(uint256) = 2

ADDR_MASK: constant(uint256) = 2**160 - 1
TIME_MASK: constant(uint256) = 2**40 - 1
W16: constant(uint256) = 2**16 - 1
ENTRIES_SHIFT: constant(uint256) = 160
METRIC_SHIFT: constant(uint256) = 200
SUBMITTED_SHIFT: constant(uint256) = 216
W96: constant(uint256) = 2**96 - 1
EXPIRY_SHIFT: constant(uint256) = 160
RECLAIM_SHIFT: constant(uint256) = 200
STATUS_SHIFT: constant(uint256) = 240
MODEL_SHIFT: constant(uint256) = 96

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NAME_HASH: constant(bytes32) = keccak256("DataBright ModelRegistry")
VERSION_HASH: constant(bytes32) = keccak256("1")
ATTESTATION_TYPEHASH: constant(bytes32) = keccak256(
    "Attestation(address registry,uint256 modelId,bytes32 checkpointSha256,"
    "uint256 datasetId,uint256 entries,uint256 metricBps)"
)
VOUCHER_TYPEHASH: constant(bytes32) = keccak256("Voucher(uint256 channelId,uint256 amount)")


struct Model:
    owner: address
    dataset_id: uint256
    share_token: address
    name: String[64]
    program_digest: bytes32
    price_per_prediction: uint256
    royalty_bps: uint256
    checkpoint_count: uint256
    best_checkpoint: uint256
    best_metric_bps: uint256

# stored form: the token lives once per dataset in `share_token_of` (gas: one slot less)
struct ModelRecord:
    owner: address
    dataset_id: uint256
    name: String[64]
    program_digest: bytes32
    price_per_prediction: uint256
    royalty_bps: uint256
    checkpoint_count: uint256
    best_checkpoint: uint256
    best_metric_bps: uint256

struct Checkpoint:
    cid: String[100]
    file_sha256: bytes32
    entries: uint256
    metric_bps: uint256
    attestor: address
    submitted_at: uint256

struct Channel:
    payer: address
    model_id: uint256
    deposit: uint256
    expiry: uint256
    reclaim_at: uint256
    status: uint256


data_terms: public(immutable(address))
challenge_period: public(immutable(uint256))
owner: public(address)
model_count: public(uint256)
channel_count: public(uint256)
owed_of: public(HashMap[address, uint256])
held_of: public(HashMap[uint256, uint256])
share_token_of: public(HashMap[uint256, address])
is_trusted_attestor: public(HashMap[address, bool])

_models: HashMap[uint256, ModelRecord]
_cp_cid: HashMap[uint256, HashMap[uint256, String[100]]]
_cp_sha: HashMap[uint256, HashMap[uint256, bytes32]]
_cp_word: HashMap[uint256, HashMap[uint256, uint256]]
_ch_head: HashMap[uint256, uint256]
_ch_funds: HashMap[uint256, uint256]


event ModelRegistered:
    model_id: indexed(uint256)
    dataset_id: indexed(uint256)
    owner: indexed(address)
    name: String[64]
    program_digest: bytes32
    price_per_prediction: uint256
    royalty_bps: uint256

event CheckpointSubmitted:
    model_id: indexed(uint256)
    checkpoint: uint256
    cid: String[100]
    file_sha256: bytes32
    entries: uint256
    metric_bps: uint256
    attestor: indexed(address)
    best: bool

event CheckpointAttested:
    model_id: indexed(uint256)
    checkpoint: uint256
    metric_bps: uint256
    attestor: indexed(address)
    best: bool

event DividendPaid:
    dataset_id: indexed(uint256)
    model_id: indexed(uint256)
    source: uint256
    amount: uint256
    held: bool

event HeldReleased:
    dataset_id: indexed(uint256)
    amount: uint256

event ChannelOpened:
    channel_id: indexed(uint256)
    model_id: indexed(uint256)
    payer: indexed(address)
    deposit: uint256
    expiry: uint256

event ChannelToppedUp:
    channel_id: indexed(uint256)
    amount: uint256
    deposit: uint256

event ReclaimStarted:
    channel_id: indexed(uint256)
    reclaim_at: uint256

event ChannelClosed:
    channel_id: indexed(uint256)
    amount: uint256
    royalty: uint256
    payee_amount: uint256
    refund: uint256

event ChannelReclaimed:
    channel_id: indexed(uint256)
    refund: uint256

event Credited:
    account: indexed(address)
    amount: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

event AttestorSet:
    attestor: indexed(address)
    trusted: bool

event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)


@deploy
def __init__(terms: address, challenge: uint256):
    """
    @notice Create the registry over a source of dataset terms (the DataMarket).
    @param terms Contract answering `model_terms(dataset_id)`.
    @param challenge Seconds between `start_reclaim` and `reclaim` in which the payee may
           still close (at least 1, at most a year).
    """
    assert terms.is_contract, "registry: terms not a contract"
    assert challenge > 0 and challenge <= MAX_CHALLENGE, "registry: bad challenge period"
    data_terms = terms
    challenge_period = challenge
    self.owner = msg.sender
    log OwnershipTransferred(previous_owner=empty(address), new_owner=msg.sender)


@external
@payable
@nonreentrant
def register(
    dataset_id: uint256,
    name: String[64],
    program_digest: bytes32,
    price_per_prediction: uint256,
    royalty_bps: uint256,
) -> uint256:
    """
    @notice Register a model trained on a dataset, paying exactly its training fee.
    @dev The fee goes to the dataset's ShareToken as a dividend (held if it refuses).
    @param dataset_id The dataset the model was trained on.
    @param name Display name.
    @param program_digest Digest of the training program and its configuration.
    @param price_per_prediction Wei a consumer pays per prediction (off-chain vouchers).
    @param royalty_bps Share of every closed channel paid to the dataset, at least its floor.
    @return The new model id.
    """
    token: address = empty(address)
    evaluator: address = empty(address)
    fee: uint256 = 0
    min_royalty: uint256 = 0
    entries: uint256 = 0
    token, evaluator, fee, min_royalty, entries = staticcall IDataTerms(data_terms).model_terms(
        dataset_id
    )
    assert token != empty(address), "registry: unknown dataset"
    assert len(name) > 0, "registry: empty name"
    assert royalty_bps <= BPS, "registry: bad royalty"
    assert royalty_bps >= min_royalty, "registry: royalty below floor"
    assert msg.value == fee, "registry: wrong fee"
    model_id: uint256 = self.model_count + 1
    self.model_count = model_id
    self._models[model_id] = ModelRecord(
        owner=msg.sender,
        dataset_id=dataset_id,
        name=name,
        program_digest=program_digest,
        price_per_prediction=price_per_prediction,
        royalty_bps=royalty_bps,
        checkpoint_count=0,
        best_checkpoint=0,
        best_metric_bps=0,
    )
    if self.share_token_of[dataset_id] != token:
        self.share_token_of[dataset_id] = token
    log ModelRegistered(
        model_id=model_id,
        dataset_id=dataset_id,
        owner=msg.sender,
        name=name,
        program_digest=program_digest,
        price_per_prediction=price_per_prediction,
        royalty_bps=royalty_bps,
    )
    self._pay_dataset(dataset_id, model_id, token, fee, SOURCE_TRAINING)
    return model_id


@external
@payable
@nonreentrant
def submit_checkpoint(
    model_id: uint256,
    cid: String[100],
    file_sha256: bytes32,
    entries: uint256,
    metric_bps: uint256,
    signature: Bytes[65],
) -> uint256:
    """
    @notice Record a checkpoint of the caller's model, paying exactly the training fee.
    @dev Best only if `signature` is an EIP-712 Attestation by the dataset's evaluator or a
         trusted attestor and `metric_bps` beats the current best; otherwise self-reported.
         An empty or unrecoverable signature is not an error: the checkpoint is kept.
    @param model_id The model.
    @param cid CID of the safetensors file.
    @param file_sha256 SHA-256 of the safetensors file.
    @param entries Dataset snapshot trained on: number of registry entries (1..entry count).
    @param metric_bps Validation metric in basis points (0..10,000).
    @param signature 65-byte (r, s, v) attestation signature, or empty.
    @return The checkpoint number (1-based).
    """
    dataset_id: uint256 = self._models[model_id].dataset_id
    assert dataset_id != 0, "registry: unknown model"
    assert msg.sender == self._models[model_id].owner, "registry: only model owner"
    assert len(cid) > 0, "registry: empty cid"
    assert file_sha256 != empty(bytes32), "registry: empty sha256"
    assert metric_bps <= BPS, "registry: metric out of range"
    assert len(signature) == 0 or len(signature) == 65, "registry: bad signature length"
    token: address = empty(address)
    evaluator: address = empty(address)
    fee: uint256 = 0
    min_royalty: uint256 = 0
    entry_count: uint256 = 0
    token, evaluator, fee, min_royalty, entry_count = staticcall IDataTerms(data_terms).model_terms(
        dataset_id
    )
    assert entries > 0 and entries <= entry_count and entries <= TIME_MASK, "registry: bad snapshot"
    assert msg.value == fee, "registry: wrong fee"

    attestor: address = empty(address)
    if len(signature) == 65:
        digest: bytes32 = self._attestation_digest(
            model_id, file_sha256, dataset_id, entries, metric_bps
        )
        signer: address = self._recover(digest, signature)
        if signer != empty(address) and (signer == evaluator or self.is_trusted_attestor[signer]):
            attestor = signer
    number: uint256 = self._models[model_id].checkpoint_count + 1
    self._models[model_id].checkpoint_count = number
    best: bool = attestor != empty(address) and (
        self._models[model_id].best_checkpoint == 0
        or metric_bps > self._models[model_id].best_metric_bps
    )
    if best:
        self._models[model_id].best_checkpoint = number
        self._models[model_id].best_metric_bps = metric_bps
    # gas: three fresh slots plus the CID's words, instead of one slot per field
    self._cp_cid[model_id][number] = cid
    self._cp_sha[model_id][number] = file_sha256
    self._cp_word[model_id][number] = (
        convert(attestor, uint256)
        | (entries << ENTRIES_SHIFT)
        | (metric_bps << METRIC_SHIFT)
        | (block.timestamp << SUBMITTED_SHIFT)
    )
    log CheckpointSubmitted(
        model_id=model_id,
        checkpoint=number,
        cid=cid,
        file_sha256=file_sha256,
        entries=entries,
        metric_bps=metric_bps,
        attestor=attestor,
        best=best,
    )
    # the token recorded at register (a dataset's ShareToken never changes)
    token = self.share_token_of[dataset_id]
    self._pay_dataset(dataset_id, model_id, token, fee, SOURCE_TRAINING)
    return number


@external
@nonreentrant
def attest(model_id: uint256, checkpoint: uint256, metric_bps: uint256, signature: Bytes[65]):
    """
    @notice Attach a trusted signer's metric to a self-reported checkpoint (anyone may send it;
            no fee: the checkpoint paid it when submitted).
    @dev The signature is the same EIP-712 Attestation as in `submit_checkpoint`, over the
         checkpoint's stored sha256 and snapshot. The attested metric replaces the self-reported
         one; the checkpoint becomes the best if the model has none or it beats the best.
    @param model_id The model.
    @param checkpoint The checkpoint number (1..checkpoint_count).
    @param metric_bps The attested validation metric in basis points (0..10,000).
    @param signature 65-byte (r, s, v) signature by the dataset's evaluator or a trusted attestor.
    """
    dataset_id: uint256 = self._models[model_id].dataset_id
    assert dataset_id != 0, "registry: unknown model"
    count: uint256 = self._models[model_id].checkpoint_count
    assert checkpoint != 0 and checkpoint <= count, "registry: unknown checkpoint"
    assert metric_bps <= BPS, "registry: metric out of range"
    assert len(signature) == 65, "registry: bad signature length"
    word: uint256 = self._cp_word[model_id][checkpoint]
    assert word & ADDR_MASK == 0, "registry: already attested"
    entries: uint256 = (word >> ENTRIES_SHIFT) & TIME_MASK
    digest: bytes32 = self._attestation_digest(
        model_id, self._cp_sha[model_id][checkpoint], dataset_id, entries, metric_bps
    )
    signer: address = self._recover(digest, signature)
    token: address = empty(address)
    evaluator: address = empty(address)
    fee: uint256 = 0
    min_royalty: uint256 = 0
    entry_count: uint256 = 0
    token, evaluator, fee, min_royalty, entry_count = staticcall IDataTerms(data_terms).model_terms(
        dataset_id
    )
    trusted: bool = signer != empty(address) and (
        signer == evaluator or self.is_trusted_attestor[signer]
    )
    assert trusted, "registry: untrusted attestor"
    best: bool = (
        self._models[model_id].best_checkpoint == 0
        or metric_bps > self._models[model_id].best_metric_bps
    )
    if best:
        self._models[model_id].best_checkpoint = checkpoint
        self._models[model_id].best_metric_bps = metric_bps
    self._cp_word[model_id][checkpoint] = (
        convert(signer, uint256)
        | (entries << ENTRIES_SHIFT)
        | (metric_bps << METRIC_SHIFT)
        | ((word >> SUBMITTED_SHIFT) << SUBMITTED_SHIFT)
    )
    log CheckpointAttested(
        model_id=model_id, checkpoint=checkpoint, metric_bps=metric_bps, attestor=signer, best=best
    )


@external
@nonreentrant
def release_held(dataset_id: uint256) -> uint256:
    """
    @notice Pay a dataset's held dividends to its ShareToken (anyone may call).
    @dev Reverts with the token's own reason if it still refuses.
    @param dataset_id The dataset.
    @return The amount released in wei.
    """
    amount: uint256 = self.held_of[dataset_id]
    assert amount > 0, "registry: nothing held"
    self.held_of[dataset_id] = 0
    log HeldReleased(dataset_id=dataset_id, amount=amount)
    extcall IShareToken(self.share_token_of[dataset_id]).distribute(value=amount)
    return amount


@external
@payable
@nonreentrant
def open_channel(model_id: uint256, timeout: uint256) -> uint256:
    """
    @notice Open a payment channel to a model's owner with `msg.value` as the deposit.
    @param model_id The model whose predictions the deposit pays for.
    @param timeout Seconds from now after which the payer may start reclaiming.
    @return The new channel id.
    """
    assert self._models[model_id].dataset_id != 0, "registry: unknown model"
    assert msg.value > 0, "registry: empty deposit"
    assert msg.value <= W96, "registry: deposit too large"
    assert timeout > 0 and timeout <= MAX_TIMEOUT, "registry: bad timeout"
    channel_id: uint256 = self.channel_count + 1
    self.channel_count = channel_id
    expiry: uint256 = block.timestamp + timeout
    self._ch_head[channel_id] = (
        convert(msg.sender, uint256) | (expiry << EXPIRY_SHIFT) | (STATUS_OPEN << STATUS_SHIFT)
    )
    self._ch_funds[channel_id] = msg.value | (model_id << MODEL_SHIFT)
    log ChannelOpened(
        channel_id=channel_id, model_id=model_id, payer=msg.sender, deposit=msg.value, expiry=expiry
    )
    return channel_id


@external
@payable
@nonreentrant
def top_up(channel_id: uint256) -> uint256:
    """
    @notice Add `msg.value` to an open channel's deposit (payer only, before reclaiming).
    @param channel_id The channel.
    @return The new deposit.
    """
    head: uint256 = self._ch_head[channel_id]
    assert head != 0, "registry: unknown channel"
    assert msg.sender == convert(head & ADDR_MASK, address), "registry: only payer"
    assert head >> STATUS_SHIFT == STATUS_OPEN, "registry: channel not open"
    assert msg.value > 0, "registry: empty deposit"
    funds: uint256 = self._ch_funds[channel_id]
    deposit: uint256 = (funds & W96) + msg.value
    assert deposit <= W96, "registry: deposit too large"
    self._ch_funds[channel_id] = (funds & ~W96) | deposit
    log ChannelToppedUp(channel_id=channel_id, amount=msg.value, deposit=deposit)
    return deposit


@external
@nonreentrant
def close(channel_id: uint256, amount: uint256, signature: Bytes[65]):
    """
    @notice The model owner closes a channel with the payer's latest voucher.
    @dev Allowed while open or reclaiming (the challenge window). Royalty =
         ceil(amount * royalty_bps / 10,000), so rounding favours the shareholders; the
         rest of `amount` is credited to the model owner, `deposit - amount` to the payer.
    @param channel_id The channel.
    @param amount Cumulative wei the voucher grants (at most the deposit).
    @param signature The payer's 65-byte EIP-712 Voucher(channelId, amount) signature.
    """
    head: uint256 = self._ch_head[channel_id]
    assert head != 0, "registry: unknown channel"
    status: uint256 = head >> STATUS_SHIFT
    assert status == STATUS_OPEN or status == STATUS_RECLAIMING, "registry: channel not open"
    funds: uint256 = self._ch_funds[channel_id]
    model_id: uint256 = funds >> MODEL_SHIFT
    payee: address = self._models[model_id].owner
    assert msg.sender == payee, "registry: only payee"
    deposit: uint256 = funds & W96
    assert amount <= deposit, "registry: voucher exceeds deposit"
    payer: address = convert(head & ADDR_MASK, address)
    assert len(signature) == 65, "registry: bad signature length"
    signer: address = self._recover(self._voucher_digest(channel_id, amount), signature)
    assert signer == payer, "registry: bad voucher"
    royalty: uint256 = (amount * self._models[model_id].royalty_bps + BPS - 1) // BPS
    payee_amount: uint256 = amount - royalty
    refund: uint256 = deposit - amount
    self._ch_head[channel_id] = (head & ~(255 << STATUS_SHIFT)) | (STATUS_CLOSED << STATUS_SHIFT)
    log ChannelClosed(
        channel_id=channel_id,
        amount=amount,
        royalty=royalty,
        payee_amount=payee_amount,
        refund=refund,
    )
    self._credit(payee, payee_amount)
    self._credit(payer, refund)
    dataset_id: uint256 = self._models[model_id].dataset_id
    self._pay_dataset(
        dataset_id, model_id, self.share_token_of[dataset_id], royalty, SOURCE_ROYALTY
    )


@external
def start_reclaim(channel_id: uint256) -> uint256:
    """
    @notice The payer starts reclaiming an expired channel; the challenge window opens.
    @param channel_id The channel.
    @return The time from which `reclaim` is allowed.
    """
    head: uint256 = self._ch_head[channel_id]
    assert head != 0, "registry: unknown channel"
    assert msg.sender == convert(head & ADDR_MASK, address), "registry: only payer"
    assert head >> STATUS_SHIFT == STATUS_OPEN, "registry: channel not open"
    assert block.timestamp >= (head >> EXPIRY_SHIFT) & TIME_MASK, "registry: channel not expired"
    reclaim_at: uint256 = block.timestamp + challenge_period
    self._ch_head[channel_id] = (
        (head & (ADDR_MASK | (TIME_MASK << EXPIRY_SHIFT)))
        | (reclaim_at << RECLAIM_SHIFT)
        | (STATUS_RECLAIMING << STATUS_SHIFT)
    )
    log ReclaimStarted(channel_id=channel_id, reclaim_at=reclaim_at)
    return reclaim_at


@external
@nonreentrant
def reclaim(channel_id: uint256) -> uint256:
    """
    @notice After the challenge window, credit the whole deposit back to the payer.
    @param channel_id The channel.
    @return The amount credited in wei (withdraw it with `withdraw`).
    """
    head: uint256 = self._ch_head[channel_id]
    assert head != 0, "registry: unknown channel"
    payer: address = convert(head & ADDR_MASK, address)
    assert msg.sender == payer, "registry: only payer"
    assert head >> STATUS_SHIFT == STATUS_RECLAIMING, "registry: reclaim not started"
    assert block.timestamp >= (head >> RECLAIM_SHIFT) & TIME_MASK, "registry: challenge window open"
    refund: uint256 = self._ch_funds[channel_id] & W96
    self._ch_head[channel_id] = (head & ~(255 << STATUS_SHIFT)) | (STATUS_RECLAIMED << STATUS_SHIFT)
    log ChannelReclaimed(channel_id=channel_id, refund=refund)
    self._credit(payer, refund)
    return refund


@external
@nonreentrant
def withdraw() -> uint256:
    """
    @notice Send the caller everything credited to it (payee earnings, refunds).
    @return The amount paid in wei.
    """
    amount: uint256 = self.owed_of[msg.sender]
    assert amount > 0, "registry: nothing to withdraw"
    self.owed_of[msg.sender] = 0
    log Withdrawn(account=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)
    return amount


@external
def set_attestor(attestor: address, trusted: bool):
    """
    @notice Trust (or stop trusting) an attestor for every dataset, beside each dataset's
            evaluator; the hook for coordinator enclave keys of the compute market.
    @param attestor The signer.
    @param trusted Whether its attestations can make a checkpoint best.
    """
    assert msg.sender == self.owner, "registry: only owner"
    assert attestor != empty(address), "registry: zero address"
    self.is_trusted_attestor[attestor] = trusted
    log AttestorSet(attestor=attestor, trusted=trusted)


@external
def transfer_ownership(new_owner: address):
    """
    @notice Hand the attestor set to another account (a multisig, the compute market).
    @param new_owner The new owner.
    """
    assert msg.sender == self.owner, "registry: only owner"
    assert new_owner != empty(address), "registry: zero address"
    log OwnershipTransferred(previous_owner=self.owner, new_owner=new_owner)
    self.owner = new_owner


@external
@view
def get_model(model_id: uint256) -> Model:
    """
    @notice A model's owner, dataset, terms and best checkpoint.
    @param model_id The model.
    @return The Model record.
    """
    m: ModelRecord = self._models[model_id]
    assert m.dataset_id != 0, "registry: unknown model"
    return Model(
        owner=m.owner,
        dataset_id=m.dataset_id,
        share_token=self.share_token_of[m.dataset_id],
        name=m.name,
        program_digest=m.program_digest,
        price_per_prediction=m.price_per_prediction,
        royalty_bps=m.royalty_bps,
        checkpoint_count=m.checkpoint_count,
        best_checkpoint=m.best_checkpoint,
        best_metric_bps=m.best_metric_bps,
    )


@external
@view
def get_checkpoint(model_id: uint256, checkpoint: uint256) -> Checkpoint:
    """
    @notice One checkpoint of a model; `attestor` is zero when self-reported.
    @param model_id The model.
    @param checkpoint Its number (1..checkpoint_count).
    @return The Checkpoint record.
    """
    count: uint256 = self._models[model_id].checkpoint_count
    assert checkpoint != 0 and checkpoint <= count, "registry: unknown checkpoint"
    word: uint256 = self._cp_word[model_id][checkpoint]
    return Checkpoint(
        cid=self._cp_cid[model_id][checkpoint],
        file_sha256=self._cp_sha[model_id][checkpoint],
        entries=(word >> ENTRIES_SHIFT) & TIME_MASK,
        metric_bps=(word >> METRIC_SHIFT) & W16,
        attestor=convert(word & ADDR_MASK, address),
        submitted_at=word >> SUBMITTED_SHIFT,
    )


@external
@view
def get_channel(channel_id: uint256) -> Channel:
    """
    @notice A channel, unpacked; `reclaim_at` is 0 until `start_reclaim`.
    @param channel_id The channel.
    @return The Channel record (status 1 open, 2 reclaiming, 3 closed, 4 reclaimed).
    """
    head: uint256 = self._ch_head[channel_id]
    assert head != 0, "registry: unknown channel"
    funds: uint256 = self._ch_funds[channel_id]
    return Channel(
        payer=convert(head & ADDR_MASK, address),
        model_id=funds >> MODEL_SHIFT,
        deposit=funds & W96,
        expiry=(head >> EXPIRY_SHIFT) & TIME_MASK,
        reclaim_at=(head >> RECLAIM_SHIFT) & TIME_MASK,
        status=head >> STATUS_SHIFT,
    )


@external
@view
def domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator (name, version, this chain's id, this contract).
    @return The separator.
    """
    return self._domain_separator()


@external
@view
def attestation_digest(
    model_id: uint256,
    file_sha256: bytes32,
    dataset_id: uint256,
    entries: uint256,
    metric_bps: uint256,
) -> bytes32:
    """
    @notice The EIP-712 digest an attestor signs for a checkpoint.
    @param model_id The model.
    @param file_sha256 The checkpoint's SHA-256.
    @param dataset_id The dataset.
    @param entries The snapshot (entry count) trained on.
    @param metric_bps The attested metric.
    @return The digest.
    """
    return self._attestation_digest(model_id, file_sha256, dataset_id, entries, metric_bps)


@external
@view
def voucher_digest(channel_id: uint256, amount: uint256) -> bytes32:
    """
    @notice The EIP-712 digest a payer signs for a cumulative voucher.
    @param channel_id The channel.
    @param amount Cumulative wei.
    @return The digest.
    """
    return self._voucher_digest(channel_id, amount)


@internal
def _pay_dataset(
    dataset_id: uint256, model_id: uint256, token: address, amount: uint256, source: uint256
):
    # a refusing token (no holders, cap) must not block training or closing: hold the value
    if amount == 0:
        return
    ok: bool = raw_call(
        token, method_id("distribute()"), value=amount, revert_on_failure=False
    )
    if not ok:
        self.held_of[dataset_id] += amount
    log DividendPaid(
        dataset_id=dataset_id, model_id=model_id, source=source, amount=amount, held=not ok
    )


@internal
def _credit(account: address, amount: uint256):
    if amount == 0:
        return
    self.owed_of[account] += amount
    log Credited(account=account, amount=amount)


@internal
@view
def _domain_separator() -> bytes32:
    # computed per call (not cached) so a fork with another chain id gets its own domain
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@internal
@view
def _attestation_digest(
    model_id: uint256,
    file_sha256: bytes32,
    dataset_id: uint256,
    entries: uint256,
    metric_bps: uint256,
) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(
            ATTESTATION_TYPEHASH, self, model_id, file_sha256, dataset_id, entries, metric_bps
        )
    )
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@internal
@view
def _voucher_digest(channel_id: uint256, amount: uint256) -> bytes32:
    struct_hash: bytes32 = keccak256(abi_encode(VOUCHER_TYPEHASH, channel_id, amount))
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@internal
@view
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    # empty(address) for anything but a canonical (low-s, v 27/28) signature
    r: uint256 = convert(slice(signature, 0, 32), uint256)
    s: uint256 = convert(slice(signature, 32, 32), uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    if v < 27:
        v += 27
    if (v != 27 and v != 28) or s > SECP256K1N_HALF or r == 0 or s == 0:
        return empty(address)
    return ecrecover(digest, v, r, s)
