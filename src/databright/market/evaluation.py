"""Running the automated evaluation of a proposal, storing it, posting its score on chain."""

from __future__ import annotations

import json
from typing import Any

from databright.errors import PermissionDenied
from databright.index.models import Evaluation
from databright.market.context import Deployment
from databright.market.datasets import card_of, entries_of
from databright.market.proposals import get_proposal


def load_blobs(dep: Deployment, manifest_cid: str) -> list:
    """The items of a manifest with their bytes, as the valuation layer takes them."""
    from databright.storage.manifest import read_manifest
    from databright.valuation.report import LabeledBlob

    return [
        LabeledBlob(cid=it.cid, label=it.label, media_type=it.media_type, data=dep.store.get(it.cid))
        for it in read_manifest(dep.store, manifest_cid)
    ]


def evaluate(dep: Deployment, proposal_id: int, *, refresh: bool = False, **params: Any) -> dict:
    """The proposal's evaluation report (computed once, then read from the index)."""
    from databright.valuation.report import evaluate_proposal

    p = get_proposal(dep, proposal_id)
    if not refresh:
        with dep.index.session() as s:
            row = s.get(Evaluation, proposal_id)
            if row is not None:
                return row.report | {"proposal": proposal_id, "report_cid": row.report_cid}
    card = card_of(dep, p.dataset_id)
    base = [blob for e in entries_of(dep, p.dataset_id) for blob in load_blobs(dep, e.manifest_cid)]
    validation = load_blobs(dep, card["validation_manifest"])
    batch = load_blobs(dep, p.manifest_cid)
    report = evaluate_proposal(base, batch, validation, card["labels"], **params).to_dict()
    report = json.loads(json.dumps(report, default=str))
    report_cid = dep.store.put_bytes(json.dumps(report, sort_keys=True).encode())
    with dep.index.session() as s:
        s.merge(Evaluation(proposal_id=proposal_id, manifest_cid=p.manifest_cid,
                           report_cid=report_cid, report=report,
                           score_bps=int(report["score_bps"])))
    return report | {"proposal": proposal_id, "report_cid": report_cid}


def post_score(dep: Deployment, sender: Any, proposal_id: int, score_bps: int) -> dict:
    """Post the score on chain; only the dataset's evaluator may."""
    p = get_proposal(dep, proposal_id)
    info = dep.market.get_dataset(p.dataset_id)
    if info.evaluator.lower() != sender.address.lower():
        raise PermissionDenied(
            "market: only evaluator",
            f"only the dataset's evaluator ({info.evaluator}) can post scores on {info.name}",
        )
    dep.market.post_score(sender, proposal_id, score_bps)
    return {"proposal": proposal_id, "score_bps": score_bps, "posted_by": sender.address}
