"""Running the automated evaluation of a proposal, storing it, posting its score on chain.

A stored report is reused only when it was computed from the same inputs and parameters: the
valuation method and its settings (``k``, seed, time budget, suspect quantile, near-duplicate
threshold, featurizer), the dataset's validation manifest, the accepted entries it was measured
against and the proposal's manifest. Anything else recomputes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import IntegrityError, PermissionDenied, UsageError
from databright.index.models import Evaluation
from databright.market.context import Deployment
from databright.market.datasets import card_of, entries_of
from databright.market.proposals import get_proposal

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.valuation.features import Featurizer
    from databright.valuation.report import EvaluationReport, LabeledBlob

METHODS = ("knn", "data_oob", "tmc", "loo")


@dataclass(frozen=True)
class EvaluationParams:
    """The settings an evaluation report depends on (see :func:`evaluate_proposal`)."""

    method: str = "knn"
    k: int = 5
    seed: int = 0
    budget_s: float = 10.0
    alpha: float = 0.05
    near_duplicate_threshold: float = 0.02
    featurizer: str = "auto"  # "auto": chosen from the media types

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown valuation method {self.method!r}: use {', '.join(METHODS)}")
        if self.k < 1 or self.budget_s <= 0 or not 0 < self.alpha < 1:
            raise UsageError("k must be ≥ 1, the budget positive and alpha in (0, 1)")


@dataclass(frozen=True)
class Evaluated:
    """A proposal's evaluation report, where it is stored, and whether it was read from the
    index (``cached``) rather than computed now."""

    proposal_id: int
    report_cid: str
    cached: bool
    cache_key: str
    params: EvaluationParams
    report: EvaluationReport


@dataclass(frozen=True)
class ScorePosted:
    """A score posted on chain by the dataset's evaluator."""

    proposal_id: int
    score_bps: int
    evaluator: str


def load_blobs(dep: Deployment, manifest_cid: str) -> list[LabeledBlob]:
    """The items of a manifest with their bytes, as the valuation layer takes them."""
    from databright.storage.manifest import read_manifest
    from databright.valuation.report import LabeledBlob

    return [
        LabeledBlob(cid=it.cid, label=it.label, media_type=it.media_type, data=dep.store.get(it.cid))
        for it in read_manifest(dep.store, manifest_cid)
    ]


def featurizer_name(featurizer: Featurizer | None) -> str:
    """A stable description of a featurizer and its settings, for the cache key."""
    if featurizer is None:
        return "auto"
    settings = sorted((k, v) for k, v in vars(featurizer).items()
                      if isinstance(v, int | float | str | bool) and not k.startswith("_"))
    return f"{type(featurizer).__name__}({', '.join(f'{k}={v!r}' for k, v in settings)})"


def cache_key(params: EvaluationParams, *, validation_manifest: str, base_manifests: list[str],
              batch_manifest: str) -> str:
    """The sha256 of everything an evaluation report depends on."""
    inputs = {"params": dataclasses.asdict(params), "validation_manifest": validation_manifest,
              "base_manifests": base_manifests, "batch_manifest": batch_manifest}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def evaluate(
    dep: Deployment,
    proposal_id: int,
    *,
    refresh: bool = False,
    method: str = "knn",
    k: int = 5,
    seed: int = 0,
    budget_s: float = 10.0,
    alpha: float = 0.05,
    near_duplicate_threshold: float = 0.02,
    featurizer: Featurizer | None = None,
) -> Evaluated:
    """The proposal's evaluation report: the stored one if it was computed from the same inputs
    and parameters (and ``refresh`` is not set), else computed now and stored."""
    from databright.valuation.report import evaluate_proposal

    params = EvaluationParams(method=method, k=k, seed=seed, budget_s=budget_s, alpha=alpha,
                              near_duplicate_threshold=near_duplicate_threshold,
                              featurizer=featurizer_name(featurizer))
    p = get_proposal(dep, proposal_id)
    card = card_of(dep, p.dataset_id)
    validation_manifest = card.get("validation_manifest")
    if not validation_manifest:
        raise IntegrityError(f"the card of dataset #{p.dataset_id} names no validation split")
    entries = entries_of(dep, p.dataset_id)
    key = cache_key(params, validation_manifest=validation_manifest,
                    base_manifests=[e.manifest_cid for e in entries],
                    batch_manifest=p.manifest_cid)
    if not refresh:
        with dep.index.session() as s:
            row = s.get(Evaluation, proposal_id)
            if row is not None and row.report.get("cache_key") == key:
                return Evaluated(proposal_id, row.report_cid, True, key, params,
                                 _report_of(row.report))
    base = [blob for e in entries for blob in load_blobs(dep, e.manifest_cid)]
    validation = load_blobs(dep, validation_manifest)
    batch = load_blobs(dep, p.manifest_cid)
    method_arg: Any = method  # checked by EvaluationParams
    computed = evaluate_proposal(base, batch, validation, card["labels"], featurizer=featurizer,
                                 method=method_arg, k=k, seed=seed, alpha=alpha,
                                 near_duplicate_threshold=near_duplicate_threshold,
                                 budget_s=budget_s)
    stored = json.loads(json.dumps(computed.to_dict(), default=str)) | {"cache_key": key}
    report_cid = dep.store.put_bytes(json.dumps(stored, sort_keys=True).encode())
    with dep.index.session() as s:
        s.merge(Evaluation(proposal_id=proposal_id, manifest_cid=p.manifest_cid,
                           report_cid=report_cid, report=stored,
                           score_bps=int(computed.score_bps)))
    return Evaluated(proposal_id, report_cid, False, key, params, _report_of(stored))


def _report_of(stored: dict[str, Any]) -> EvaluationReport:
    from databright.valuation.report import EvaluationReport

    names = {f.name for f in dataclasses.fields(EvaluationReport)}
    return EvaluationReport(**{k: v for k, v in stored.items() if k in names})


def post_score(dep: Deployment, sender: Signer, proposal_id: int, score_bps: int) -> ScorePosted:
    """Post the score on chain; only the dataset's evaluator may."""
    p = get_proposal(dep, proposal_id)
    info = dep.market.get_dataset(p.dataset_id)
    if info.evaluator.lower() != sender.address.lower():
        raise PermissionDenied(
            "market: only evaluator",
            f"only the dataset's evaluator ({info.evaluator}) can post scores on {info.name}",
        )
    dep.market.post_score(sender, proposal_id, score_bps)
    return ScorePosted(proposal_id=proposal_id, score_bps=score_bps, evaluator=sender.address)
