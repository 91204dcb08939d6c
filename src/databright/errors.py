"""One error root for everything a user can cause or meet.

The chain layer turns contract reverts into these, the CLI prints ``str(error)`` on one line and
exits with ``error.exit_code``, the web API answers with ``error.http_status``.
"""

from __future__ import annotations


class DataBrightError(Exception):
    """Root of all DataBright errors; the message is one line meant for the user."""

    exit_code = 1
    http_status = 400


class UsageError(DataBrightError):
    """Bad input: a malformed argument, an unknown option value."""

    exit_code = 2


class NotFoundError(DataBrightError):
    """A dataset, proposal, account, entry or blob that does not exist."""

    exit_code = 3
    http_status = 404


class ConfigError(DataBrightError):
    """The home folder is missing, incomplete or inconsistent."""

    exit_code = 4
    http_status = 500


class ChainError(DataBrightError):
    """The chain could not be reached or answered something unexpected."""

    exit_code = 5
    http_status = 502


class ChainUnreachableError(ChainError):
    """The JSON-RPC node does not answer."""


class ChainBusyError(ChainError):
    """Another process holds the embedded chain."""

    exit_code = 6
    http_status = 503


class ContractRevert(DataBrightError):
    """A contract refused a transaction; ``reason`` is its prefixed revert string."""

    exit_code = 7
    http_status = 409

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class PermissionDenied(ContractRevert):
    """The caller is not allowed to do this (no shares, not the evaluator, ...)."""

    http_status = 403


class InsufficientFundsError(DataBrightError):
    """The account cannot pay for the value or the gas."""

    exit_code = 8
    http_status = 402


class WrongPasswordError(DataBrightError):
    """The keystore password does not decrypt the key."""

    exit_code = 9
    http_status = 401


class StorageError(DataBrightError):
    """The blob store failed or holds something it should not."""

    exit_code = 10
    http_status = 500


class CorruptBlobError(StorageError):
    """A blob's bytes do not hash to its CID."""


class MissingBlobError(StorageError, NotFoundError):
    """A blob named by a manifest is not in the store."""

    http_status = 404


class IngestError(UsageError):
    """A proposal's input folder or table cannot be taken as it is."""


class IntegrityError(DataBrightError):
    """What the store recomputes disagrees with what the chain records."""

    exit_code = 11
    http_status = 409


class ValuationError(DataBrightError):
    """An evaluation could not run (too little data, bad features, ...)."""

    exit_code = 12
    http_status = 422


# -- chain layer (databright.chain): refusals that are not contract reverts --------------------


class DevChainOnlyError(UsageError):
    """A development-only action (moving the clock, the faucet) asked of a real network."""


class AccountExistsError(UsageError):
    """A keystore account of that name already exists."""


# -- contract reverts, by meaning (the table in databright.chain.reverts picks them) -------------


class ContractNotFoundError(NotFoundError, ContractRevert):
    """The contract knows no such dataset, proposal or entry."""


class AlreadyVotedError(ContractRevert):
    """The account already voted on this proposal."""


class VotingClosedError(ContractRevert):
    """The proposal is past its deadline, finalized, or not yet open for votes."""


class TooEarlyError(ContractRevert):
    """The action is not allowed yet (e.g. finalizing before the deadline)."""


class WrongStakeError(ContractRevert):
    """The value sent is not the dataset's stake."""


class NameTakenError(ContractRevert):
    """A dataset of that name already exists."""


class NothingToWithdrawError(ContractRevert):
    """There is nothing to withdraw or distribute."""


class InsufficientSharesError(ContractRevert):
    """The account holds (or is allowed) fewer shares than it tries to move."""


class InvalidArgumentError(ContractRevert):
    """The contract rejected an argument (zero count, bad rule, score out of range, ...)."""

    exit_code = 2
    http_status = 422
