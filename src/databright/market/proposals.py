"""Proposing a batch, reading proposals with every check a voter relies on, voting, finalizing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import NotFoundError, StorageError, UsageError
from databright.index.models import Evaluation, IngestReport
from databright.market.context import Deployment
from databright.market.datasets import card_of, dataset_id

if TYPE_CHECKING:
    from databright.market.listings import ProposalSummary


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


def propose(
    dep: Deployment,
    sender: Any,
    dataset: str,
    source: Path,
    *,
    label_column: str | None = None,
    max_file_size: int | None = None,
    progress: bool = False,
) -> dict:
    """Ingest ``source``, keep only new items, and put the batch to a vote with the stake.

    The ingestion report is stored (store + index) before the transaction, keyed by the
    manifest CID, so a crash at any point leaves nothing that refers to a missing blob.
    """
    from databright.storage.ingest import ingest

    ds_id = dataset_id(dep, dataset)
    info = dep.market.get_dataset(ds_id)
    labels = set(card_of(dep, ds_id).get("labels", []))
    result = ingest(
        Path(source),
        dep.store,
        label_column=label_column,
        label_set=labels or None,
        progress=progress,
        **({"max_file_size": max_file_size} if max_file_size else {}),
    )
    result = _without_known(dep, ds_id, result)
    report = result.to_dict()
    if not result.items:
        dup, ref = len(result.duplicates), len(result.refused)
        raise UsageError(
            f"nothing new to propose in {source}: {dup} duplicate and {ref} refused items"
            + (f" (first refused: {result.refused[0][0]}: {result.refused[0][-1]})" if ref else "")
        )
    report_cid = dep.store.put_bytes(json.dumps(report, sort_keys=True, default=str).encode())
    with dep.index.session() as s:
        s.merge(
            IngestReport(
                manifest_cid=result.manifest_cid,
                dataset_name=info.name,
                report_cid=report_cid,
                report=json.loads(json.dumps(report, default=str)),
            )
        )
    proposal_id, _ = dep.market.propose(
        sender,
        dataset_id=ds_id,
        manifest_cid=result.manifest_cid,
        merkle_root=result.merkle_root,
        item_count=len(result.items),
        value=info.stake,
    )
    return {
        "proposal": proposal_id,
        "dataset": info.name,
        "manifest_cid": result.manifest_cid,
        "merkle_root": "0x" + bytes(result.merkle_root).hex(),
        "items": len(result.items),
        "new": len(result.items),
        "duplicates": len(result.duplicates),
        "refused": len(result.refused),
        "labels": dict(result.labels),
        "stake": info.stake,
        "report_cid": report_cid,
    }


def get_proposal(dep: Deployment, proposal_id: int) -> Any:
    if not 0 < proposal_id <= dep.market.proposal_count():
        raise NotFoundError(
            f"no proposal #{proposal_id} (there are {dep.market.proposal_count()}): "
            "list them with `databright proposals`"
        )
    return dep.market.get_proposal(proposal_id)


def show_proposal(dep: Deployment, proposal_id: int, *, check: bool = True) -> dict:
    """The proposal as a voter needs it; with ``check``, the manifest is recomputed from the store
    and any disagreement with the chain (root, count, missing blobs) is flagged."""
    p = get_proposal(dep, proposal_id)
    info = dep.market.get_dataset(p.dataset_id)
    now = dep.chain.next_block_time()  # the time a vote or finalize sent now would see
    voted = p.yes + p.no
    supply = p.snapshot_supply or 0
    quorum_needed = -(-info.quorum_bps * supply // 10_000)
    out: dict[str, Any] = {
        "id": proposal_id,
        "dataset": info.name,
        "proposer": p.proposer,
        "status": p.status,
        "manifest_cid": p.manifest_cid,
        "merkle_root": "0x" + bytes(p.merkle_root).hex(),
        "items": p.item_count,
        "stake": p.stake,
        "snapshot": p.snapshot,
        "snapshot_supply": supply,
        "deadline": p.deadline,
        "seconds_left": max(0, p.deadline - now),
        "yes": p.yes,
        "no": p.no,
        "quorum_needed": quorum_needed,
        "quorum_progress": (voted / quorum_needed) if quorum_needed else None,
        "approval": (p.yes / voted) if voted else None,
        "approval_needed": info.approval_bps / 10_000,
        "score_bps": p.score_bps if p.scored else None,
        "shares_minted": p.shares_minted,
        "awaiting_finalize": p.status == "open" and now >= p.deadline,
    }
    with dep.index.session() as s:
        ingest_row = s.get(IngestReport, p.manifest_cid)
        if ingest_row is not None:
            rep = ingest_row.report
            out["ingest"] = {
                "new": rep.get("item_count"),
                "duplicates": len(rep.get("duplicates", [])),
                "refused": len(rep.get("refused", [])),
                "labels": rep.get("labels", {}),
            }
        ev = s.get(Evaluation, proposal_id)
        if ev is not None:
            out["evaluation"] = _evaluation_summary(ev.report, ev.report_cid)
    if check:
        out["check"] = check_manifest(dep, p)
    return out


def check_manifest(dep: Deployment, p: Any) -> dict:
    """Recompute the Merkle root and count of a proposal's manifest from the store."""
    from databright.storage.manifest import read_manifest
    from databright.storage.merkle import merkle_root

    problems: list[str] = []
    try:
        items = read_manifest(dep.store, p.manifest_cid)
    except StorageError as exc:
        return {"ok": False, "problems": [f"manifest unreadable: {exc}"], "labels": {}}
    root = merkle_root(items) if items else b"\0" * 32
    if bytes(root) != bytes(p.merkle_root):
        problems.append(
            f"MERKLE ROOT MISMATCH: the chain says 0x{bytes(p.merkle_root).hex()}, "
            f"the manifest gives 0x{bytes(root).hex()}"
        )
    if len(items) != p.item_count:
        problems.append(
            f"ITEM COUNT MISMATCH: the chain says {p.item_count}, the manifest has {len(items)}"
        )
    if p.status == "open":
        overlap = existing_cids(dep, p.dataset_id, [it.cid for it in items], include_open=False)
        if overlap:
            problems.append(f"{len(overlap)} items are already in the dataset or its "
                            "validation split: they must not earn shares twice")
    missing = [it.cid for it in items if not dep.store.has(it.cid)]
    if missing:
        problems.append(f"{len(missing)} blobs missing from the store (first: {missing[0]})")
    labels: dict[str, int] = {}
    for it in items:
        labels[it.label] = labels.get(it.label, 0) + 1
    return {"ok": not problems, "problems": problems, "labels": labels,
            "recomputed_items": len(items)}


def list_proposals(dep: Deployment, dataset: str | None = None,
                   open_only: bool = False) -> list[ProposalSummary]:
    """Proposals (of one dataset, only open ones), from the index."""
    from databright.market.listings import proposal_summaries

    return proposal_summaries(dep, dataset_id(dep, dataset) if dataset else None, open_only)


def vote(dep: Deployment, sender: Any, proposal_id: int, support: bool) -> dict:
    get_proposal(dep, proposal_id)
    dep.market.vote(sender, proposal_id, support)
    _, _, weight = dep.market.vote_of(proposal_id, sender.address)
    return {"proposal": proposal_id, "support": "yes" if support else "no", "weight": weight,
            "voter": sender.address}


def finalize(dep: Deployment, sender: Any, proposal_id: int) -> dict:
    get_proposal(dep, proposal_id)
    dep.market.finalize(sender, proposal_id)
    p = dep.market.get_proposal(proposal_id)
    return {"proposal": proposal_id, "status": p.status, "shares_minted": p.shares_minted,
            "yes": p.yes, "no": p.no}


def _evaluation_summary(report: dict, cid: str) -> dict:
    keys = ("accuracy_before", "accuracy_after", "gain", "new", "duplicates",
            "near_duplicates", "unknown_labels", "score_bps")
    summary = {k: report.get(k) for k in keys}
    summary["suspects"] = len(report.get("suspects", []))
    summary["report_cid"] = cid
    return summary
