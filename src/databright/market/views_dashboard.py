"""The shareholder dashboard's read model: one account's holdings, dividends waiting (in all
and by source), refunds, compute and model-registry credits waiting, proposals waiting for its
vote, and its contributions with their evaluated impact — from the index only (no chain call,
no sync).

What a user relies on:

- ``waiting_wei`` of a holding is the token's ``dividends_of`` as the index knows it at its
  last synced block: ``owed + balance * (per_share - per_share_paid) // 2**32``, the same
  figure ``databright dividends`` reads from the chain;
- its ``waiting_by_source`` adds up to it to the wei: each source's earnings (settled, plus its
  part of the growth since the last settlement, split as the sync splits a settlement) minus
  what was withdrawn of it (a withdrawal takes everything settled at that moment);
- the compute market's credits (fees, refunds, slashed stakes) and the ModelRegistry's
  (prediction revenue of a model's owner, channel refunds) are indexed minus withdrawals:
  ``compute_wei`` and ``registry_wei`` are each contract's ``owed_of``, and ``total_wei`` (the
  dividends, refunds and both credits) is what ``databright dividends`` calls the total
  withdrawable, to the wei, at the index's last synced block;
- "waiting for my vote" approximates the chain's rule (weight = shares held at the snapshot
  block), as the index keeps no balance history: an open proposal whose deadline has not
  passed, on a dataset where the account holds shares *now* and has not voted yet, excluding
  proposals whose snapshot precedes every share the account ever received from its own entries
  when those entries are all it has (``balance == shares minted to it`` by entries added after
  the snapshot). The chain may still weigh the vote 0 for shares bought after the snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from databright.index.cache import (
    SOURCES,
    DatasetRow,
    DividendSourceRow,
    EntryRow,
    HolderDividendRow,
    HolderRow,
    ProposalRow,
    RefundRow,
    VoteRow,
)
from databright.index.compute import ComputeAccountRow
from databright.index.credits import RegistryAccountRow
from databright.index.models import Evaluation
from databright.index.withdrawals import HolderSourceWithdrawnRow
from databright.market.sync_models import DIVIDEND_MAG, split_by_source

#: contributions (entries, proposals) and waiting votes listed, newest first
LIST_LIMIT = 50
#: open proposals read (newest first, in growing chunks) to find those before their deadline
SCAN_CHUNK, SCAN_LIMIT = 2_000, 20_000


@dataclass(frozen=True)
class DashboardHolding:
    """One dataset's shares of the account. ``share_bps`` of the supply (floored)."""

    dataset_id: int
    dataset: str
    share_token: str
    balance: int
    total_supply: int
    share_bps: int
    earned_wei: int
    withdrawn_wei: int
    waiting_wei: int
    waiting_by_source: dict[str, int]
    earned_by_source: dict[str, int]


@dataclass(frozen=True)
class WaitingVote:
    proposal_id: int
    dataset: str
    proposer: str
    item_count: int
    deadline: int
    score_bps: int | None
    yes: int
    no: int
    balance_now: int


@dataclass(frozen=True)
class EntryContribution:
    dataset: str
    index: int
    item_count: int
    shares_minted: int
    proposal_id: int


@dataclass(frozen=True)
class ProposalContribution:
    """A proposal the account made, with its evaluation (``None`` fields: not evaluated)."""

    proposal_id: int
    dataset: str
    status: str
    item_count: int
    stake: int
    shares_minted: int
    score_bps: int | None
    gain: float | None
    utility_gain: float | None
    accuracy_before: float | None
    accuracy_after: float | None


@dataclass(frozen=True)
class Dashboard:
    address: str
    holdings: tuple[DashboardHolding, ...]
    waiting_by_source: dict[str, int]
    dividends_wei: int
    refund_wei: int
    compute_wei: int
    registry_wei: int
    waiting_votes: tuple[WaitingVote, ...]
    entries: tuple[EntryContribution, ...]
    proposals: tuple[ProposalContribution, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def total_wei(self) -> int:
        """Everything the account can withdraw: dividends, refunds, compute and registry
        credits (what ``databright withdraw`` pays out)."""
        return self.dividends_wei + self.refund_wei + self.compute_wei + self.registry_wei

    def to_json(self) -> dict[str, Any]:
        """JSON with every wei amount (and share count) as a decimal string."""
        return {
            "address": self.address,
            "holdings": [{
                "dataset_id": h.dataset_id, "dataset": h.dataset, "share_token": h.share_token,
                "balance": str(h.balance), "total_supply": str(h.total_supply),
                "share_bps": h.share_bps, "earned_wei": str(h.earned_wei),
                "withdrawn_wei": str(h.withdrawn_wei), "waiting_wei": str(h.waiting_wei),
                "waiting_by_source": {k: str(v) for k, v in h.waiting_by_source.items()},
                "earned_by_source": {k: str(v) for k, v in h.earned_by_source.items()},
            } for h in self.holdings],
            "waiting_by_source": {k: str(v) for k, v in self.waiting_by_source.items()},
            "dividends_wei": str(self.dividends_wei), "refund_wei": str(self.refund_wei),
            "compute_wei": str(self.compute_wei), "registry_wei": str(self.registry_wei),
            "total_wei": str(self.total_wei),
            "waiting_votes": [{
                "proposal_id": v.proposal_id, "dataset": v.dataset, "proposer": v.proposer,
                "item_count": v.item_count, "deadline": v.deadline, "score_bps": v.score_bps,
                "yes": str(v.yes), "no": str(v.no), "balance_now": str(v.balance_now),
            } for v in self.waiting_votes],
            "entries": [e.__dict__ | {"shares_minted": str(e.shares_minted)}
                        for e in self.entries],
            "proposals": [p.__dict__ | {"stake": str(p.stake),
                                        "shares_minted": str(p.shares_minted)}
                          for p in self.proposals],
            "notes": list(self.notes),
        }


def waiting_of(balance: int, owed: int, per_share: int, per_share_paid: int,
               source_per_share: dict[str, int], settled: dict[str, int],
               source_paid: dict[str, int], withdrawn: dict[str, int]
               ) -> tuple[int, dict[str, int], dict[str, int]]:
    """A holder's dividends waiting in one dataset: in all, by source, and earned by source.

    Args:
        balance, owed, per_share_paid: the holder's ``holders`` row; ``per_share`` the
            dataset's running per-share total.
        source_per_share: each source's running per-share total (``dividend_sources``).
        settled, source_paid: the holder's ``holder_dividends`` rows (settled wei, and the
            source's per-share total at that settlement).
        withdrawn: the holder's ``holder_dividends_withdrawn`` rows.
    """
    waiting = owed + balance * (per_share - per_share_paid) // DIVIDEND_MAG
    deltas = {src: ps - source_paid.get(src, 0) for src, ps in source_per_share.items()}
    pending = split_by_source(balance, deltas) if deltas else {}
    earned = {src: settled.get(src, 0) + pending.get(src, 0)
              for src in dict.fromkeys([*source_per_share, *settled])}
    by_source = {src: wei - withdrawn.get(src, 0) for src, wei in earned.items()}
    return waiting, by_source, earned


def dashboard(s: Session, address: str, now: float) -> Dashboard:
    """The dashboard of ``address`` (checksummed) at unix time ``now``."""
    holdings = _holdings(s, address)
    total_by_source = {src: 0 for src in SOURCES}
    for h in holdings:
        for src, wei in h.waiting_by_source.items():
            total_by_source[src] = total_by_source.get(src, 0) + wei
    refund = s.get(RefundRow, address)
    compute = s.get(ComputeAccountRow, address)
    registry = s.get(RegistryAccountRow, address)
    return Dashboard(
        address=address, holdings=tuple(holdings), waiting_by_source=total_by_source,
        dividends_wei=sum(h.waiting_wei for h in holdings),
        refund_wei=refund.credited - refund.withdrawn if refund else 0,
        compute_wei=compute.credited - compute.withdrawn if compute else 0,
        registry_wei=registry.owed if registry else 0,
        waiting_votes=tuple(_waiting_votes(s, address, {h.dataset_id: h for h in holdings},
                                           now)),
        entries=tuple(_entries(s, address)), proposals=tuple(_proposals(s, address)),
    )


def _holdings(s: Session, address: str) -> list[DashboardHolding]:
    rows = s.execute(
        select(HolderRow, DatasetRow.name, DatasetRow.total_supply, DatasetRow.per_share)
        .join(DatasetRow, DatasetRow.dataset_id == HolderRow.dataset_id)
        .where(HolderRow.account == address).order_by(HolderRow.dataset_id)).all()
    if not rows:
        return []
    ids = [h.dataset_id for h, *_ in rows]
    source_ps: dict[int, dict[str, int]] = {}
    for r in s.execute(select(DividendSourceRow).where(DividendSourceRow.dataset_id.in_(ids))
                       ).scalars():
        source_ps.setdefault(r.dataset_id, {})[r.source] = r.per_share
    settled: dict[int, dict[str, int]] = {}
    paid: dict[int, dict[str, int]] = {}
    for d in s.execute(select(HolderDividendRow).where(
            HolderDividendRow.account == address, HolderDividendRow.dataset_id.in_(ids))
            ).scalars():
        settled.setdefault(d.dataset_id, {})[d.source] = d.settled
        paid.setdefault(d.dataset_id, {})[d.source] = d.per_share_paid
    withdrawn: dict[int, dict[str, int]] = {}
    for w in s.execute(select(HolderSourceWithdrawnRow).where(
            HolderSourceWithdrawnRow.account == address,
            HolderSourceWithdrawnRow.dataset_id.in_(ids))).scalars():
        withdrawn.setdefault(w.dataset_id, {})[w.source] = w.withdrawn
    out = []
    for h, name, supply, per_share in rows:
        ds = h.dataset_id
        waiting, by_source, earned = waiting_of(
            h.balance, h.owed, per_share, h.per_share_paid, source_ps.get(ds, {}),
            settled.get(ds, {}), paid.get(ds, {}), withdrawn.get(ds, {}))
        if not h.balance and not waiting and not h.withdrawn:
            continue
        out.append(DashboardHolding(
            ds, name, h.share_token, h.balance, supply,
            h.balance * 10_000 // supply if supply else 0, h.withdrawn + waiting, h.withdrawn,
            waiting, by_source, earned))
    return out


def _waiting_votes(s: Session, address: str, holdings: dict[int, DashboardHolding],
                   now: float) -> list[WaitingVote]:
    held = [ds for ds, h in holdings.items() if h.balance > 0]
    if not held:
        return []
    voted = select(VoteRow.proposal_id).where(VoteRow.voter == address,
                                              VoteRow.proposal_id == ProposalRow.proposal_id)
    query = (select(ProposalRow.proposal_id, DatasetRow.name, ProposalRow.proposer,
                    ProposalRow.item_count, ProposalRow.deadline, ProposalRow.score_bps,
                    ProposalRow.yes, ProposalRow.no, ProposalRow.snapshot,
                    ProposalRow.dataset_id)
             .join(DatasetRow, DatasetRow.dataset_id == ProposalRow.dataset_id)
             .where(ProposalRow.status == "open", ProposalRow.dataset_id.in_(held),
                    ~voted.exists())
             .order_by(ProposalRow.proposal_id.desc()))
    # shares the account got from its own entries, by dataset and block (for the snapshot test)
    minted: dict[int, list[tuple[int, int]]] = {}
    for ds, block, shares in s.execute(
            select(EntryRow.dataset_id, EntryRow.block_number, EntryRow.shares_minted)
            .where(EntryRow.contributor == address, EntryRow.dataset_id.in_(held))):
        minted.setdefault(ds, []).append((block, shares))
    out: list[WaitingVote] = []
    # deadlines are exact decimals (text on SQLite): compared here, newest proposals first, in
    # chunks; open proposals past their deadline (not finalized yet) are skipped
    start, chunk = 0, 2 * LIST_LIMIT
    while start < SCAN_LIMIT:
        rows = s.execute(query.offset(start).limit(chunk)).all()
        start += len(rows)
        for pid, name, proposer, items, deadline, score, yes, no, snapshot, ds in rows:
            if deadline <= now:
                continue
            balance = holdings[ds].balance
            mine = minted.get(ds, [])
            if mine and sum(sh for _, sh in mine) == balance and \
                    all(block > snapshot for block, _ in mine):
                continue  # every share it holds was minted to it after the snapshot
            out.append(WaitingVote(pid, name, proposer, items, deadline, score, yes, no,
                                   balance))
            if len(out) == LIST_LIMIT:
                return out
        if len(rows) < chunk:
            break
        chunk = min(4 * chunk, SCAN_CHUNK)
    return out


def _entries(s: Session, address: str) -> list[EntryContribution]:
    return [EntryContribution(name, e.index, e.item_count, e.shares_minted, e.proposal_id)
            for e, name in s.execute(
                select(EntryRow, DatasetRow.name)
                .join(DatasetRow, DatasetRow.dataset_id == EntryRow.dataset_id)
                .where(EntryRow.contributor == address)
                .order_by(EntryRow.block_number.desc(), EntryRow.index.desc())
                .limit(LIST_LIMIT)).all()]


def _proposals(s: Session, address: str) -> list[ProposalContribution]:
    # only the report's figures are read (its per-item list can be large)
    figures = [Evaluation.report[key].as_float() for key in
               ("gain", "utility_gain", "accuracy_before", "accuracy_after")]
    rows = s.execute(
        select(ProposalRow.proposal_id, DatasetRow.name, ProposalRow.status,
               ProposalRow.item_count, ProposalRow.stake, ProposalRow.shares_minted,
               ProposalRow.score_bps, *figures)
        .join(DatasetRow, DatasetRow.dataset_id == ProposalRow.dataset_id)
        .outerjoin(Evaluation, Evaluation.proposal_id == ProposalRow.proposal_id)
        .where(ProposalRow.proposer == address)
        .order_by(ProposalRow.proposal_id.desc()).limit(LIST_LIMIT)).all()
    return [ProposalContribution(pid, name, status, items, stake, minted, score,
                                 *(_num(v) for v in values))
            for pid, name, status, items, stake, minted, score, *values in rows]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None

