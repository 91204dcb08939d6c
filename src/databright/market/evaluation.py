"""Running the automated evaluation of a proposal, storing it, posting its score on chain, and
measuring it against a registered model's best checkpoint.

A stored report is reused only when it was computed from the same inputs and parameters: the
valuation method and its settings (``k``, seed, time budget, suspect quantile, near-duplicate
threshold, the featurizer actually used — ``auto`` is resolved first, see
:mod:`databright.market.embedding`), the dataset's validation manifest, the accepted entries it
was measured against and the proposal's manifest. Anything else recomputes it.

:func:`evaluate_model` is paper Figure 3: fine-tune the model's attested best checkpoint (its
bytes verified against the sha256 the chain records) on the proposal's batch and compare its
validation accuracy before and after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import (
    IntegrityError,
    NotFoundError,
    PermissionDenied,
    UsageError,
)
from databright.index.models import Evaluation
from databright.market.context import Deployment
from databright.market.datasets import card_of, entries_of
from databright.market.embedding import PRETRAINED, make_featurizer, resolve_featurizer
from databright.market.proposals import get_proposal

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.storage.manifest import Item
    from databright.training.checkpoint import Checkpoint
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
    featurizer: str = "auto"  # the featurizer used, with its settings ("auto" before resolving)

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

    @property
    def embedding(self) -> str:
        """The features the report was computed on (``efficientnet-lite0``, ``pixels``, ...)."""
        return self.report.embedding


@dataclass(frozen=True)
class ScorePosted:
    """A score posted on chain by the dataset's evaluator."""

    proposal_id: int
    score_bps: int
    evaluator: str


def load_blobs(dep: Deployment, manifest_cid: str) -> list[LabeledBlob]:
    """The items of a manifest with their bytes, as the valuation layer takes them."""
    from databright.storage.manifest import read_manifest

    return _blobs(dep, read_manifest(dep.store, manifest_cid))


def _blobs(dep: Deployment, items: list[Item]) -> list[LabeledBlob]:
    from databright.valuation.report import LabeledBlob

    return [LabeledBlob(cid=it.cid, label=it.label, media_type=it.media_type,
                        data=dep.store.get(it.cid)) for it in items]


def featurizer_name(featurizer: Featurizer | str | None) -> str:
    """A stable description of a featurizer and its settings, for the cache key."""
    if featurizer is None or isinstance(featurizer, str):
        return featurizer or "auto"
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
    featurizer: Featurizer | str | None = "auto",
) -> Evaluated:
    """The proposal's evaluation report: the stored one if it was computed from the same inputs
    and parameters (and ``refresh`` is not set), else computed now and stored.

    Args:
        featurizer: ``auto`` (the pretrained ``efficientnet-lite0`` for images when installed,
            else ``pixels``; ``tabular`` for rows), one of those names, or a featurizer object.
            The report's ``embedding`` field names what was used.
    """
    from databright.storage.manifest import read_manifest
    from databright.valuation.report import evaluate_proposal

    p = get_proposal(dep, proposal_id)
    card = card_of(dep, p.dataset_id)
    validation_manifest = card.get("validation_manifest")
    if not validation_manifest:
        raise IntegrityError(f"the card of dataset #{p.dataset_id} names no validation split")
    val_items = read_manifest(dep.store, validation_manifest)
    batch_items = read_manifest(dep.store, p.manifest_cid)
    if featurizer is None or isinstance(featurizer, str):
        name = resolve_featurizer(featurizer or "auto",
                                  [it.media_type for it in (*val_items, *batch_items)])
        featurizer = make_featurizer(name, _embedding_cache_dir(dep) if name == PRETRAINED else None)
    params = EvaluationParams(method=method, k=k, seed=seed, budget_s=budget_s, alpha=alpha,
                              near_duplicate_threshold=near_duplicate_threshold,
                              featurizer=featurizer_name(featurizer))
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
    validation = _blobs(dep, val_items)
    batch = _blobs(dep, batch_items)
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


def _embedding_cache_dir(dep: Deployment) -> Any:
    from databright.training.embed import home_cache_dir

    return home_cache_dir(dep.home)


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


# -- against a registered model's best checkpoint (paper Figure 3) --------------------------------

#: The features each training family sees, as a report names them.
FAMILY_EMBEDDING = {"efficientnet-head": PRETRAINED, "small-cnn": "pixels", "logreg": "tabular",
                    "mlp": "tabular"}


@dataclass(frozen=True)
class ModelEvaluation:
    """A proposal's batch measured against a model: the validation accuracy (bps) of the model's
    best checkpoint before and after fine-tuning it on the batch.

    ``model_id`` and ``checkpoint_cid`` are None when a checkpoint was passed in directly.
    ``batch_items`` were fine-tuned on; ``skipped`` items were not (already in the dataset or the
    validation split, repeated, or with a label the checkpoint does not know).
    """

    proposal_id: int
    model_id: int | None
    family: str
    embedding: str
    checkpoint_cid: str | None
    checkpoint_sha256: str
    checkpoint_entries: int
    before_bps: int
    after_bps: int
    gain_bps: int
    validation_items: int
    batch_items: int
    skipped: int
    epochs: int
    seconds: float


def evaluate_model(
    dep: Deployment,
    proposal_id: int,
    model: int | Checkpoint,
    *,
    epochs: int | None = None,
) -> ModelEvaluation:
    """Fine-tune a model's best checkpoint on the proposal's batch; accuracy before and after.

    Args:
        model: a model id of the registry (its attested best checkpoint is loaded from the store
            and verified against the sha256 the chain records), or a checkpoint object.
        epochs: fine-tuning epochs (default: the checkpoint's own config).

    Raises:
        NotFoundError: no such model, or it has no attested best checkpoint.
        UsageError: the model belongs to another dataset; nothing in the batch to fine-tune on.
        IntegrityError: the stored checkpoint's bytes do not hash to the recorded sha256.
    """
    import time

    from databright.storage.manifest import read_manifest
    from databright.training import fine_tune_gain, home_cache_dir, records_from, sha256_hex

    start = time.perf_counter()
    p = get_proposal(dep, proposal_id)
    if isinstance(model, int):
        model_id: int | None = model
        checkpoint, cid, sha = _best_checkpoint(dep, model, p.dataset_id)
    else:
        model_id, checkpoint, cid = None, model, None
        sha = sha256_hex(model.to_bytes())
    card = card_of(dep, p.dataset_id)
    validation_manifest = card.get("validation_manifest")
    if not validation_manifest:
        raise IntegrityError(f"the card of dataset #{p.dataset_id} names no validation split")
    val_items = read_manifest(dep.store, validation_manifest)
    batch_items = read_manifest(dep.store, p.manifest_cid)
    # What would join and what training accepts: not in the dataset or the validation split,
    # once, with a label the checkpoint knows (fine-tuning keeps the checkpoint's classes).
    taken = {it.cid for it in val_items}
    taken |= {it.cid for e in entries_of(dep, p.dataset_id)
              for it in read_manifest(dep.store, e.manifest_cid)}
    labels = set(checkpoint.labels)
    usable = []
    for it in batch_items:
        if it.cid not in taken and it.label in labels:
            usable.append(it)
        taken.add(it.cid)
    if not usable:
        raise UsageError(f"proposal #{proposal_id} has no new item with a label the model knows: "
                         "nothing to fine-tune on")
    config = {"epochs": int(epochs)} if epochs is not None else None
    measured = fine_tune_gain(checkpoint, records_from(usable, dep.store.get),
                              records_from(val_items, dep.store.get), config,
                              cache_dir=home_cache_dir(dep.home))
    return ModelEvaluation(
        proposal_id=proposal_id, model_id=model_id, family=checkpoint.family,
        embedding=FAMILY_EMBEDDING.get(checkpoint.family, checkpoint.family),
        checkpoint_cid=cid, checkpoint_sha256=sha, checkpoint_entries=checkpoint.snapshot,
        before_bps=measured.before.accuracy_bps, after_bps=measured.after.accuracy_bps,
        gain_bps=measured.gain_bps, validation_items=measured.before.total,
        batch_items=len(usable), skipped=len(batch_items) - len(usable),
        epochs=measured.after.epochs, seconds=time.perf_counter() - start,
    )


def _best_checkpoint(dep: Deployment, model_id: int, dataset_id: int
                     ) -> tuple[Checkpoint, str, str]:
    from databright.market.model_data import load_stored_checkpoint
    from databright.market.models import get_model

    m = get_model(dep, model_id)  # NotFoundError for an unknown id
    if m.dataset_id != dataset_id:
        raise UsageError(f"model #{model_id} is trained on {m.dataset} (dataset #{m.dataset_id}), "
                         f"not on the proposal's dataset #{dataset_id}")
    if m.best is None:
        raise NotFoundError(f"model #{model_id} has no attested best checkpoint yet "
                            "(self-reported checkpoints are not evaluated against)")
    return load_stored_checkpoint(dep, m.best.cid, m.best.sha256), m.best.cid, m.best.sha256
