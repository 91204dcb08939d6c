"""A proposal's page, from the index: its record, the evaluation report, the tally against the
dataset's quorum and approval, whether it can be finalized now, and the gallery of its items.

The tally mirrors ``DataMarket._decide`` exactly (integer arithmetic on the same figures), so
the finalize button shows when, and only when, the contract would accept ``finalize``. Before
a proposal is finalized the index has no snapshot supply; it is the shares minted at or before
the snapshot block (the token only mints, at registry entries, and never burns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from databright.errors import NotFoundError, StorageError
from databright.index.cache import DatasetRow, EntryRow, ProposalRow, VoteRow
from databright.index.models import Evaluation, IngestReport
from databright.market.views.amounts import Shares, Wei
from databright.market.views.blobs import ManifestItem, manifest_items, manifest_labels
from databright.market.views.datasets import ZERO, page_bounds
from databright.storage.cas import BlobStore

BPS = 10_000
MAX_VOTES = 100


@dataclass(frozen=True)
class Tally:
    """Votes against the rules. ``quorum_progress`` = (yes + no) / supply as a fraction of
    the quorum (1.0: met); ``approval`` = yes / (yes + no) (``None`` before any vote)."""

    yes: Shares
    no: Shares
    snapshot_supply: Shares
    quorum_bps: int
    approval_bps: int
    quorum_needed: Shares
    quorum_met: bool
    quorum_progress: float | None
    approval: float | None
    #: the status ``finalize`` would give now (``open``: it would revert)
    outcome_now: str
    finalizable: bool


def decide(yes: int, no: int, supply: int, quorum_bps: int, approval_bps: int, *,
           closed: bool, scored: bool, has_evaluator: bool) -> str:
    """``DataMarket._decide``: the status a finalize now gives, ``open`` if undecided."""
    quorum = (yes + no) * BPS >= quorum_bps * supply
    if closed:
        if not quorum:
            return "expired"
        return "accepted" if yes * BPS >= approval_bps * (yes + no) else "rejected"
    if not quorum:
        return "open"
    if yes * BPS >= approval_bps * supply:
        return "accepted" if scored or not has_evaluator else "open"
    if (supply - no) * BPS < approval_bps * supply:
        return "rejected"
    return "open"


def tally_of(p: ProposalRow, ds: DatasetRow, supply: int, now: int) -> Tally:
    """The tally of ``p`` at chain time ``now``."""
    voted = p.yes + p.no
    needed = -(-ds.quorum_bps * supply // BPS)
    outcome = decide(p.yes, p.no, supply, ds.quorum_bps, ds.approval_bps,
                     closed=now >= p.deadline, scored=p.score_bps is not None,
                     has_evaluator=ds.evaluator != ZERO) if p.status == "open" else p.status
    return Tally(
        yes=p.yes, no=p.no, snapshot_supply=supply, quorum_bps=ds.quorum_bps,
        approval_bps=ds.approval_bps, quorum_needed=needed,
        quorum_met=voted * BPS >= ds.quorum_bps * supply,
        quorum_progress=voted / needed if needed else None,
        approval=p.yes / voted if voted else None,
        outcome_now=outcome, finalizable=p.status == "open" and outcome != "open",
    )


@dataclass(frozen=True)
class EvaluationView:
    """The headline of the stored evaluation report (``None`` fields: not in the report)."""

    report_cid: str
    method: str | None
    embedding: str | None
    new: int | None
    duplicates: int | None
    near_duplicates: int | None
    unknown_labels: int | None
    accuracy_before: float | None
    accuracy_after: float | None
    gain: float | None
    score_bps: int | None
    suspects: tuple[str, ...]


@dataclass(frozen=True)
class VoteView:
    voter: str
    support: bool
    weight: Shares


@dataclass(frozen=True)
class ProposalDetail:
    """Everything the proposal page shows. ``seconds_left`` is measured on the chain's clock
    the page was given; ``labels`` counts the manifest's items per label (empty while the
    manifest cannot be read: ``manifest_error`` says why)."""

    proposal_id: int
    dataset_id: int
    dataset: str
    proposer: str
    status: str
    manifest_cid: str
    merkle_root: str
    items: int
    stake_wei: Wei
    snapshot: int
    deadline: int
    seconds_left: int
    score_bps: int | None
    shares_minted: Shares
    created_block: int
    finalized_block: int | None
    tally: Tally
    evaluation: EvaluationView | None
    ingest_duplicates: int | None
    ingest_refused: int | None
    votes: tuple[VoteView, ...]
    vote_count: int
    labels: dict[str, int]
    manifest_error: str | None
    viewer_vote: VoteView | None
    can_vote: bool


def snapshot_supply(s: Session, p: ProposalRow) -> int:
    """The share supply at the end of the proposal's snapshot block (the chain's figure once
    finalized; before, the entries minted at or before that block)."""
    if p.snapshot_supply is not None:
        return p.snapshot_supply
    minted = s.execute(select(EntryRow.shares_minted).where(
        EntryRow.dataset_id == p.dataset_id, EntryRow.block_number <= p.snapshot)).scalars()
    return sum(minted)


def proposal_row(s: Session, proposal_id: int) -> ProposalRow:
    """The indexed proposal ``proposal_id`` (or a NotFoundError)."""
    row = s.get(ProposalRow, proposal_id) if 0 < proposal_id < 2**63 else None
    if row is None:
        raise NotFoundError(f"no proposal #{proposal_id} in the index")
    return row


def _evaluation(report: dict[str, Any], cid: str) -> EvaluationView:
    def num(key: str) -> Any:
        value = report.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def text(key: str) -> str | None:
        value = report.get(key)
        return value if isinstance(value, str) else None

    suspects = report.get("suspects")
    return EvaluationView(
        report_cid=cid, method=text("method"), embedding=text("embedding"), new=num("new"),
        duplicates=num("duplicates"), near_duplicates=num("near_duplicates"),
        unknown_labels=num("unknown_labels"), accuracy_before=num("accuracy_before"),
        accuracy_after=num("accuracy_after"), gain=num("gain"), score_bps=num("score_bps"),
        suspects=tuple(str(c) for c in suspects) if isinstance(suspects, list) else (),
    )


def proposal_detail(s: Session, store: BlobStore, proposal_id: int, *, now: int,
                    viewer: str | None = None) -> ProposalDetail:
    """The proposal page of ``proposal_id`` at chain time ``now`` for ``viewer`` (an address).

    Raises:
        NotFoundError: no such proposal.
    """
    p = proposal_row(s, proposal_id)
    ds = s.get(DatasetRow, p.dataset_id)
    if ds is None:
        raise NotFoundError(f"proposal #{proposal_id} names dataset {p.dataset_id}, not indexed")
    ev = s.get(Evaluation, proposal_id)
    ingest = s.get(IngestReport, p.manifest_cid)
    vote_rows = s.execute(select(VoteRow.voter, VoteRow.support, VoteRow.weight)
                          .where(VoteRow.proposal_id == proposal_id)
                          .order_by(VoteRow.block_number, VoteRow.voter).limit(MAX_VOTES)).all()
    vote_count = s.execute(select(func.count()).select_from(VoteRow)
                           .where(VoteRow.proposal_id == proposal_id)).scalar_one()
    mine = None
    if viewer:
        row = s.get(VoteRow, (proposal_id, viewer))
        mine = VoteView(row.voter, row.support, row.weight) if row is not None else None
    labels: dict[str, int] = {}
    error = None
    try:
        labels = manifest_labels(store, p.manifest_cid)
    except StorageError as exc:
        error = str(exc)
    rep = ingest.report if ingest is not None and isinstance(ingest.report, dict) else None
    is_open = p.status == "open" and now < p.deadline
    return ProposalDetail(
        proposal_id=p.proposal_id, dataset_id=ds.dataset_id, dataset=ds.name,
        proposer=p.proposer, status=p.status, manifest_cid=p.manifest_cid,
        merkle_root=p.merkle_root, items=p.item_count, stake_wei=p.stake, snapshot=p.snapshot,
        deadline=p.deadline, seconds_left=max(0, p.deadline - now), score_bps=p.score_bps,
        shares_minted=p.shares_minted, created_block=p.created_block,
        finalized_block=p.finalized_block, tally=tally_of(p, ds, snapshot_supply(s, p), now),
        evaluation=_evaluation(ev.report, ev.report_cid) if ev is not None
        and isinstance(ev.report, dict) else None,
        ingest_duplicates=len(rep.get("duplicates") or []) if rep else None,
        ingest_refused=len(rep.get("refused") or []) if rep else None,
        votes=tuple(VoteView(*r) for r in vote_rows), vote_count=vote_count,
        labels=labels, manifest_error=error, viewer_vote=mine,
        can_vote=bool(viewer) and mine is None and is_open,
    )


# -- the gallery ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GalleryItem:
    """An item of the gallery: ``suspect`` when the evaluation flagged it."""

    cid: str
    label: str
    name: str
    media_type: str
    size: int
    suspect: bool


@dataclass(frozen=True)
class Gallery:
    """One page of a proposal's items (``label``: the filter, ``None`` for all)."""

    proposal_id: int
    items: tuple[GalleryItem, ...]
    total: int
    page: int
    per_page: int
    label: str | None
    labels: tuple[str, ...]
    suspects: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def gallery(s: Session, store: BlobStore, proposal_id: int, *, label: str | None = None,
            suspects_only: bool = False, page: int = 1, per_page: int = 60) -> Gallery:
    """A page of the proposal's items, suspects first, optionally of one ``label``.

    Raises:
        NotFoundError: no such proposal. StorageError: its manifest cannot be read.
        UsageError: a page out of range.
    """
    page, per_page = page_bounds(page, per_page)
    p = proposal_row(s, proposal_id)
    ev = s.get(Evaluation, proposal_id)
    flagged = set(_evaluation(ev.report, ev.report_cid).suspects) if ev is not None \
        and isinstance(ev.report, dict) else set()
    items: tuple[ManifestItem, ...] = manifest_items(store, p.manifest_cid)
    labels = tuple(sorted({it.label for it in items}))
    chosen = [it for it in items if (label is None or it.label == label)
              and (not suspects_only or it.cid in flagged)]
    chosen.sort(key=lambda it: it.cid not in flagged)  # stable: CID order within each group
    start = (page - 1) * per_page
    shown = tuple(GalleryItem(it.cid, it.label, it.name, it.media_type, it.size,
                              it.cid in flagged) for it in chosen[start:start + per_page])
    return Gallery(proposal_id, shown, len(chosen), page, per_page, label, labels,
                   sum(1 for it in items if it.cid in flagged))
