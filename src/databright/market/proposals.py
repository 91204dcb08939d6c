"""Proposing a batch, reading proposals with every check a voter relies on, voting, finalizing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from databright.errors import NotFoundError, StorageError, UsageError
from databright.index.models import Evaluation, IngestReport
from databright.market.context import Deployment
from databright.market.datasets import card_of, dataset_id, entries_of


def existing_cids(dep: Deployment, ds_id: int, *, include_open: bool = True) -> set[str]:
    """CIDs already in the dataset (accepted entries), held out for validation, and (with
    ``include_open``) pending in its open proposals: none of them may earn shares again."""
    from databright.storage.manifest import read_manifest

    manifests = [entry.manifest_cid for entry in entries_of(dep, ds_id)]
    val = card_of(dep, ds_id).get("validation_manifest")
    if val:
        manifests.append(val)
    if include_open:
        for pid in range(1, dep.market.proposal_count() + 1):
            p = dep.market.get_proposal(pid)
            if p.dataset_id == ds_id and p.status == "open":
                manifests.append(p.manifest_cid)
    cids: set[str] = set()
    for cid in manifests:
        try:
            cids.update(item.cid for item in read_manifest(dep.store, cid))
        except StorageError:
            continue  # a proposal whose manifest is missing is flagged by `proposal show`
    return cids


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
        existing_cids=existing_cids(dep, ds_id),
        progress=progress,
        **({"max_file_size": max_file_size} if max_file_size else {}),
    )
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
        overlap = {it.cid for it in items} & existing_cids(dep, p.dataset_id, include_open=False)
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


def list_proposals(dep: Deployment, dataset: str | None = None, open_only: bool = False) -> list:
    ds_filter = dataset_id(dep, dataset) if dataset else None
    out = []
    for pid in range(1, dep.market.proposal_count() + 1):
        p = dep.market.get_proposal(pid)
        if ds_filter and p.dataset_id != ds_filter:
            continue
        if open_only and p.status != "open":
            continue
        out.append({
            "id": pid, "dataset": dep.market.get_dataset(p.dataset_id).name,
            "proposer": p.proposer, "items": p.item_count, "status": p.status,
            "yes": p.yes, "no": p.no, "deadline": p.deadline,
        })
    return out


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
