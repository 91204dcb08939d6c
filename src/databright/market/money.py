"""Shares, transfers, distributions of revenue, dividends and withdrawals (integer wei)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import InsufficientFundsError, NothingToWithdrawError, UsageError
from databright.market.context import Deployment
from databright.market.datasets import dataset_id

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.market.listings import Holding


@dataclass(frozen=True)
class Transfer:
    """Shares sent (base units); ``balance`` is what the sender holds afterwards."""

    dataset: str
    sender: str
    receiver: str
    amount: int
    balance: int


@dataclass(frozen=True)
class Distribution:
    """Revenue distributed to a dataset's shareholders (``ShareToken.distribute``)."""

    dataset: str
    payer: str
    amount_wei: int
    total_distributed: int



def shares_of(dep: Deployment, address: str) -> list[Holding]:
    """Every dataset in which ``address`` holds shares or has dividends waiting (the index says
    which tokens it has held; only those are asked for ``dividends_of``)."""
    from databright.market.listings import shares_of

    return shares_of(dep, address)


def transfer(dep: Deployment, sender: Signer, dataset: str, to: str, amount: int) -> Transfer:
    """Send ``amount`` base units of ``dataset``'s shares to an account name or address."""
    info = dep.market.get_dataset(dataset_id(dep, dataset))
    receiver = dep.resolve_address(to)
    token = dep.token(info.share_token)
    have = token.balanceOf(sender.address)
    if amount <= 0:
        raise UsageError("transfer amount must be positive")
    if amount > have:
        raise InsufficientFundsError(
            f"{sender.address} holds {have} base units of {dataset} shares, cannot send {amount}"
        )
    token.transfer(sender, receiver, amount)
    return Transfer(dataset=dataset, sender=sender.address, receiver=receiver, amount=amount,
                    balance=token.balanceOf(sender.address))


def distribute(dep: Deployment, sender: Signer, dataset: str, amount_wei: int) -> Distribution:
    """Distribute revenue to a dataset's shareholders: it becomes their dividends."""
    if amount_wei <= 0:
        raise UsageError("the amount to distribute must be positive")
    info = dep.market.get_dataset(dataset_id(dep, dataset))
    balance = dep.chain.balance(sender.address)
    if balance < amount_wei:
        raise InsufficientFundsError(
            f"{sender.address} has {balance} wei, cannot distribute {amount_wei} wei (plus gas)"
        )
    token = dep.token(info.share_token)
    token.distribute(sender, value=amount_wei)
    return Distribution(dataset=dataset, payer=sender.address, amount_wei=amount_wei,
                        total_distributed=token.total_distributed())


@dataclass(frozen=True)
class DividendWithdrawal:
    """Dividends pulled from one dataset's ShareToken: ``amount_wei`` now (as its
    ``DividendsWithdrawn`` event says), ``withdrawn_wei`` in all so far."""

    dataset: str
    account: str
    amount_wei: int
    withdrawn_wei: int


def withdraw_dividends(dep: Deployment, sender: Signer, dataset: str) -> DividendWithdrawal:
    """Pull the dividends ``sender`` has waiting in one dataset.

    Raises:
        NothingToWithdrawError: none are waiting.
    """
    info = dep.market.get_dataset(dataset_id(dep, dataset))
    token = dep.token(info.share_token)
    if not token.dividends_of(sender.address):
        raise NothingToWithdrawError(
            "shares: nothing to withdraw", f"{sender.address} has no dividends waiting in {dataset}"
        )
    amount, _ = token.withdraw(sender)
    return DividendWithdrawal(dataset=dataset, account=sender.address, amount_wei=amount,
                      withdrawn_wei=token.withdrawn_of(sender.address))


@dataclass(frozen=True)
class Payout:
    """One withdrawal: ``kind`` is ``dividends`` (of ``dataset``), ``refunded stake``, or
    ``model registry`` (prediction revenue of a model's owner, a channel's unspent deposit)."""

    dataset: str | None
    kind: str
    amount_wei: int


@dataclass(frozen=True)
class Withdrawal:
    """What ``withdraw`` paid ``account``."""

    account: str
    paid: list[Payout]
    total_wei: int


@dataclass(frozen=True)
class DividendsWaiting:
    """Dividends of one dataset ``account`` can withdraw now, and what it withdrew before."""

    dataset: str
    dividends_wei: int
    withdrawn_wei: int


@dataclass(frozen=True)
class Withdrawable:
    """Everything ``account`` could withdraw now."""

    account: str
    dividends: list[DividendsWaiting]
    refund_wei: int
    registry_wei: int
    total_wei: int
    compute_wei: int = 0


def _registry_owed(dep: Deployment, address: str) -> int:
    """Wei the home's ModelRegistry credits ``address`` (0 for a home without a registry)."""
    if not dep.config.contracts.get("ModelRegistry"):
        return 0
    return dep.registry.owed_of(address)


def _compute_owed(dep: Deployment, address: str) -> int:
    """Wei the home's ComputeMarket credits ``address`` (worker fees, refunds, slashed stakes)."""
    if not dep.config.contracts.get("ComputeMarket"):
        return 0
    return dep.compute.owed_of(address)


def withdraw(dep: Deployment, sender: Any) -> Withdrawal:
    """Pull every dividend and refunded stake owed to ``sender`` (the tokens to ask come from
    the index; what is owed is read live from each)."""
    from databright.market.listings import held_tokens

    paid: list[Payout] = []
    for held in held_tokens(dep, sender.address):
        token = dep.token(held.share_token)
        owed = token.dividends_of(sender.address)
        if owed:
            token.withdraw(sender)
            paid.append(Payout(held.dataset, "dividends", owed))
    refund = dep.market.refund_of(sender.address)
    if refund:
        dep.market.withdraw_refund(sender)
        paid.append(Payout(None, "refunded stake", refund))
    credited = _registry_owed(dep, sender.address)
    if credited:
        amount, _ = dep.registry.withdraw(sender)
        paid.append(Payout(None, "model registry", amount))
    computed = _compute_owed(dep, sender.address)
    if computed:
        amount, _ = dep.compute.withdraw(sender)
        paid.append(Payout(None, "compute market", amount))
    return Withdrawal(sender.address, paid, sum(p.amount_wei for p in paid))


def voting_power(dep: Deployment, proposal_id: int, address: str) -> int:
    """The weight ``address`` votes with on a proposal: its shares at the proposal's snapshot."""
    from databright.market.proposals import get_proposal

    p = get_proposal(dep, proposal_id)
    token = dep.token(dep.market.get_dataset(p.dataset_id).share_token)
    if dep.chain.block_number() <= p.snapshot:
        # the snapshot block is the latest mined one: its end state is the current state
        return token.balanceOf(address)
    return token.balance_at(address, p.snapshot)


def pending(dep: Deployment, address: str) -> Withdrawable:
    """What ``address`` could withdraw now."""
    from databright.market.listings import held_tokens

    rows = []
    for held in held_tokens(dep, address):  # live amounts, for the tokens the index names
        owed = dep.token(held.share_token).dividends_of(address)
        if held.balance or owed:
            rows.append(DividendsWaiting(held.dataset, owed, held.withdrawn_wei))
    refund = dep.market.refund_of(address)
    credited = _registry_owed(dep, address)
    computed = _compute_owed(dep, address)
    return Withdrawable(address, rows, refund, credited,
                        refund + credited + computed + sum(r.dividends_wei for r in rows),
                        computed)
