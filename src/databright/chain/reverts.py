"""From what a node says about a failed transaction to one DataBright error with the reason.

Two jobs: :func:`reason_of` digs the contract's revert string out of the error shapes web3.py
raises for eth-tester (``TransactionFailed('execution reverted: …')``) and for JSON-RPC nodes such
as anvil (``ContractLogicError`` with ABI-encoded ``Error(string)`` data); :func:`revert_error`
maps the string to a specific :class:`~databright.errors.ContractRevert` subclass by the table
below. The reasons are the contracts' own (``src/databright/contracts/*.vy``, listed in
``docs/contracts.md``); a reason not in the table becomes a plain :class:`ContractRevert`.
"""

from __future__ import annotations

from eth_abi import decode

from databright.errors import (
    AlreadyVotedError,
    ChainError,
    ChainUnreachableError,
    ContractNotFoundError,
    ContractRevert,
    DataBrightError,
    InsufficientFundsError,
    InsufficientSharesError,
    InvalidArgumentError,
    NameTakenError,
    NothingToWithdrawError,
    PermissionDenied,
    TooEarlyError,
    VotingClosedError,
    WrongStakeError,
)

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
_PREFIX = "execution reverted"

#: revert reason → (error class, what it means for the user). Every reason the contracts can
#: give is listed; tests/chain/test_reverts.py checks this against the .vy sources.
REVERTS: dict[str, tuple[type[ContractRevert], str]] = {
    # DataMarket: unknown things
    "market: unknown dataset": (ContractNotFoundError, "no such dataset"),
    "market: unknown proposal": (ContractNotFoundError, "no such proposal"),
    "market: unknown entry": (ContractNotFoundError, "no such registry entry"),
    # DataMarket: create_dataset / propose arguments
    "market: empty name": (InvalidArgumentError, "the dataset needs a name"),
    "market: name taken": (NameTakenError, "a dataset of that name already exists"),
    "market: bad quorum": (InvalidArgumentError, "quorum must be 1 to 10,000 bps"),
    "market: bad approval": (InvalidArgumentError, "approval must be at most 10,000 bps"),
    "market: bad voting period": (InvalidArgumentError, "the voting period is zero or too long"),
    "market: bad reward rule": (InvalidArgumentError, "the reward rule (r0, N0) is out of range"),
    "market: bad seed": (InvalidArgumentError, "the seed must hold 1 to the maximum batch items"),
    "market: bad royalty floor": (InvalidArgumentError, "the minimum royalty must be at most 100%"),
    "market: bad training fee": (InvalidArgumentError, "the training fee must be below 2**128 wei"),
    "market: empty manifest": (InvalidArgumentError, "the proposal names no manifest"),
    "market: bad item count": (InvalidArgumentError, "the batch is empty or too large"),
    "market: wrong stake": (WrongStakeError, "the value sent must equal the dataset's stake"),
    # DataMarket: commit-reveal and roots
    "market: no commitment": (
        PermissionDenied,
        "the sender has no commitment to exactly this batch: commit it first",
    ),
    "market: commitment too new": (
        TooEarlyError,
        "the commitment was made in this block: propose in a later block",
    ),
    "market: commitment expired": (
        ContractRevert,
        "the commitment is more than a day old: commit again",
    ),
    "market: root pending": (
        ContractRevert,
        "a batch with this Merkle root is already in an open proposal of the dataset",
    ),
    "market: root registered": (
        ContractRevert,
        "a batch with this Merkle root is already in the dataset's registry",
    ),
    # DataMarket: voting and deciding
    "market: proposal not open": (VotingClosedError, "the proposal is already finalized"),
    "market: voting closed": (VotingClosedError, "the proposal's voting period is over"),
    "market: already voted": (AlreadyVotedError, "this account already voted on the proposal"),
    "market: no voting power": (
        PermissionDenied,
        "this account held no shares at the proposal's snapshot, so it cannot vote",
    ),
    "market: outcome not final": (
        TooEarlyError,
        "the proposal cannot be finalized yet: wait for the deadline or a decisive vote",
    ),
    "market: only evaluator": (PermissionDenied, "only the dataset's evaluator may post a score"),
    "market: already scored": (ContractRevert, "a score was already posted for this proposal"),
    "market: score out of range": (InvalidArgumentError, "the score must be 0 to 20,000 bps"),
    "market: nothing to refund": (NothingToWithdrawError, "no refunded stake to withdraw"),
    "market: nothing held": (
        NothingToWithdrawError,
        "the dataset holds no rejected stakes waiting to be distributed",
    ),
    # ShareToken
    "shares: only market": (PermissionDenied, "only the DataMarket contract may do this"),
    "shares: snapshot not final": (TooEarlyError, "that block is not final yet"),
    "shares: zero address": (InvalidArgumentError, "shares cannot go to the zero address"),
    "shares: insufficient balance": (InsufficientSharesError, "not enough shares"),
    "shares: insufficient allowance": (InsufficientSharesError, "the allowance is too small"),
    "shares: supply cap": (InvalidArgumentError, "the share supply would exceed its cap"),
    "shares: nothing to distribute": (
        NothingToWithdrawError,
        "send a non-zero amount to distribute",
    ),
    "shares: no holders": (NothingToWithdrawError, "the dataset has no shareholders to pay"),
    "shares: distribution cap": (InvalidArgumentError, "the amount exceeds the distribution cap"),
    "shares: nothing to withdraw": (NothingToWithdrawError, "no dividends to withdraw"),
    # ModelRegistry: deployment
    "registry: terms not a contract": (InvalidArgumentError, "the terms address holds no contract"),
    "registry: bad challenge period": (
        InvalidArgumentError,
        "the challenge period must be 1 second to 1 year",
    ),
    # ModelRegistry: unknown things
    "registry: unknown dataset": (ContractNotFoundError, "no such dataset"),
    "registry: unknown model": (ContractNotFoundError, "no such model"),
    "registry: unknown checkpoint": (ContractNotFoundError, "no such checkpoint of this model"),
    "registry: unknown channel": (ContractNotFoundError, "no such payment channel"),
    # ModelRegistry: register / submit_checkpoint
    "registry: empty name": (InvalidArgumentError, "the model needs a name"),
    "registry: bad royalty": (InvalidArgumentError, "the royalty must be at most 10,000 bps"),
    "registry: royalty below floor": (
        InvalidArgumentError,
        "the royalty is below the dataset's minimum royalty",
    ),
    "registry: wrong fee": (
        InvalidArgumentError,
        "the value sent must equal the dataset's training fee",
    ),
    "registry: only model owner": (PermissionDenied, "only the model's owner may do this"),
    "registry: empty cid": (InvalidArgumentError, "the checkpoint names no CID"),
    "registry: empty sha256": (InvalidArgumentError, "the checkpoint's sha256 is zero"),
    "registry: metric out of range": (InvalidArgumentError, "the metric must be 0 to 10,000 bps"),
    "registry: bad snapshot": (
        InvalidArgumentError,
        "the snapshot must be 1 to the dataset's current number of entries",
    ),
    "registry: bad signature length": (InvalidArgumentError, "a signature is 65 bytes"),
    "registry: already attested": (
        InvalidArgumentError,
        "this checkpoint already carries an attested metric",
    ),
    "registry: untrusted attestor": (
        PermissionDenied,
        "not signed by the dataset's evaluator or a trusted attestor over this checkpoint",
    ),
    "registry: nothing held": (NothingToWithdrawError, "no held dividends for this dataset"),
    # ModelRegistry: payment channels
    "registry: empty deposit": (InvalidArgumentError, "send a non-zero deposit"),
    "registry: deposit too large": (InvalidArgumentError, "the deposit exceeds 2**96 - 1 wei"),
    "registry: bad timeout": (InvalidArgumentError, "the timeout must be 1 second to 10 years"),
    "registry: only payer": (PermissionDenied, "only the channel's payer may do this"),
    "registry: only payee": (PermissionDenied, "only the model's owner may close the channel"),
    "registry: channel not open": (ContractRevert, "the channel is closed, reclaimed or closing"),
    "registry: voucher exceeds deposit": (
        InvalidArgumentError,
        "the voucher is for more than the channel's deposit",
    ),
    "registry: bad voucher": (
        InvalidArgumentError,
        "the voucher is not signed by the channel's payer for this channel and amount",
    ),
    "registry: channel not expired": (
        TooEarlyError,
        "the channel's timeout has not passed: it cannot be reclaimed yet",
    ),
    "registry: reclaim not started": (TooEarlyError, "call start_reclaim first"),
    "registry: challenge window open": (
        TooEarlyError,
        "the challenge window is still open: the payee may still close",
    ),
    "registry: nothing to withdraw": (NothingToWithdrawError, "nothing credited to withdraw"),
    # ModelRegistry: administration
    "registry: only owner": (PermissionDenied, "only the registry's owner may do this"),
    "registry: zero address": (InvalidArgumentError, "the zero address is not allowed here"),
    # ComputeMarket: deployment
    "compute: terms not a contract": (InvalidArgumentError, "the terms address holds no contract"),
    "compute: bad min stake": (InvalidArgumentError, "the minimum stake must be 1 to 2**128 wei"),
    "compute: bad cooldown": (InvalidArgumentError, "the cool-down must be 1 second to 1 year"),
    "compute: registry not a contract": (
        InvalidArgumentError,
        "the model registry address holds no contract",
    ),
    # ComputeMarket: workers
    "compute: worker banned": (
        PermissionDenied,
        "this worker was caught returning a wrong result and is banned",
    ),
    "compute: already registered": (ContractRevert, "this account is already a worker"),
    "compute: stake too low": (WrongStakeError, "the stake is below the market's minimum"),
    "compute: stake too large": (InvalidArgumentError, "the stake exceeds 2**128 wei"),
    "compute: min fee too large": (InvalidArgumentError, "the minimum fee exceeds 2**96 wei"),
    "compute: empty determinism class": (
        InvalidArgumentError,
        "the worker must name its determinism class",
    ),
    "compute: not active": (ContractRevert, "this account is not an active worker"),
    "compute: not leaving": (ContractRevert, "unregister first: the worker is not leaving"),
    "compute: stake locked": (
        TooEarlyError,
        "the stake is locked until the cool-down and every job that may name the worker end",
    ),
    # ComputeMarket: coordinators
    "compute: zero address": (InvalidArgumentError, "the zero address is not an enclave key"),
    "compute: empty evidence": (InvalidArgumentError, "the coordinator names no evidence CID"),
    "compute: bad kind": (InvalidArgumentError, "the kind is 1 (software) or 2 (sgx-dcap)"),
    "compute: coordinator exists": (
        NameTakenError,
        "this enclave key is already registered as a coordinator",
    ),
    "compute: unknown coordinator": (ContractNotFoundError, "no such coordinator"),
    # ComputeMarket: jobs
    "compute: unknown dataset": (ContractNotFoundError, "no such dataset"),
    "compute: unknown job": (ContractNotFoundError, "no such job"),
    "compute: empty program digest": (InvalidArgumentError, "the job names no program digest"),
    "compute: empty spec": (InvalidArgumentError, "the job names no spec CID"),
    "compute: bad deadline": (
        InvalidArgumentError,
        "the deadline must be in the future and at most 90 days away",
    ),
    "compute: value below training fee": (
        WrongStakeError,
        "the value sent must cover the dataset's training fee (the rest is the budget)",
    ),
    "compute: budget too large": (InvalidArgumentError, "the compute budget exceeds 2**128 wei"),
    "compute: job closed": (ContractRevert, "the job is already final or cancelled"),
    "compute: job expired": (
        TooEarlyError,
        "the job's deadline has passed: it can no longer settle, only be cancelled",
    ),
    "compute: wrong part": (
        InvalidArgumentError,
        "receipt parts settle in order, each once: this is not the job's next part",
    ),
    "compute: length mismatch": (InvalidArgumentError, "one fee per worker"),
    "compute: bad signature length": (InvalidArgumentError, "a signature is 65 bytes"),
    "compute: bad receipt": (
        PermissionDenied,
        "the receipt is not signed by the job's coordinator over exactly these fields",
    ),
    "compute: liars not sorted": (
        InvalidArgumentError,
        "liars must be listed once each, by ascending address",
    ),
    "compute: liar not registered": (
        InvalidArgumentError,
        "a liar is not a worker this job may name",
    ),
    "compute: workers not sorted": (
        InvalidArgumentError,
        "workers must be listed once each, by ascending address",
    ),
    "compute: worker not registered": (
        InvalidArgumentError,
        "a worker is not registered, or left before this job was created",
    ),
    "compute: fee below minimum": (
        InvalidArgumentError,
        "a worker's fee is below its registered minimum fee",
    ),
    "compute: over budget": (
        InvalidArgumentError,
        "the fees exceed the job's remaining compute budget",
    ),
    "compute: only consumer": (PermissionDenied, "only the job's consumer may cancel it"),
    "compute: deadline not passed": (
        TooEarlyError,
        "the job's deadline has not passed: it cannot be cancelled yet",
    ),
    "compute: nothing to withdraw": (NothingToWithdrawError, "nothing credited to withdraw"),
    "compute: nothing held": (
        NothingToWithdrawError,
        "no held training fees or royalties for this dataset",
    ),
    # ComputeMarket: prediction jobs
    "compute: unknown model": (ContractNotFoundError, "no such model in the registry"),
    "compute: bad count": (
        InvalidArgumentError,
        "a prediction job asks for 1 to 2**40 - 1 predictions",
    ),
    "compute: price too large": (
        InvalidArgumentError,
        "the model's price per prediction exceeds 2**128 wei",
    ),
    "compute: bad royalty": (InvalidArgumentError, "the model's royalty exceeds 10,000 bps"),
    "compute: value below prediction price": (
        WrongStakeError,
        "the value sent must cover the model's price times the count (the rest is the budget)",
    ),
    "compute: prediction job needs delivered": (
        InvalidArgumentError,
        "a prediction job's final part is settled by settle_prediction, with the count delivered",
    ),
    "compute: not a prediction job": (InvalidArgumentError, "this job is not a prediction job"),
    "compute: delivered above count": (
        InvalidArgumentError,
        "a receipt cannot deliver more predictions than the job paid for",
    ),
}

_INVALID_WORDS = ("zero", "invalid", "out of range", "too long", "empty", "bad ")


def revert_error(reason: str) -> ContractRevert:
    """The DataBright error for a contract's revert reason (message: meaning, then reason)."""
    reason = reason.strip()
    known = REVERTS.get(reason)
    if known is not None:
        cls, meaning = known
        return cls(reason, f"{meaning} ({reason})")
    if any(word in reason for word in _INVALID_WORDS):
        return InvalidArgumentError(reason, f"the contract rejected an argument ({reason})")
    if not reason:
        return ContractRevert("", "the contract refused the transaction (no reason given)")
    return ContractRevert(reason, f"the contract refused the transaction ({reason})")


def _decode_data(data: object) -> str | None:
    if isinstance(data, str) and data.startswith("0x"):
        try:
            raw = bytes.fromhex(data[2:])
        except ValueError:
            return None
    elif isinstance(data, bytes | bytearray):
        raw = bytes(data)
    else:
        return None
    if raw[:4] == _ERROR_SELECTOR:
        try:
            return str(decode(["string"], raw[4:])[0])
        except Exception:  # noqa: BLE001 - malformed revert data: fall back to the message
            return None
    if raw[:4] == _PANIC_SELECTOR and len(raw) >= 36:
        return f"panic 0x{int.from_bytes(raw[4:36], 'big'):02x}"
    return None


def reason_of(exc: BaseException) -> str | None:
    """The revert reason carried by ``exc``, or ``None`` when ``exc`` is not a revert.

    Understands web3's ``ContractLogicError`` family (anvil, geth, …) and eth-tester's
    ``TransactionFailed``.
    """
    from eth_tester.exceptions import TransactionFailed
    from web3.exceptions import ContractLogicError

    if isinstance(exc, ContractLogicError):
        decoded = _decode_data(getattr(exc, "data", None))
        if decoded is not None:
            return decoded
        message = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else ""))
    elif isinstance(exc, TransactionFailed):
        arg = exc.args[0] if exc.args else ""
        decoded = _decode_data(arg)
        if decoded is not None:
            return decoded
        message = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
    else:
        return None
    message = message.strip()
    if message.startswith(_PREFIX):
        message = message[len(_PREFIX) :].lstrip(": ").strip()
    return message


def _is_insufficient_funds(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        "insufficient funds" in text
        or "cannot afford" in text
        or "-32003" in text
        or "does not have enough balance" in text
    )


def _is_connection_failure(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - web3 depends on requests
        return isinstance(exc, ConnectionError | TimeoutError)
    return isinstance(exc, requests.ConnectionError | requests.Timeout | ConnectionError)


def translate(exc: BaseException, where: str = "") -> DataBrightError | None:
    """The DataBright error for a web3/eth-tester failure, or ``None`` if it is not ours to name.

    Args:
        exc: what web3.py or eth-tester raised.
        where: the chain's URL, for unreachable-node messages.
    """
    if isinstance(exc, DataBrightError):
        return exc
    reason = reason_of(exc)
    if reason is not None:
        return revert_error(reason)
    if _is_connection_failure(exc):
        return ChainUnreachableError(f"cannot reach the chain at URL: {where or '?'} ({exc})")
    if _is_insufficient_funds(exc):
        return InsufficientFundsError(
            "the account cannot pay for this transaction's value and gas: fund it first"
        )
    from web3.exceptions import Web3RPCError

    if isinstance(exc, Web3RPCError):
        return ChainError(f"the chain refused the request: {exc}")
    return None
