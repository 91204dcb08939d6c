"""Listings read from the index (synced from the chain first): datasets, proposals, holdings,
dividends waiting, and the duplicate check of a new batch.

Each listing costs a few queries however many datasets and proposals exist; the chain is asked
only for what the index cannot know (dividends owed now, for the tokens an account holds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from databright.index.cache import DatasetRow, HolderRow, ItemRow, ProposalRow, RefundRow
from databright.market.context import Deployment
from databright.market.sync import ensure_synced, reload_missing

#: CIDs per ``IN (...)`` query of the duplicate check
_CHUNK = 500


@dataclass(frozen=True)
class DatasetSummary:
    """One line of ``dataset list``."""

    dataset_id: int
    name: str
    item_count: int
    entry_count: int
    share_token: str
    total_supply: int


@dataclass(frozen=True)
class ProposalSummary:
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
class Holding:
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
    query = (select(ProposalRow.proposal_id, ProposalRow.dataset_id, DatasetRow.name,
                    ProposalRow.proposer, ProposalRow.item_count, ProposalRow.status,
                    ProposalRow.yes, ProposalRow.no, ProposalRow.score_bps, ProposalRow.deadline)
             .join(DatasetRow, DatasetRow.dataset_id == ProposalRow.dataset_id)
             .order_by(ProposalRow.proposal_id))
    if dataset_id is not None:
        query = query.where(ProposalRow.dataset_id == dataset_id)
    if open_only:
        query = query.where(ProposalRow.status == "open")
    with dep.index.session() as s:
        return [ProposalSummary(*row) for row in s.execute(query)]


def held_tokens(dep: Deployment, account: str) -> list[tuple[int, str, str, int, int, int]]:
    """``(dataset_id, name, token, balance, withdrawn, supply)`` of every token ``account`` has
    held (a sold-out holder may still have dividends waiting)."""
    ensure_synced(dep)
    with dep.index.session() as s:
        rows = s.execute(
            select(DatasetRow.dataset_id, DatasetRow.name, HolderRow.share_token,
                   HolderRow.balance, HolderRow.withdrawn, DatasetRow.total_supply)
            .join(DatasetRow, DatasetRow.dataset_id == HolderRow.dataset_id)
            .where(HolderRow.account == account)
            .order_by(DatasetRow.dataset_id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def holdings_of(dep: Deployment, account: str) -> list[Holding]:
    """Datasets where ``account`` holds shares or has dividends waiting (live ``dividends_of``
    only for the tokens the index says it has held)."""
    out = []
    for ds_id, name, token, balance, withdrawn, supply in held_tokens(dep, account):
        owed = dep.token(token).dividends_of(account)
        if balance or owed:
            out.append(Holding(ds_id, name, token, balance, supply,
                               balance / supply if supply else 0.0, owed, withdrawn))
    return out


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
