"""The datasets list and one dataset's page, from the index (and the card blob, cached by CID).

The list costs four queries however many datasets and proposals exist (the per-dataset counts
are GROUP BY aggregates); sorting and search run over the dataset rows in memory because wei
and item counts are stored as exact decimal text on SQLite (an SQL ``ORDER BY`` would sort
them as strings) and descriptions live in the card blobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from databright.errors import NotFoundError, UsageError
from databright.index.cache import (
    SOURCES,
    DatasetRow,
    DividendPaymentRow,
    DividendSourceRow,
    EntryRow,
    HolderRow,
    ModelRow,
    ProposalRow,
)
from databright.market.model_listings import checkpoints_of
from databright.market.views.amounts import Shares, Wei
from databright.market.views.blobs import card_of
from databright.storage.cas import BlobStore

SORTS = ("newest", "size", "shareholders", "models", "revenue", "name")
MAX_PER_PAGE = 100
#: rows of the long tables a dataset page shows (the counts are always exact)
MAX_ENTRIES = 200
MAX_HOLDERS = 100
MAX_PAYMENTS = 1_000
ZERO = "0x" + "00" * 20


def page_bounds(page: int, per_page: int) -> tuple[int, int]:
    """A validated ``(page, per_page)``: page ≥ 1, 1 ≤ per_page ≤ :data:`MAX_PER_PAGE`."""
    if page < 1:
        raise UsageError("page must be 1 or more")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise UsageError(f"per_page must be 1..{MAX_PER_PAGE}")
    return page, per_page


@dataclass(frozen=True)
class DatasetCard:
    """One dataset of the list. ``revenue_wei``: dividends ever distributed to its holders."""

    dataset_id: int
    name: str
    symbol: str
    description: str
    items: int
    entries: int
    shareholders: int
    models: int
    revenue_wei: Wei
    open_proposals: int
    created_block: int


@dataclass(frozen=True)
class DatasetList:
    """A page of the datasets list (``total``: datasets matching ``q``)."""

    datasets: tuple[DatasetCard, ...]
    total: int
    page: int
    per_page: int
    q: str
    sort: str

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _counts(s: Session, column: Any, *where: Any) -> dict[int, int]:
    query = select(column, func.count()).group_by(column)
    for w in where:
        query = query.where(w)
    return {int(k): int(n) for k, n in s.execute(query)}


def list_datasets(s: Session, store: BlobStore, *, q: str = "", sort: str = "newest",
                  page: int = 1, per_page: int = 20) -> DatasetList:
    """Datasets whose name or description contains ``q`` (any case), sorted by ``sort``
    (descending; ``name`` ascending), one page of them.

    Raises:
        UsageError: an unknown sort or a page out of range.
    """
    if sort not in SORTS:
        raise UsageError(f"sort must be one of {', '.join(SORTS)}")
    page, per_page = page_bounds(page, per_page)
    holders = _counts(s, HolderRow.dataset_id, HolderRow.balance != 0)
    models = _counts(s, ModelRow.dataset_id)
    open_ = _counts(s, ProposalRow.dataset_id, ProposalRow.status == "open")
    rows = s.execute(select(DatasetRow.dataset_id, DatasetRow.name, DatasetRow.symbol,
                            DatasetRow.card_cid, DatasetRow.item_count, DatasetRow.entry_count,
                            DatasetRow.total_distributed, DatasetRow.created_block)).all()
    needle = q.strip().casefold()
    cards = []
    for ds_id, name, symbol, card_cid, items, entries, revenue, block in rows:
        description = card_of(store, card_cid).description
        if needle and needle not in name.casefold() and needle not in description.casefold():
            continue
        cards.append(DatasetCard(ds_id, name, symbol, description, items, entries,
                                 holders.get(ds_id, 0), models.get(ds_id, 0), revenue,
                                 open_.get(ds_id, 0), block))
    key = {
        "newest": lambda c: (c.dataset_id,),
        "size": lambda c: (c.items, c.dataset_id),
        "shareholders": lambda c: (c.shareholders, c.dataset_id),
        "models": lambda c: (c.models, c.dataset_id),
        "revenue": lambda c: (c.revenue_wei, c.dataset_id),
    }.get(sort)
    if key is None:
        cards.sort(key=lambda c: c.name)
    else:
        cards.sort(key=key, reverse=True)
    start = (page - 1) * per_page
    return DatasetList(tuple(cards[start:start + per_page]), len(cards), page, per_page, q, sort)


# -- one dataset ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RulesView:
    """The rules a dataset was created with (fixed on chain)."""

    quorum_bps: int
    approval_bps: int
    voting_period: int
    stake_wei: Wei
    reward_r0: Shares
    reward_n0: int
    training_fee_wei: Wei
    min_royalty_bps: int


@dataclass(frozen=True)
class EntryView:
    """An accepted registry entry (index 0 is the seed, ``proposal_id`` 0)."""

    index: int
    items: int
    contributor: str
    shares_minted: Shares
    proposal_id: int
    manifest_cid: str
    block_number: int


@dataclass(frozen=True)
class ShareholderView:
    """A holder with a positive balance; ``share_bps`` of the supply (floored)."""

    account: str
    balance: Shares
    share_bps: int


@dataclass(frozen=True)
class ModelView:
    """A model trained on the dataset. ``best_metric_bps`` is the attested best (``None``
    before one); ``latest_metric_bps`` the newest checkpoint's metric as submitted."""

    model_id: int
    name: str
    owner: str
    best_checkpoint: int
    best_metric_bps: int | None
    checkpoints: int
    latest_metric_bps: int | None


@dataclass(frozen=True)
class ImpactPoint:
    """One checkpoint on the impact chart: metric against the snapshot's size in items."""

    model_id: int
    model: str
    checkpoint: int
    entries: int
    items: int
    metric_bps: int
    attested: bool


@dataclass(frozen=True)
class ProposalLine:
    """A proposal in a dataset's list."""

    proposal_id: int
    proposer: str
    items: int
    status: str
    yes: Shares
    no: Shares
    score_bps: int | None
    deadline: int


@dataclass(frozen=True)
class SourceView:
    """Dividends of one source: distributed to holders, held by the payer, payments."""

    source: str
    distributed_wei: Wei
    held_wei: Wei
    payments: int


@dataclass(frozen=True)
class PaymentView:
    """One dividend payment, with the running total of all sources after it."""

    source: str
    amount_wei: Wei
    block_number: int
    block_time: int | None
    cumulative_wei: Wei


@dataclass(frozen=True)
class DatasetDetail:
    """Everything the dataset page shows."""

    dataset_id: int
    name: str
    symbol: str
    description: str
    labels: tuple[str, ...]
    card_cid: str
    card_ok: bool
    share_token: str
    initiator: str
    evaluator: str | None
    rules: RulesView
    items: int
    entry_count: int
    validation_items: int | None
    total_supply: Shares
    total_distributed_wei: Wei
    total_withdrawn_wei: Wei
    created_block: int
    entries: tuple[EntryView, ...]
    shareholder_count: int
    shareholders: tuple[ShareholderView, ...]
    models: tuple[ModelView, ...]
    impact: tuple[ImpactPoint, ...]
    proposals: tuple[ProposalLine, ...]
    proposal_total: int
    proposal_counts: dict[str, int]
    page: int
    per_page: int
    sources: tuple[SourceView, ...]
    payments: tuple[PaymentView, ...]
    payment_count: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.proposal_total // self.per_page))


def dataset_by_name(s: Session, name: str) -> DatasetRow:
    """The indexed dataset called ``name``.

    Raises:
        NotFoundError: none (the message quotes the name with ``repr``: never markup).
    """
    printable = name.isprintable() and len(name) <= 64  # a NUL would fail on PostgreSQL
    row = s.execute(select(DatasetRow).where(DatasetRow.name == name)).scalar_one_or_none() \
        if printable else None
    if row is None:
        raise NotFoundError(f"no dataset named {name!r}")
    return row


def dataset_detail(s: Session, store: BlobStore, name: str, *, page: int = 1,
                   per_page: int = 20) -> DatasetDetail:
    """The dataset page of ``name``; ``page`` pages its proposals (open ones first, then the
    newest).

    Raises:
        NotFoundError: no such dataset. UsageError: a page out of range.
    """
    page, per_page = page_bounds(page, per_page)
    ds = dataset_by_name(s, name)
    ds_id = ds.dataset_id
    card = card_of(store, ds.card_cid)
    entries = tuple(EntryView(*r) for r in s.execute(
        select(EntryRow.index, EntryRow.item_count, EntryRow.contributor, EntryRow.shares_minted,
               EntryRow.proposal_id, EntryRow.manifest_cid, EntryRow.block_number)
        .where(EntryRow.dataset_id == ds_id).order_by(EntryRow.index.desc())
        .limit(MAX_ENTRIES)))
    holder_rows = s.execute(select(HolderRow.account, HolderRow.balance).where(
        HolderRow.dataset_id == ds_id, HolderRow.balance != 0)).all()
    supply = ds.total_supply
    holders = sorted((ShareholderView(a, b, b * 10_000 // supply if supply else 0)
                      for a, b in holder_rows), key=lambda h: (-h.balance, h.account))
    model_rows = list(s.execute(select(ModelRow).where(ModelRow.dataset_id == ds_id)
                                .order_by(ModelRow.model_id)).scalars())
    cps = checkpoints_of(s, model_rows)
    models = tuple(ModelView(
        m.model_id, m.name, m.owner, m.best_checkpoint,
        m.best_metric_bps if m.best_checkpoint else None, m.checkpoint_count,
        cps[m.model_id][-1].metric_bps if cps[m.model_id] else None) for m in model_rows)
    impact = tuple(
        ImpactPoint(c.model_id, m.name, c.checkpoint, c.entries, c.items,
                    c.attested_metric_bps if c.attested_metric_bps is not None else c.metric_bps,
                    c.attested)
        for m in model_rows for c in cps[m.model_id])
    counts = {str(k): int(n) for k, n in s.execute(
        select(ProposalRow.status, func.count()).where(ProposalRow.dataset_id == ds_id)
        .group_by(ProposalRow.status))}
    proposals = _proposal_page(s, ds_id, counts.get("open", 0), (page - 1) * per_page,
                               per_page)
    source_rows = {r.source: r for r in s.execute(
        select(DividendSourceRow).where(DividendSourceRow.dataset_id == ds_id)).scalars()}
    sources = tuple(SourceView(src, r.distributed, r.held, r.payments) if r is not None
                    else SourceView(src, 0, 0, 0)
                    for src, r in ((src, source_rows.get(src)) for src in SOURCES))
    return DatasetDetail(
        dataset_id=ds_id, name=ds.name, symbol=ds.symbol, description=card.description,
        labels=card.labels, card_cid=ds.card_cid, card_ok=card.ok, share_token=ds.share_token,
        initiator=ds.initiator, evaluator=None if ds.evaluator == ZERO else ds.evaluator,
        rules=RulesView(ds.quorum_bps, ds.approval_bps, ds.voting_period, ds.stake,
                        ds.reward_r0, ds.reward_n0, ds.training_fee, ds.min_royalty_bps),
        items=ds.item_count, entry_count=ds.entry_count,
        validation_items=card.validation_items, total_supply=supply,
        total_distributed_wei=ds.total_distributed, total_withdrawn_wei=ds.total_withdrawn,
        created_block=ds.created_block, entries=entries, shareholder_count=len(holders),
        shareholders=tuple(holders[:MAX_HOLDERS]), models=models, impact=impact,
        proposals=proposals, proposal_total=sum(counts.values()), proposal_counts=counts,
        page=page, per_page=per_page, sources=sources,
        payments=_payments(s, ds_id, ds.total_distributed),
        payment_count=sum(r.payments for r in sources),
    )


def _proposal_page(s: Session, ds_id: int, n_open: int, offset: int,
                   limit: int) -> tuple[ProposalLine, ...]:
    """Proposals ``offset..offset+limit`` of a dataset, open ones first, each group newest
    first: two queries that walk the dataset's index in id order (no sort of every row)."""
    cols = (ProposalRow.proposal_id, ProposalRow.proposer, ProposalRow.item_count,
            ProposalRow.status, ProposalRow.yes, ProposalRow.no, ProposalRow.score_bps,
            ProposalRow.deadline)
    out: list[ProposalLine] = []
    if offset < n_open:
        out += [ProposalLine(*r) for r in s.execute(
            select(*cols).where(ProposalRow.dataset_id == ds_id, ProposalRow.status == "open")
            .order_by(ProposalRow.proposal_id.desc()).offset(offset).limit(limit))]
    if len(out) < limit:
        out += [ProposalLine(*r) for r in s.execute(
            select(*cols).where(ProposalRow.dataset_id == ds_id, ProposalRow.status != "open")
            .order_by(ProposalRow.proposal_id.desc())
            .offset(max(0, offset - n_open)).limit(limit - len(out)))]
    return tuple(out)


def _payments(s: Session, ds_id: int, total: int) -> tuple[PaymentView, ...]:
    """The dataset's latest :data:`MAX_PAYMENTS` payments in chain order, each with the running
    total after it (counted back from ``total``, the dataset's ``total_distributed``: the
    payments of a dataset add up to it, so the query stays bounded however many there are)."""
    rows = s.execute(select(DividendPaymentRow.source, DividendPaymentRow.amount,
                            DividendPaymentRow.block_number, DividendPaymentRow.block_time)
                     .where(DividendPaymentRow.dataset_id == ds_id)
                     .order_by(DividendPaymentRow.block_number.desc(),
                               DividendPaymentRow.id.desc())
                     .limit(MAX_PAYMENTS)).all()
    out = []
    for source, amount, block, when in rows:
        out.append(PaymentView(source, amount, block, when, total))
        total -= amount
    return tuple(reversed(out))
