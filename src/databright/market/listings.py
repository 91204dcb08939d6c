"""Listings read from the index (synced from the chain first): datasets, proposals, holdings,
dividends waiting, and the duplicate check of a new batch.

Each listing costs a few queries however many datasets and proposals exist. Dividends waiting
are settled in the index exactly as the share token settles them; ``withdraw`` and
``dividends`` still ask the token (``dividends_of``), but only the tokens the index says the
account has held.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select

from databright.index.cache import DatasetRow, HolderRow, ItemRow, ProposalRow, RefundRow
from databright.market.context import Deployment
from databright.market.sync import DIVIDEND_MAG, ensure_synced, reload_missing

#: CIDs per ``IN (...)`` query of the duplicate check
_CHUNK = 500


class _Flat:
    """A flat record: ``to_dict`` is a copy of its fields (``dataclasses.asdict`` deep-copies,
    ten times slower on a listing of 10,000 rows)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DatasetSummary(_Flat):
    """One line of ``dataset list``."""

    dataset_id: int
    name: str
    item_count: int
    entry_count: int
    share_token: str
    total_supply: int


@dataclass(frozen=True)
class ProposalSummary(_Flat):
    """One line of ``proposals``."""

    proposal_id: int
    dataset_id: int
    dataset: str
    proposer: str
    item_count: int
    status: str
    yes: int
    no: int
    score_bps: int | None
    deadline: int


@dataclass(frozen=True)
class Holding(_Flat):
    """An account's shares of one dataset and its dividends (waiting now, withdrawn before)."""

    dataset_id: int
    dataset: str
    share_token: str
    balance: int
    total_supply: int
    fraction: float
    dividends_wei: int
    withdrawn_wei: int


def dataset_summaries(dep: Deployment) -> list[DatasetSummary]:
    ensure_synced(dep)
    with dep.index.session() as s:
        rows = s.execute(select(DatasetRow.dataset_id, DatasetRow.name, DatasetRow.item_count,
                                DatasetRow.entry_count, DatasetRow.share_token,
                                DatasetRow.total_supply).order_by(DatasetRow.dataset_id)).all()
    return [DatasetSummary(*row) for row in rows]


def proposal_summaries(dep: Deployment, dataset_id: int | None = None,
                       open_only: bool = False) -> list[ProposalSummary]:
    ensure_synced(dep)
    query = (select(ProposalRow.proposal_id, ProposalRow.dataset_id,
                    DatasetRow.name.label("dataset"),
                    ProposalRow.proposer, ProposalRow.item_count, ProposalRow.status,
                    ProposalRow.yes, ProposalRow.no, ProposalRow.score_bps, ProposalRow.deadline)
             .join(DatasetRow, DatasetRow.dataset_id == ProposalRow.dataset_id)
             .order_by(ProposalRow.proposal_id))
    if dataset_id is not None:
        query = query.where(ProposalRow.dataset_id == dataset_id)
    if open_only:
        query = query.where(ProposalRow.status == "open")
    with dep.index.session() as s:
        # positional: building 10,000 rows through a dict per row doubles the listing's time
        return [ProposalSummary(*cast("tuple[Any, ...]", row)) for row in s.execute(query)]


@dataclass(frozen=True)
class HeldToken(_Flat):
    """A token an account has held, by the index (a sold-out holder may still be owed)."""

    dataset_id: int
    dataset: str
    share_token: str
    balance: int
    total_supply: int
    withdrawn_wei: int
    #: dividends waiting, settled by the index the way the token settles them
    dividends_wei: int


def held_tokens(dep: Deployment, account: str) -> list[HeldToken]:
    """Every token ``account`` has held, with what the index knows of its dividends."""
    ensure_synced(dep)
    with dep.index.session() as s:
        rows = s.execute(
            select(DatasetRow.dataset_id, DatasetRow.name, HolderRow.share_token,
                   HolderRow.balance, DatasetRow.total_supply, HolderRow.withdrawn,
                   HolderRow.owed, HolderRow.per_share_paid, DatasetRow.per_share)
            .join(DatasetRow, DatasetRow.dataset_id == HolderRow.dataset_id)
            .where(HolderRow.account == account)
            .order_by(DatasetRow.dataset_id)
        ).all()
    return [HeldToken(ds_id, name, token, balance, supply, withdrawn,
                      owed + balance * (per_share - paid) // DIVIDEND_MAG)
            for ds_id, name, token, balance, supply, withdrawn, owed, paid, per_share in rows]


def shares_of(dep: Deployment, account: str) -> list[Holding]:
    """Datasets where ``account`` holds shares or has dividends waiting, all from the index."""
    return [Holding(t.dataset_id, t.dataset, t.share_token, t.balance, t.total_supply,
                    t.balance / t.total_supply if t.total_supply else 0.0, t.dividends_wei,
                    t.withdrawn_wei)
            for t in held_tokens(dep, account) if t.balance or t.dividends_wei]


def refund_owed(dep: Deployment, account: str) -> int:
    """Refunded stakes ``account`` can withdraw, by the index."""
    ensure_synced(dep)
    with dep.index.session() as s:
        row = s.get(RefundRow, account)
        return row.credited - row.withdrawn if row is not None else 0


def known_cids(dep: Deployment, dataset_id: int, cids: Iterable[str], *,
               include_pending: bool = True) -> set[str]:
    """Which of ``cids`` the dataset has already: accepted, held out for validation, or (with
    ``include_pending``) pending in an open proposal. An indexed lookup per chunk of CIDs; no
    manifest is read, except those the sync could not read before.

    Raises:
        IntegrityError: the manifest of an accepted entry or the validation split is missing.
    """
    ensure_synced(dep)
    wanted = list(dict.fromkeys(cids))
    states = ("accepted", "validation", "pending") if include_pending else ("accepted",
                                                                             "validation")
    found: set[str] = set()
    with dep.index.session() as s:
        reload_missing(dep, s, dataset_id)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            found.update(s.execute(
                select(ItemRow.cid).where(ItemRow.dataset_id == dataset_id,
                                          ItemRow.cid.in_(chunk), ItemRow.state.in_(states))
            ).scalars())
    return found
