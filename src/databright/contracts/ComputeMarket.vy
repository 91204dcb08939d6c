# SPDX-License-Identifier: Apache-2.0
# pragma version 0.4.3
# pragma evm-version cancun
"""
@title ComputeMarket
@notice The trusted compute market: staked workers with a minimum fee, coordinators known by
        their enclave key, and jobs that escrow a dataset's training fee plus a compute budget
        until the job's coordinator signs receipts. A receipt credits the workers' fees (pull),
        slashes the stake of every worker it names as a liar (the whole stake, credited to the
        job's consumer, the worker banned) and, when final, pays the training fee to the
        dataset's ShareToken and refunds the unspent budget. A prediction job escrows a
        registered model's price for every prediction asked for instead of a training fee; its
        final receipt names how many were delivered and pays, in the same transaction, the
        workers, the model's royalty to the dataset's ShareToken, the rest to the model's
        owner, and refunds the undelivered predictions with the unspent budget.
@dev Receipts are EIP-712 typed data under the domain
     (name "DataBright ComputeMarket", version "1", chain id, this contract):
     Receipt(uint256 jobId,uint256 part,address[] workers,uint256[] fees,address[] liars,
             bytes32 receiptHash,bool final);
     a prediction job's final part is a
     PredictionReceipt(uint256 jobId,uint256 part,address[] workers,uint256[] fees,
             address[] liars,bytes32 receiptHash,uint256 delivered).
     A job settles in parts 0, 1, 2, ... in order, each once, and only before its deadline;
     after the deadline only its consumer's `cancel` can close it. A worker serves one
     coordinator per registration and only that coordinator's receipts may name it, so a
     coordinator anyone registers cannot touch the stakes of workers that never chose it. A
     leaving worker's stake is locked until its cool-down has passed and every job of its
     coordinator created before it left is past its deadline, so no receipt that may name it
     can still be settled when it withdraws.
     Hot fields are packed by hand:
     - `_w_head[a]`  = stake (128) | status (8) | release_at (40) | last job id (64).
     - `_w_terms[a]` = coordinator (160) | min fee (96).
     - `_j_head[j]`  = consumer (160) | deadline (40) | next part (40) | status (8).
     - `_j_route[j]` = coordinator (160) | dataset id (96).
     - `_j_funds[j]` = budget (128) | spent (128).
     - `_p_terms[j]` = model owner (160) | royalty bps (16) | count (40) | delivered (40).
     - `_p_price[j]` = price per prediction (128) | model id (128).
     No account administers funds: there is no owner.
"""

interface IDataTerms:
    def model_terms(dataset_id: uint256) -> (address, address, uint256, uint256, uint256): view

interface IShareToken:
    def distribute(): payable

# the ModelRegistry's Model record, field for field (its `get_model` returns it)
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

interface IModels:
    def model_count() -> uint256: view
    def get_model(model_id: uint256) -> Model: view

MAX_SETTLE: constant(uint256) = 64
MAX_COOLDOWN: constant(uint256) = 365 * 86400
MAX_JOB_DURATION: constant(uint256) = 90 * 86400
BPS: constant(uint256) = 10_000
MAX_PREDICTIONS: constant(uint256) = 2**40 - 1
# secp256k1 order / 2: a higher s is the malleable twin of a valid signature
SECP256K1N_HALF: constant(uint256) = (
    57896044618658097711785492504343953926418782139537452191302581570759080747168
)

KIND_SOFTWARE: constant(uint256) = 1
KIND_SGX_DCAP: constant(uint256) = 2

W_NONE: constant(uint256) = 0
W_ACTIVE: constant(uint256) = 1
W_LEAVING: constant(uint256) = 2
W_BANNED: constant(uint256) = 3

J_OPEN: constant(uint256) = 1
J_FINAL: constant(uint256) = 2
J_CANCELLED: constant(uint256) = 3

ADDR_MASK: constant(uint256) = 2**160 - 1
W128: constant(uint256) = 2**128 - 1
W96: constant(uint256) = 2**96 - 1
W64: constant(uint256) = 2**64 - 1
W40: constant(uint256) = 2**40 - 1
W8: constant(uint256) = 255
W_STATUS_SHIFT: constant(uint256) = 128
W_RELEASE_SHIFT: constant(uint256) = 136
W_LAST_JOB_SHIFT: constant(uint256) = 176
W_FEE_SHIFT: constant(uint256) = 160
J_DEADLINE_SHIFT: constant(uint256) = 160
J_PART_SHIFT: constant(uint256) = 200
J_STATUS_SHIFT: constant(uint256) = 240
J_DATASET_SHIFT: constant(uint256) = 160
J_SPENT_SHIFT: constant(uint256) = 128
P_BPS_SHIFT: constant(uint256) = 160
P_COUNT_SHIFT: constant(uint256) = 176
P_DELIVERED_SHIFT: constant(uint256) = 216
P_MODEL_SHIFT: constant(uint256) = 128
W16: constant(uint256) = 2**16 - 1

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NAME_HASH: constant(bytes32) = keccak256("DataBright ComputeMarket")
VERSION_HASH: constant(bytes32) = keccak256("1")
RECEIPT_TYPEHASH: constant(bytes32) = keccak256(
    "Receipt(uint256 jobId,uint256 part,address[] workers,uint256[] fees,address[] liars,"
    "bytes32 receiptHash,bool final)"
)
PREDICTION_RECEIPT_TYPEHASH: constant(bytes32) = keccak256(
    "PredictionReceipt(uint256 jobId,uint256 part,address[] workers,uint256[] fees,"
    "address[] liars,bytes32 receiptHash,uint256 delivered)"
)


struct Worker:
    stake: uint256
    min_fee: uint256
    determinism_class: bytes32
    coordinator: address
    status: uint256
    release_at: uint256
    last_job: uint256

struct Coordinator:
    operator: address
    kind: uint256
    evidence_cid: String[100]
    registered_at: uint256

struct Job:
    consumer: address
    coordinator: address
    dataset_id: uint256
    share_token: address
    program_digest: bytes32
    spec_cid: String[100]
    training_fee: uint256
    budget: uint256
    spent: uint256
    deadline: uint256
    next_part: uint256
    status: uint256

struct PredictionJob:
    model_id: uint256
    owner: address
    count: uint256
    price_per_prediction: uint256
    royalty_bps: uint256
    escrow: uint256
    delivered: uint256


data_terms: public(immutable(address))
model_registry: public(immutable(address))
min_stake: public(immutable(uint256))
cooldown: public(immutable(uint256))
job_count: public(uint256)
# per coordinator, the latest deadline of its jobs: a leaving worker waits at least until then
latest_deadline_of: public(HashMap[address, uint256])
owed_of: public(HashMap[address, uint256])
held_of: public(HashMap[uint256, uint256])
share_token_of: public(HashMap[uint256, address])

_w_head: HashMap[address, uint256]
_w_class: HashMap[address, bytes32]
_w_terms: HashMap[address, uint256]
_coordinators: HashMap[address, Coordinator]
_j_head: HashMap[uint256, uint256]
_j_route: HashMap[uint256, uint256]
_j_funds: HashMap[uint256, uint256]
_j_fee: HashMap[uint256, uint256]
_j_program: HashMap[uint256, bytes32]
_j_spec: HashMap[uint256, String[100]]
_p_terms: HashMap[uint256, uint256]
_p_price: HashMap[uint256, uint256]


event WorkerRegistered:
    worker: indexed(address)
    coordinator: indexed(address)
    stake: uint256
    min_fee: uint256
    determinism_class: bytes32

event WorkerUnregistered:
    worker: indexed(address)
    release_at: uint256
    last_job: uint256

event StakeWithdrawn:
    worker: indexed(address)
    amount: uint256

event CoordinatorRegistered:
    enclave: indexed(address)
    operator: indexed(address)
    kind: uint256
    evidence_cid: String[100]

event JobCreated:
    job_id: indexed(uint256)
    dataset_id: indexed(uint256)
    consumer: indexed(address)
    coordinator: address
    program_digest: bytes32
    spec_cid: String[100]
    training_fee: uint256
    budget: uint256
    deadline: uint256

event WorkerPaid:
    job_id: indexed(uint256)
    worker: indexed(address)
    part: uint256
    fee: uint256

event WorkerSlashed:
    job_id: indexed(uint256)
    worker: indexed(address)
    part: uint256
    amount: uint256

event PartSettled:
    job_id: indexed(uint256)
    part: uint256
    paid: uint256
    slashed: uint256
    receipt_hash: bytes32
    final: bool

event PredictionJobCreated:
    job_id: indexed(uint256)
    model_id: indexed(uint256)
    owner: indexed(address)
    count: uint256
    price_per_prediction: uint256
    royalty_bps: uint256
    escrow: uint256

event PredictionSettled:
    job_id: indexed(uint256)
    model_id: indexed(uint256)
    owner: indexed(address)
    delivered: uint256
    owner_amount: uint256
    royalty: uint256
    refund: uint256

event JobFinalized:
    job_id: indexed(uint256)
    spent: uint256
    refund: uint256

event JobCancelled:
    job_id: indexed(uint256)
    refund: uint256

event DividendPaid:
    dataset_id: indexed(uint256)
    job_id: indexed(uint256)
    amount: uint256
    held: bool

event HeldReleased:
    dataset_id: indexed(uint256)
    amount: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256


@deploy
def __init__(
    terms: address, models: address, stake_minimum: uint256, cooldown_seconds: uint256
):
    """
    @notice Create the market over a source of dataset terms (the DataMarket) and a model
            registry (prediction jobs read a model's owner, dataset, price and royalty there).
    @param terms Contract answering `model_terms(dataset_id)`.
    @param models Contract answering `model_count()` and `get_model(model_id)` (the
           ModelRegistry).
    @param stake_minimum The least stake (wei) a worker must lock to register (at least 1).
    @param cooldown_seconds Seconds between `unregister` and `withdraw_stake` (1 s to 1 year).
    """
    assert terms.is_contract, "compute: terms not a contract"
    assert models.is_contract, "compute: registry not a contract"
    assert stake_minimum > 0 and stake_minimum <= W128, "compute: bad min stake"
    assert cooldown_seconds > 0 and cooldown_seconds <= MAX_COOLDOWN, "compute: bad cooldown"
    data_terms = terms
    model_registry = models
    min_stake = stake_minimum
    cooldown = cooldown_seconds


@external
@payable
def register_worker(min_fee: uint256, determinism_class: bytes32, coordinator: address):
    """
    @notice Register the caller as a worker of `coordinator`, locking `msg.value` as its stake.
    @dev Only that coordinator's receipts can credit or slash the worker until it withdraws
         its stake: a worker chooses whom it trusts by verifying the coordinator's evidence.
    @param min_fee The least fee (wei) a receipt may credit the worker per entry (per task).
    @param determinism_class Digest of the worker's determinism class (torch build, CPU
           capability or GPU model, threads, dtype): replicas of one class agree bit for bit.
    @param coordinator The enclave address of the registered coordinator it serves.
    """
    head: uint256 = self._w_head[msg.sender]
    status: uint256 = (head >> W_STATUS_SHIFT) & W8
    assert status != W_BANNED, "compute: worker banned"
    assert status == W_NONE, "compute: already registered"
    assert msg.value >= min_stake, "compute: stake too low"
    assert msg.value <= W128, "compute: stake too large"
    assert min_fee <= W96, "compute: min fee too large"
    assert determinism_class != empty(bytes32), "compute: empty determinism class"
    known: bool = self._coordinators[coordinator].operator != empty(address)
    assert known, "compute: unknown coordinator"
    self._w_head[msg.sender] = msg.value | (W_ACTIVE << W_STATUS_SHIFT)
    self._w_terms[msg.sender] = convert(coordinator, uint256) | (min_fee << W_FEE_SHIFT)
    self._w_class[msg.sender] = determinism_class
    log WorkerRegistered(
        worker=msg.sender,
        coordinator=coordinator,
        stake=msg.value,
        min_fee=min_fee,
        determinism_class=determinism_class,
    )


@external
def unregister() -> uint256:
    """
    @notice Leave the pool: the stake unlocks after the cool-down and after every job of the
            worker's coordinator created so far is past its deadline (jobs created later can
            no longer name the worker).
    @return The time from which `withdraw_stake` is allowed.
    """
    head: uint256 = self._w_head[msg.sender]
    assert (head >> W_STATUS_SHIFT) & W8 == W_ACTIVE, "compute: not active"
    release_at: uint256 = max(
        block.timestamp + cooldown,
        self.latest_deadline_of[convert(self._w_terms[msg.sender] & ADDR_MASK, address)],
    )
    last_job: uint256 = self.job_count
    self._w_head[msg.sender] = (
        (head & W128)
        | (W_LEAVING << W_STATUS_SHIFT)
        | (release_at << W_RELEASE_SHIFT)
        | (last_job << W_LAST_JOB_SHIFT)
    )
    log WorkerUnregistered(worker=msg.sender, release_at=release_at, last_job=last_job)
    return release_at


@external
@nonreentrant
def withdraw_stake() -> uint256:
    """
    @notice A leaving worker takes its stake back once it is released.
    @dev The worker's record is cleared: it may register again later.
    @return The stake paid in wei.
    """
    head: uint256 = self._w_head[msg.sender]
    assert (head >> W_STATUS_SHIFT) & W8 == W_LEAVING, "compute: not leaving"
    assert block.timestamp >= (head >> W_RELEASE_SHIFT) & W40, "compute: stake locked"
    amount: uint256 = head & W128
    self._w_head[msg.sender] = 0
    self._w_terms[msg.sender] = 0
    log StakeWithdrawn(worker=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)
    return amount


@external
def register_coordinator(enclave: address, evidence_cid: String[100], kind: uint256):
    """
    @notice Register a coordinator's enclave key with the CID of its attestation evidence;
            the caller is its operator.
    @dev The contract does not judge the evidence: clients verify it (its REPORTDATA binds the
         enclave key) under their own policy before naming the coordinator in a job.
    @param enclave The address of the enclave's secp256k1 key, which signs receipts.
    @param evidence_cid CID of the attestation evidence (quote or software evidence).
    @param kind 1 software, 2 sgx-dcap.
    """
    assert enclave != empty(address), "compute: zero address"
    assert len(evidence_cid) > 0, "compute: empty evidence"
    assert kind == KIND_SOFTWARE or kind == KIND_SGX_DCAP, "compute: bad kind"
    assert self._coordinators[enclave].operator == empty(address), "compute: coordinator exists"
    self._coordinators[enclave] = Coordinator(
        operator=msg.sender, kind=kind, evidence_cid=evidence_cid, registered_at=block.timestamp
    )
    log CoordinatorRegistered(
        enclave=enclave, operator=msg.sender, kind=kind, evidence_cid=evidence_cid
    )


@external
@payable
@nonreentrant
def create_job(
    dataset_id: uint256,
    coordinator: address,
    program_digest: bytes32,
    spec_cid: String[100],
    deadline: uint256,
) -> uint256:
    """
    @notice Escrow the dataset's training fee plus a compute budget (the rest of `msg.value`)
            for a job run by `coordinator`.
    @param dataset_id The dataset trained on.
    @param coordinator The enclave address of a registered coordinator.
    @param program_digest Digest of the training program and its configuration.
    @param spec_cid CID of the job's specification.
    @param deadline Time after which only the consumer's `cancel` can close the job
           (in the future, at most 90 days away).
    @return The new job id.
    """
    token: address = empty(address)
    evaluator: address = empty(address)
    fee: uint256 = 0
    min_royalty: uint256 = 0
    entries: uint256 = 0
    token, evaluator, fee, min_royalty, entries = staticcall IDataTerms(data_terms).model_terms(
        dataset_id
    )
    assert token != empty(address) and dataset_id <= W96, "compute: unknown dataset"
    assert msg.value >= fee, "compute: value below training fee"
    return self._open_job(
        dataset_id, token, coordinator, program_digest, spec_cid, deadline, fee, msg.value - fee
    )


@external
@payable
@nonreentrant
def create_prediction_job(
    model_id: uint256,
    count: uint256,
    coordinator: address,
    program_digest: bytes32,
    spec_cid: String[100],
    deadline: uint256,
) -> uint256:
    """
    @notice Escrow `count` predictions of a registered model at its price plus a compute
            budget (the rest of `msg.value`) for a batch-prediction job run by `coordinator`.
    @dev The model's owner, dataset, price and royalty are read from the ModelRegistry now:
         the consumer cannot choose them, and the terms of the job do not move if the
         registry's record later changes. The job has no training fee.
    @param model_id The registered model whose predictions are bought.
    @param count The number of predictions asked for (1 to 2**40 - 1).
    @param coordinator The enclave address of a registered coordinator.
    @param program_digest Digest of the prediction program (family, config, checkpoint).
    @param spec_cid CID of the job's specification.
    @param deadline Time after which only the consumer's `cancel` can close the job.
    @return The new job id.
    """
    count_known: uint256 = staticcall IModels(model_registry).model_count()
    assert model_id != 0 and model_id <= count_known, "compute: unknown model"
    m: Model = staticcall IModels(model_registry).get_model(model_id)
    assert count != 0 and count <= MAX_PREDICTIONS, "compute: bad count"
    assert m.dataset_id <= W96 and m.share_token != empty(address), "compute: unknown dataset"
    assert m.price_per_prediction <= W128, "compute: price too large"
    assert m.royalty_bps <= BPS, "compute: bad royalty"
    escrow: uint256 = m.price_per_prediction * count
    assert msg.value >= escrow, "compute: value below prediction price"
    job_id: uint256 = self._open_job(
        m.dataset_id,
        m.share_token,
        coordinator,
        program_digest,
        spec_cid,
        deadline,
        0,
        msg.value - escrow,
    )
    self._p_terms[job_id] = (
        convert(m.owner, uint256) | (m.royalty_bps << P_BPS_SHIFT) | (count << P_COUNT_SHIFT)
    )
    self._p_price[job_id] = m.price_per_prediction | (model_id << P_MODEL_SHIFT)
    log PredictionJobCreated(
        job_id=job_id,
        model_id=model_id,
        owner=m.owner,
        count=count,
        price_per_prediction=m.price_per_prediction,
        royalty_bps=m.royalty_bps,
        escrow=escrow,
    )
    return job_id


@external
@nonreentrant
def settle(
    job_id: uint256,
    part: uint256,
    workers: DynArray[address, MAX_SETTLE],
    fees: DynArray[uint256, MAX_SETTLE],
    liars: DynArray[address, MAX_SETTLE],
    receipt_hash: bytes32,
    is_final: bool,
    signature: Bytes[65],
):
    """
    @notice Apply one part of a job's receipt, signed by the job's coordinator (anyone may
            deliver it).
    @dev Liars are slashed first (whole stake to the consumer, banned), then each worker is
         credited its fee, so a worker named as a liar can never be paid in the same part.
         Both lists are sorted by address, strictly (no duplicates, no zero address).
         On `is_final` the training fee goes to the dataset's ShareToken (held if refused)
         and the unspent budget is credited to the consumer. A prediction job's final part
         goes through `settle_prediction` (it must say how many predictions were delivered).
    @param job_id The job.
    @param part The part number: 0 for the first receipt, then 1, 2, ...
    @param workers Workers credited in this part (at most 64), ascending.
    @param fees Each worker's fee in wei (at least its registered min_fee).
    @param liars Workers whose results the coordinator proved wrong (at most 64), ascending.
    @param receipt_hash Hash of the off-chain receipt (TMR verdict chain, model digests, ...).
    @param is_final Whether this part closes the job.
    @param signature The coordinator enclave key's 65-byte EIP-712 Receipt signature.
    """
    head: uint256 = self._open_part(job_id, part, len(workers), len(fees), len(signature))
    assert not is_final or self._p_terms[job_id] == 0, "compute: prediction job needs delivered"
    digest: bytes32 = self._receipt_digest(
        job_id, part, workers, fees, liars, receipt_hash, is_final
    )
    self._apply_part(job_id, head, part, workers, fees, liars, receipt_hash, is_final, digest,
                     signature)
    if is_final:
        self._pay_dataset(self._j_route[job_id] >> J_DATASET_SHIFT, job_id, self._j_fee[job_id])


@external
@nonreentrant
def settle_prediction(
    job_id: uint256,
    part: uint256,
    workers: DynArray[address, MAX_SETTLE],
    fees: DynArray[uint256, MAX_SETTLE],
    liars: DynArray[address, MAX_SETTLE],
    receipt_hash: bytes32,
    delivered: uint256,
    signature: Bytes[65],
):
    """
    @notice The final part of a prediction job's receipt, with the number of predictions
            delivered, signed by the job's coordinator (anyone may deliver it).
    @dev Workers and liars as in `settle`. Then, of `price * delivered`: the royalty
         ceil(price * delivered * royalty_bps / 10,000) goes to the dataset's ShareToken (held
         if refused; rounding favours the shareholders, as a channel's close does) and the
         rest is credited to the model's owner; `price * (count - delivered)` and the unspent
         budget are credited to the consumer.
    @param job_id The prediction job.
    @param part The part number (the job's next part; this one closes it).
    @param workers Workers credited in this part (at most 64), ascending.
    @param fees Each worker's fee in wei (at least its registered min_fee).
    @param liars Workers whose results the coordinator proved wrong, ascending.
    @param receipt_hash Hash of the off-chain receipt (verdicts, checkpoint, predictions CID).
    @param delivered Predictions delivered (at most the job's count).
    @param signature The coordinator enclave key's 65-byte EIP-712 PredictionReceipt signature.
    """
    head: uint256 = self._open_part(job_id, part, len(workers), len(fees), len(signature))
    terms: uint256 = self._p_terms[job_id]
    assert terms != 0, "compute: not a prediction job"
    count: uint256 = (terms >> P_COUNT_SHIFT) & W40
    assert delivered <= count, "compute: delivered above count"
    digest: bytes32 = self._prediction_digest(
        job_id, part, workers, fees, liars, receipt_hash, delivered
    )
    self._apply_part(job_id, head, part, workers, fees, liars, receipt_hash, True, digest,
                     signature)
    price_word: uint256 = self._p_price[job_id]
    price: uint256 = price_word & W128
    gross: uint256 = price * delivered
    royalty: uint256 = (gross * ((terms >> P_BPS_SHIFT) & W16) + BPS - 1) // BPS
    owner: address = convert(terms & ADDR_MASK, address)
    refund: uint256 = price * (count - delivered)
    self._p_terms[job_id] = terms | (delivered << P_DELIVERED_SHIFT)
    log PredictionSettled(
        job_id=job_id,
        model_id=price_word >> P_MODEL_SHIFT,
        owner=owner,
        delivered=delivered,
        owner_amount=gross - royalty,
        royalty=royalty,
        refund=refund,
    )
    if gross != royalty:
        self.owed_of[owner] += gross - royalty
    if refund != 0:
        self.owed_of[convert(head & ADDR_MASK, address)] += refund
    self._pay_dataset(self._j_route[job_id] >> J_DATASET_SHIFT, job_id, royalty)


@external
def cancel(job_id: uint256) -> uint256:
    """
    @notice The consumer closes a job its coordinator did not finish by the deadline.
    @dev Credits the training fee (or a prediction job's escrowed price) and the budget not
         already credited to workers.
    @param job_id The job.
    @return The amount credited to the consumer (withdraw it with `withdraw`).
    """
    head: uint256 = self._j_head[job_id]
    assert head != 0, "compute: unknown job"
    consumer: address = convert(head & ADDR_MASK, address)
    assert msg.sender == consumer, "compute: only consumer"
    assert (head >> J_STATUS_SHIFT) & W8 == J_OPEN, "compute: job closed"
    assert block.timestamp >= (head >> J_DEADLINE_SHIFT) & W40, "compute: deadline not passed"
    funds: uint256 = self._j_funds[job_id]
    refund: uint256 = (
        self._j_fee[job_id] + self._prediction_escrow(job_id) + (funds & W128)
        - (funds >> J_SPENT_SHIFT)
    )
    self._j_head[job_id] = (head & ~(W8 << J_STATUS_SHIFT)) | (J_CANCELLED << J_STATUS_SHIFT)
    log JobCancelled(job_id=job_id, refund=refund)
    if refund != 0:
        self.owed_of[consumer] += refund
    return refund


@external
@nonreentrant
def withdraw() -> uint256:
    """
    @notice Send the caller everything credited to it (fees, refunds, slashed stakes).
    @return The amount paid in wei.
    """
    amount: uint256 = self.owed_of[msg.sender]
    assert amount > 0, "compute: nothing to withdraw"
    self.owed_of[msg.sender] = 0
    log Withdrawn(account=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)
    return amount


@external
@nonreentrant
def release_held(dataset_id: uint256) -> uint256:
    """
    @notice Pay a dataset's held training fees to its ShareToken (anyone may call).
    @dev Reverts with the token's own reason if it still refuses.
    @param dataset_id The dataset.
    @return The amount released in wei.
    """
    amount: uint256 = self.held_of[dataset_id]
    assert amount > 0, "compute: nothing held"
    self.held_of[dataset_id] = 0
    log HeldReleased(dataset_id=dataset_id, amount=amount)
    extcall IShareToken(self.share_token_of[dataset_id]).distribute(value=amount)
    return amount


@external
@view
def get_worker(worker: address) -> Worker:
    """
    @notice A worker's stake, minimum fee, class, coordinator and status (0 none, 1 active,
            2 leaving, 3 banned); `release_at` and `last_job` are set by `unregister`.
    @param worker The worker's account.
    @return The Worker record (all zero for an unknown account).
    """
    head: uint256 = self._w_head[worker]
    terms: uint256 = self._w_terms[worker]
    return Worker(
        stake=head & W128,
        min_fee=terms >> W_FEE_SHIFT,
        determinism_class=self._w_class[worker],
        coordinator=convert(terms & ADDR_MASK, address),
        status=(head >> W_STATUS_SHIFT) & W8,
        release_at=(head >> W_RELEASE_SHIFT) & W40,
        last_job=head >> W_LAST_JOB_SHIFT,
    )


@external
@view
def get_coordinator(enclave: address) -> Coordinator:
    """
    @notice A registered coordinator: operator, kind (1 software, 2 sgx-dcap), evidence CID.
    @param enclave The enclave address.
    @return The Coordinator record.
    """
    c: Coordinator = self._coordinators[enclave]
    assert c.operator != empty(address), "compute: unknown coordinator"
    return c


@external
@view
def get_job(job_id: uint256) -> Job:
    """
    @notice A job, unpacked; status 1 open, 2 final, 3 cancelled.
    @param job_id The job.
    @return The Job record.
    """
    head: uint256 = self._j_head[job_id]
    assert head != 0, "compute: unknown job"
    route: uint256 = self._j_route[job_id]
    funds: uint256 = self._j_funds[job_id]
    dataset_id: uint256 = route >> J_DATASET_SHIFT
    return Job(
        consumer=convert(head & ADDR_MASK, address),
        coordinator=convert(route & ADDR_MASK, address),
        dataset_id=dataset_id,
        share_token=self.share_token_of[dataset_id],
        program_digest=self._j_program[job_id],
        spec_cid=self._j_spec[job_id],
        training_fee=self._j_fee[job_id],
        budget=funds & W128,
        spent=funds >> J_SPENT_SHIFT,
        deadline=(head >> J_DEADLINE_SHIFT) & W40,
        next_part=(head >> J_PART_SHIFT) & W40,
        status=(head >> J_STATUS_SHIFT) & W8,
    )


@external
@view
def get_prediction_job(job_id: uint256) -> PredictionJob:
    """
    @notice A prediction job's terms as read from the registry at creation, its escrowed
            price (`price_per_prediction * count`) and, once final, the predictions delivered.
    @param job_id The job.
    @return The PredictionJob record.
    """
    terms: uint256 = self._p_terms[job_id]
    assert terms != 0, "compute: not a prediction job"
    price_word: uint256 = self._p_price[job_id]
    count: uint256 = (terms >> P_COUNT_SHIFT) & W40
    return PredictionJob(
        model_id=price_word >> P_MODEL_SHIFT,
        owner=convert(terms & ADDR_MASK, address),
        count=count,
        price_per_prediction=price_word & W128,
        royalty_bps=(terms >> P_BPS_SHIFT) & W16,
        escrow=(price_word & W128) * count,
        delivered=terms >> P_DELIVERED_SHIFT,
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
def receipt_digest(
    job_id: uint256,
    part: uint256,
    workers: DynArray[address, MAX_SETTLE],
    fees: DynArray[uint256, MAX_SETTLE],
    liars: DynArray[address, MAX_SETTLE],
    receipt_hash: bytes32,
    is_final: bool,
) -> bytes32:
    """
    @notice The EIP-712 digest a coordinator signs for one part of a job's receipt.
    @param job_id The job.
    @param part The part number.
    @param workers Workers credited.
    @param fees Their fees.
    @param liars Workers slashed.
    @param receipt_hash Hash of the off-chain receipt.
    @param is_final Whether the part closes the job.
    @return The digest.
    """
    return self._receipt_digest(job_id, part, workers, fees, liars, receipt_hash, is_final)


@external
@view
def prediction_receipt_digest(
    job_id: uint256,
    part: uint256,
    workers: DynArray[address, MAX_SETTLE],
    fees: DynArray[uint256, MAX_SETTLE],
    liars: DynArray[address, MAX_SETTLE],
    receipt_hash: bytes32,
    delivered: uint256,
) -> bytes32:
    """
    @notice The EIP-712 digest a coordinator signs for a prediction job's final part.
    @param job_id The job.
    @param part The part number.
    @param workers Workers credited.
    @param fees Their fees.
    @param liars Workers slashed.
    @param receipt_hash Hash of the off-chain receipt.
    @param delivered Predictions delivered.
    @return The digest.
    """
    return self._prediction_digest(job_id, part, workers, fees, liars, receipt_hash, delivered)


@internal
@pure
def _may_name(
    terms: uint256, head: uint256, status: uint256, job_id: uint256, coordinator: address
) -> bool:
    # a worker of this coordinator: active, or leaving and the job was created before it left
    # (its stake is then still locked)
    if status != W_ACTIVE and (status != W_LEAVING or job_id > head >> W_LAST_JOB_SHIFT):
        return False
    return convert(terms & ADDR_MASK, address) == coordinator


@internal
def _open_job(
    dataset_id: uint256,
    token: address,
    coordinator: address,
    program_digest: bytes32,
    spec_cid: String[100],
    deadline: uint256,
    fee: uint256,
    budget: uint256,
) -> uint256:
    # what a training and a prediction job share: checks, the packed records, JobCreated
    known: bool = self._coordinators[coordinator].operator != empty(address)
    assert known, "compute: unknown coordinator"
    assert program_digest != empty(bytes32), "compute: empty program digest"
    assert len(spec_cid) > 0, "compute: empty spec"
    horizon: uint256 = block.timestamp + MAX_JOB_DURATION
    assert deadline > block.timestamp and deadline <= horizon, "compute: bad deadline"
    assert budget <= W128, "compute: budget too large"
    job_id: uint256 = self.job_count + 1
    self.job_count = job_id
    if deadline > self.latest_deadline_of[coordinator]:
        self.latest_deadline_of[coordinator] = deadline
    self._j_head[job_id] = (
        convert(msg.sender, uint256)
        | (deadline << J_DEADLINE_SHIFT)
        | (J_OPEN << J_STATUS_SHIFT)
    )
    self._j_route[job_id] = convert(coordinator, uint256) | (dataset_id << J_DATASET_SHIFT)
    if budget != 0:
        self._j_funds[job_id] = budget
    if fee != 0:
        self._j_fee[job_id] = fee
    self._j_program[job_id] = program_digest
    self._j_spec[job_id] = spec_cid
    if self.share_token_of[dataset_id] != token:
        self.share_token_of[dataset_id] = token
    log JobCreated(
        job_id=job_id,
        dataset_id=dataset_id,
        consumer=msg.sender,
        coordinator=coordinator,
        program_digest=program_digest,
        spec_cid=spec_cid,
        training_fee=fee,
        budget=budget,
        deadline=deadline,
    )
    return job_id


@internal
@view
def _open_part(
    job_id: uint256, part: uint256, n_workers: uint256, n_fees: uint256, sig_length: uint256
) -> uint256:
    # the checks every receipt part passes before its signature is recovered; the job's head
    head: uint256 = self._j_head[job_id]
    assert head != 0, "compute: unknown job"
    assert (head >> J_STATUS_SHIFT) & W8 == J_OPEN, "compute: job closed"
    assert block.timestamp < (head >> J_DEADLINE_SHIFT) & W40, "compute: job expired"
    assert part == (head >> J_PART_SHIFT) & W40, "compute: wrong part"
    assert n_workers == n_fees, "compute: length mismatch"
    assert sig_length == 65, "compute: bad signature length"
    return head


@internal
def _apply_part(
    job_id: uint256,
    head: uint256,
    part: uint256,
    workers: DynArray[address, MAX_SETTLE],
    fees: DynArray[uint256, MAX_SETTLE],
    liars: DynArray[address, MAX_SETTLE],
    receipt_hash: bytes32,
    is_final: bool,
    digest: bytes32,
    signature: Bytes[65],
):
    # one signed part of any job's receipt: slash the liars, credit the workers, advance the
    # part, and when final credit the consumer the unspent budget (with the slashed stakes)
    route: uint256 = self._j_route[job_id]
    coordinator: address = convert(route & ADDR_MASK, address)
    assert self._recover(digest, signature) == coordinator, "compute: bad receipt"
    consumer: address = convert(head & ADDR_MASK, address)

    slashed: uint256 = 0
    previous: uint256 = 0
    for liar: address in liars:
        key: uint256 = convert(liar, uint256)
        assert key > previous, "compute: liars not sorted"
        previous = key
        w: uint256 = self._w_head[liar]
        status: uint256 = (w >> W_STATUS_SHIFT) & W8
        if status == W_BANNED:
            continue  # caught already (another job or part): nothing left to slash
        assert self._may_name(self._w_terms[liar], w, status, job_id, coordinator), (
            "compute: liar not registered"
        )
        amount: uint256 = w & W128
        self._w_head[liar] = W_BANNED << W_STATUS_SHIFT
        slashed += amount
        log WorkerSlashed(job_id=job_id, worker=liar, part=part, amount=amount)

    funds: uint256 = self._j_funds[job_id]
    budget: uint256 = funds & W128
    spent: uint256 = funds >> J_SPENT_SHIFT
    paid: uint256 = 0
    previous = 0
    for i: uint256 in range(len(workers), bound=MAX_SETTLE):
        worker: address = workers[i]
        fee: uint256 = fees[i]
        key: uint256 = convert(worker, uint256)
        assert key > previous, "compute: workers not sorted"
        previous = key
        w: uint256 = self._w_head[worker]
        status: uint256 = (w >> W_STATUS_SHIFT) & W8
        assert status != W_BANNED, "compute: worker banned"
        terms: uint256 = self._w_terms[worker]
        assert self._may_name(terms, w, status, job_id, coordinator), (
            "compute: worker not registered"
        )
        assert fee >= terms >> W_FEE_SHIFT, "compute: fee below minimum"
        assert fee <= budget - spent - paid, "compute: over budget"
        paid += fee
        if fee != 0:
            self.owed_of[worker] += fee
        log WorkerPaid(job_id=job_id, worker=worker, part=part, fee=fee)
    spent += paid
    if paid != 0:
        self._j_funds[job_id] = budget | (spent << J_SPENT_SHIFT)

    new_status: uint256 = J_FINAL if is_final else J_OPEN
    self._j_head[job_id] = (
        (head & (ADDR_MASK | (W40 << J_DEADLINE_SHIFT)))
        | ((part + 1) << J_PART_SHIFT)
        | (new_status << J_STATUS_SHIFT)
    )
    log PartSettled(
        job_id=job_id,
        part=part,
        paid=paid,
        slashed=slashed,
        receipt_hash=receipt_hash,
        final=is_final,
    )
    refund: uint256 = 0
    if is_final:
        refund = budget - spent
        log JobFinalized(job_id=job_id, spent=spent, refund=refund)
    if slashed + refund != 0:
        self.owed_of[consumer] += slashed + refund


@internal
@view
def _prediction_escrow(job_id: uint256) -> uint256:
    # price * count of a prediction job, 0 for a training job (gas: one SLOAD for those)
    terms: uint256 = self._p_terms[job_id]
    if terms == 0:
        return 0
    return (self._p_price[job_id] & W128) * ((terms >> P_COUNT_SHIFT) & W40)


@internal
def _pay_dataset(dataset_id: uint256, job_id: uint256, amount: uint256):
    # a refusing token (no holders, cap) must not block settlement: hold the value
    if amount == 0:
        return
    ok: bool = raw_call(
        self.share_token_of[dataset_id],
        method_id("distribute()"),
        value=amount,
        revert_on_failure=False,
    )
    if not ok:
        self.held_of[dataset_id] += amount
    log DividendPaid(dataset_id=dataset_id, job_id=job_id, amount=amount, held=not ok)


@internal
@view
def _domain_separator() -> bytes32:
    # computed per call (not cached) so a fork with another chain id gets its own domain
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@internal
@pure
def _addresses_hash(items: DynArray[address, MAX_SETTLE]) -> bytes32:
    # EIP-712 array: keccak256 of the 32-byte words, i.e. the ABI encoding minus offset/length
    return keccak256(slice(abi_encode(items), 64, 32 * len(items)))


@internal
@pure
def _uints_hash(items: DynArray[uint256, MAX_SETTLE]) -> bytes32:
    return keccak256(slice(abi_encode(items), 64, 32 * len(items)))


@internal
@view
def _receipt_digest(
    job_id: uint256,
    part: uint256,
    workers: DynArray[address, MAX_SETTLE],
    fees: DynArray[uint256, MAX_SETTLE],
    liars: DynArray[address, MAX_SETTLE],
    receipt_hash: bytes32,
    is_final: bool,
) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(
            RECEIPT_TYPEHASH,
            job_id,
            part,
            self._addresses_hash(workers),
            self._uints_hash(fees),
            self._addresses_hash(liars),
            receipt_hash,
            is_final,
        )
    )
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@internal
@view
def _prediction_digest(
    job_id: uint256,
    part: uint256,
    workers: DynArray[address, MAX_SETTLE],
    fees: DynArray[uint256, MAX_SETTLE],
    liars: DynArray[address, MAX_SETTLE],
    receipt_hash: bytes32,
    delivered: uint256,
) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(
            PREDICTION_RECEIPT_TYPEHASH,
            job_id,
            part,
            self._addresses_hash(workers),
            self._uints_hash(fees),
            self._addresses_hash(liars),
            receipt_hash,
            delivered,
        )
    )
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
