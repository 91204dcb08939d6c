"""Proposing a batch, reading proposals with every check a voter relies on, voting, finalizing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import NotFoundError, UsageError
from databright.index.models import Evaluation, IngestReport
from databright.market.context import Deployment
from databright.market.datasets import card_of, dataset_id

if TYPE_CHECKING:
    from databright.market.listings import ProposalSummary

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.chain.data_market import ProposalInfo


@dataclass(frozen=True)
class Proposed:
    """A batch put to a vote: what went in, what ingestion left out, and the stake paid."""

    proposal_id: int
    dataset: str
    manifest_cid: str
    merkle_root: bytes
    items: int
    duplicates: int
    refused: int
    labels: dict[str, int]
    stake: int
    report_cid: str


@dataclass(frozen=True)
class IngestSummary:
    """What the proposer's ingestion kept (``items``) and left out, from the stored report."""

    items: int | None
    duplicates: int
    refused: int
    labels: dict[str, int]


@dataclass(frozen=True)
class EvaluationSummary:
    """The headline of a stored evaluation report."""

    accuracy_before: float | None
    accuracy_after: float | None
    gain: float | None
    new: int | None
    duplicates: int | None
    near_duplicates: int | None
    unknown_labels: int | None
    score_bps: int | None
    suspects: int
    report_cid: str


@dataclass(frozen=True)
class ManifestCheck:
    """A proposal's manifest recomputed from the store and compared with the chain."""

    ok: bool
    problems: tuple[str, ...]
    labels: dict[str, int]
    recomputed_items: int | None


@dataclass(frozen=True)
class ProposalView:
    """A proposal as a voter needs it: the chain's record, the tally, and the checks."""

    proposal_id: int
    dataset: str
    proposer: str
    status: str
    manifest_cid: str
    merkle_root: bytes
    items: int
    stake: int
    snapshot: int
    snapshot_supply: int
    deadline: int
    seconds_left: int
    yes: int
    no: int
    quorum_needed: int
    quorum_progress: float | None
    approval: float | None
    approval_needed: float
    score_bps: int | None
    shares_minted: int
    awaiting_finalize: bool
    ingest: IngestSummary | None
    evaluation: EvaluationSummary | None
    check: ManifestCheck | None


@dataclass(frozen=True)
class VoteCast:
    """A vote as the chain counted it: ``weight`` is the voter's shares at the snapshot."""

    proposal_id: int
    voter: str
    support: bool
    weight: int


@dataclass(frozen=True)
class Finalized:
    """A proposal's outcome once finalized."""

    proposal_id: int
    status: str
    shares_minted: int
    yes: int
    no: int


def existing_cids(dep: Deployment, ds_id: int, cids: Iterable[str], *,
                  include_open: bool = True) -> set[str]:
    """Which of ``cids`` are already in the dataset (accepted entries), held out for validation,
    or (with ``include_open``) pending in its open proposals: none of them may earn shares again.

    One indexed query per chunk of CIDs (the index's item table); old manifests are not read.

    Raises:
        IntegrityError: an accepted entry's manifest is missing from the store.
    """
    from databright.market.listings import known_cids

    return known_cids(dep, ds_id, cids, include_pending=include_open)


def _without_known(dep: Deployment, ds_id: int, result: Any) -> Any:
    """``result`` with the items the dataset already has moved to its duplicates."""
    from databright.storage.ingest import Duplicate
    from databright.storage.manifest import write_manifest
    from databright.storage.merkle import MerkleTree

    known = existing_cids(dep, ds_id, [it.cid for it in result.items])
    if not known:
        return result
    fresh = [it for it in result.items if it.cid not in known]
    dups = [Duplicate(it.name, it.cid, "already in dataset") for it in result.items
            if it.cid in known]
    labels: dict[str, int] = {}
    for it in fresh:
        labels[it.label] = labels.get(it.label, 0) + 1
    return dataclasses.replace(
        result, items=fresh, duplicates=sorted([*result.duplicates, *dups], key=lambda d: d.name),
        labels=labels,
        manifest_cid=write_manifest(dep.store, fresh) if fresh else None,
        merkle_root=MerkleTree.from_items(fresh).root if fresh else None,
    )


def stage_batch(dep: Deployment, ds_id: int, dataset_name: str, labels: set[str],
                source: Path, *, label_column: str | None = None,
                max_file_size: int | None = None, progress: bool = False, where: str = "",
                guard: AbstractContextManager[Any] | None = None) -> tuple[Any, str]:
    """Ingest ``source`` into the store, keep only the items the dataset does not have, and
    store the ingestion report (store + index, keyed by the manifest CID) before any
    transaction, so a crash at any point leaves nothing that refers to a missing blob.

    ``guard`` (a web server's chain lock) is held around the index's duplicate check only, not
    while the files are ingested. Returns the ingestion result and the report's CID.

    Raises:
        UsageError: nothing new to propose (``where`` names the source in the message).
    """
    from databright.storage.ingest import DEFAULT_MAX_FILE_SIZE, ingest

    result = ingest(source, dep.store, label_column=label_column, label_set=labels or None,
                    progress=progress, max_file_size=max_file_size or DEFAULT_MAX_FILE_SIZE)
    with guard if guard is not None else nullcontext():
        result = _without_known(dep, ds_id, result)
    if not result.items or result.manifest_cid is None or result.merkle_root is None:
        dup, ref = len(result.duplicates), len(result.refused)
        raise UsageError(
            f"nothing new to propose{where}: {dup} duplicate and {ref} refused items"
            + (f" (first refused: {result.refused[0][0]}: {result.refused[0][-1]})" if ref else "")
        )
    report = result.to_dict()
    report_cid = dep.store.put_bytes(json.dumps(report, sort_keys=True, default=str).encode())
    with dep.index.session() as s:
        s.merge(IngestReport(manifest_cid=result.manifest_cid, dataset_name=dataset_name,
                             report_cid=report_cid,
                             report=json.loads(json.dumps(report, default=str))))
    return result, report_cid


def propose(
    dep: Deployment,
    sender: Signer,
    dataset: str,
    source: Path,
    *,
    label_column: str | None = None,
    max_file_size: int | None = None,
    progress: bool = False,
) -> Proposed:
    """Ingest ``source``, keep only new items, and put the batch to a vote with the stake.

    The ingestion report is stored (store + index) before the transaction, keyed by the
    manifest CID, so a crash at any point leaves nothing that refers to a missing blob.
    """
    ds_id = dataset_id(dep, dataset)
    info = dep.market.get_dataset(ds_id)
    labels = set(card_of(dep, ds_id).get("labels", []))
    result, report_cid = stage_batch(dep, ds_id, info.name, labels, Path(source),
                                     label_column=label_column, max_file_size=max_file_size,
                                     progress=progress, where=f" in {source}")
    proposal_id, _ = dep.market.propose(
        sender,
        dataset_id=ds_id,
        manifest_cid=result.manifest_cid,
        merkle_root=result.merkle_root,
        item_count=len(result.items),
        value=info.stake,
    )
    return Proposed(
        proposal_id=proposal_id,
        dataset=info.name,
        manifest_cid=result.manifest_cid,
        merkle_root=bytes(result.merkle_root),
        items=len(result.items),
        duplicates=len(result.duplicates),
        refused=len(result.refused),
        labels=dict(result.labels),
        stake=info.stake,
        report_cid=report_cid,
    )


def get_proposal(dep: Deployment, proposal_id: int) -> ProposalInfo:
    """The chain's record of proposal ``proposal_id`` (or a NotFoundError saying how many exist)."""
    if not 0 < proposal_id <= dep.market.proposal_count():
        raise NotFoundError(
            f"no proposal #{proposal_id} (there are {dep.market.proposal_count()}): "
            "list them with `databright proposals`"
        )
    return dep.market.get_proposal(proposal_id)


def show_proposal(dep: Deployment, proposal_id: int, *, check: bool = True) -> ProposalView:
    """The proposal as a voter needs it; with ``check``, the manifest is recomputed from the store
    and any disagreement with the chain (root, count, missing blobs) is flagged."""
    p = get_proposal(dep, proposal_id)
    info = dep.market.get_dataset(p.dataset_id)
    now = dep.chain.next_block_time()  # the time a vote or finalize sent now would see
    voted = p.yes + p.no
    supply = p.snapshot_supply or 0
    quorum_needed = -(-info.quorum_bps * supply // 10_000)
    ingest: IngestSummary | None = None
    evaluation: EvaluationSummary | None = None
    with dep.index.session() as s:
        ingest_row = s.get(IngestReport, p.manifest_cid)
        if ingest_row is not None:
            rep = ingest_row.report
            ingest = IngestSummary(
                items=rep.get("item_count"),
                duplicates=len(rep.get("duplicates", [])),
                refused=len(rep.get("refused", [])),
                labels=dict(rep.get("labels", {})),
            )
        ev = s.get(Evaluation, proposal_id)
        if ev is not None:
            evaluation = _evaluation_summary(ev.report, ev.report_cid)
    return ProposalView(
        proposal_id=proposal_id,
        dataset=info.name,
        proposer=p.proposer,
        status=p.status,
        manifest_cid=p.manifest_cid,
        merkle_root=bytes(p.merkle_root),
        items=p.item_count,
        stake=p.stake,
        snapshot=p.snapshot,
        snapshot_supply=supply,
        deadline=p.deadline,
        seconds_left=max(0, p.deadline - now),
        yes=p.yes,
        no=p.no,
        quorum_needed=quorum_needed,
        quorum_progress=(voted / quorum_needed) if quorum_needed else None,
        approval=(p.yes / voted) if voted else None,
        approval_needed=info.approval_bps / 10_000,
        score_bps=p.score_bps if p.scored else None,
        shares_minted=p.shares_minted,
        awaiting_finalize=p.status == "open" and now >= p.deadline,
        ingest=ingest,
        evaluation=evaluation,
        check=check_manifest(dep, p) if check else None,
    )


#: how :func:`databright.storage.verify.verify_entries` names a problem, as a voter reads it
_LOUD = {
    "missing-manifest": "manifest unreadable",
    "corrupt-manifest": "manifest unreadable",
    "invalid-manifest": "manifest unreadable",
    "count-mismatch": "ITEM COUNT MISMATCH",
    "root-mismatch": "MERKLE ROOT MISMATCH",
}


def check_manifest(dep: Deployment, p: ProposalInfo) -> ManifestCheck:
    """Check a proposal's manifest against the chain with the same function that verifies a
    dataset's accepted entries (:func:`~databright.storage.verify.verify_entries`), and, while
    it is open, that none of its items is already in the dataset or its validation split."""
    from databright.storage.manifest import read_manifest
    from databright.storage.verify import verify_entries

    report = verify_entries(dep.store, [p])
    problems = [f"{_LOUD.get(pr.kind, pr.kind)}: {pr.detail}" for pr in report.problems
                if not pr.kind.endswith("-blob")]
    bad_blobs = [pr.cid for pr in report.problems if pr.kind.endswith("-blob")]
    if bad_blobs:
        problems.append(f"{len(bad_blobs)} blobs missing or corrupt in the store "
                        f"(first: {bad_blobs[0]})")
    if any(pr.kind.endswith("-manifest") for pr in report.problems):
        return ManifestCheck(ok=False, problems=tuple(problems), labels={}, recomputed_items=None)
    items = read_manifest(dep.store, p.manifest_cid)
    if p.status == "open":
        overlap = existing_cids(dep, p.dataset_id, [it.cid for it in items], include_open=False)
        if overlap:
            problems.append(f"{len(overlap)} items are already in the dataset or its "
                            "validation split: they must not earn shares twice")
    labels: dict[str, int] = {}
    for it in items:
        labels[it.label] = labels.get(it.label, 0) + 1
    return ManifestCheck(ok=not problems, problems=tuple(problems), labels=labels,
                         recomputed_items=len(items))


def list_proposals(dep: Deployment, dataset: str | None = None,
                   open_only: bool = False) -> list[ProposalSummary]:
    """Proposals (of one dataset, only open ones), from the index."""
    from databright.market.listings import proposal_summaries

    return proposal_summaries(dep, dataset_id(dep, dataset) if dataset else None, open_only)


def vote(dep: Deployment, sender: Signer, proposal_id: int, support: bool) -> VoteCast:
    """Vote with ``sender``'s shares at the proposal's snapshot."""
    get_proposal(dep, proposal_id)
    dep.market.vote(sender, proposal_id, support)
    voted = dep.market.vote_of(proposal_id, sender.address)
    return VoteCast(proposal_id=proposal_id, voter=sender.address, support=voted.support,
                    weight=voted.weight)


def finalize(dep: Deployment, sender: Signer, proposal_id: int) -> Finalized:
    """Close a proposal whose outcome is decided or whose deadline passed."""
    get_proposal(dep, proposal_id)
    dep.market.finalize(sender, proposal_id)
    p = dep.market.get_proposal(proposal_id)
    return Finalized(proposal_id=proposal_id, status=p.status, shares_minted=p.shares_minted,
                     yes=p.yes, no=p.no)


def _evaluation_summary(report: Mapping[str, Any], cid: str) -> EvaluationSummary:
    return EvaluationSummary(
        accuracy_before=report.get("accuracy_before"),
        accuracy_after=report.get("accuracy_after"),
        gain=report.get("gain"),
        new=report.get("new"),
        duplicates=report.get("duplicates"),
        near_duplicates=report.get("near_duplicates"),
        unknown_labels=report.get("unknown_labels"),
        score_bps=report.get("score_bps"),
        suspects=len(report.get("suspects", [])),
        report_cid=cid,
    )
