"""Shares, transfers, revenue payments, dividends and withdrawals (integer wei throughout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import InsufficientFundsError, UsageError
from databright.market.context import Deployment
from databright.market.datasets import dataset_id

if TYPE_CHECKING:
    from databright.market.listings import Holding


def holdings(dep: Deployment, address: str) -> list[Holding]:
    """Every dataset in which ``address`` holds shares or has dividends waiting (the index says
    which tokens it has held; only those are asked for ``dividends_of``)."""
    from databright.market.listings import holdings_of

    return holdings_of(dep, address)


def transfer(dep: Deployment, sender: Any, dataset: str, to: str, amount: int) -> dict:
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
    return {"dataset": dataset, "from": sender.address, "to": receiver, "amount": amount,
            "balance": token.balanceOf(sender.address)}


def pay(dep: Deployment, sender: Any, dataset: str, amount_wei: int) -> dict:
    """Pay revenue into a dataset: it becomes dividends for its shareholders."""
    if amount_wei <= 0:
        raise UsageError("payment must be a positive amount")
    info = dep.market.get_dataset(dataset_id(dep, dataset))
    balance = dep.chain.w3.eth.get_balance(sender.address)
    if balance < amount_wei:
        raise InsufficientFundsError(
            f"{sender.address} has {balance} wei, cannot pay {amount_wei} wei (plus gas)"
        )
    token = dep.token(info.share_token)
    token.distribute(sender, value=amount_wei)
    return {"dataset": dataset, "payer": sender.address, "amount_wei": amount_wei,
            "total_distributed": token.total_distributed()}


@dataclass(frozen=True)
class Payout:
    """One withdrawal: ``kind`` is ``dividends`` (of ``dataset``) or ``refunded stake``."""

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
    total_wei: int


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
    return Withdrawable(address, rows, refund, refund + sum(r.dividends_wei for r in rows))
