"""The evaluation report of a proposal: what the batch adds and which items look wrong.

``evaluate_proposal`` featurizes the dataset (``base``), the proposed ``batch`` and the
held-out ``validation`` split, then reports counts (new, duplicate, near-duplicate, unknown
label), accuracy before and after, per-item values, calibrated suspects and a score for the
chain. See docs/valuation.md for the suspect rule and the score formula.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from databright.errors import ValuationError
from databright.valuation.features import (
    NEAR_DUPLICATE_THRESHOLD,
    Featurizer,
    ImageFeaturizer,
    TabularFeaturizer,
    embedding_name,
    featurizer_for,
    near_duplicates,
)
from databright.valuation.knn import KNNShapley
from databright.valuation.loo import LOO
from databright.valuation.montecarlo import TMCShapley
from databright.valuation.oob import DataOOB
from databright.valuation.result import ValuationResult, _json_safe
from databright.valuation.sampling import MaxSeconds
from databright.valuation.utility import KNNUtility, knn_predict

__all__ = ["SUSPECT_ALPHA", "EvaluationReport", "LabeledBlob", "evaluate_proposal", "score_to_bps"]

#: Share of trusted base items that the quantile rule would flag (its false-positive rate).
SUSPECT_ALPHA = 0.05
#: One-sided z for "significantly below the neutral value" (95 %).
SUSPECT_Z = 1.645
Method = Literal["knn", "data_oob", "tmc", "loo"]


@dataclass(frozen=True)
class LabeledBlob:
    """One labelled item: its content ID, label, media type and bytes."""

    cid: str
    label: str
    media_type: str
    data: bytes


@dataclass
class EvaluationReport:
    """Everything voters see about a proposal before they vote. ``to_dict()`` is JSON-safe.

    ``accuracy_*``/``gain`` come from the KNN classifier (majority vote of ``k``), the
    ``utility_*`` fields from the KNN utility the values are computed for (soft accuracy).
    ``items`` keeps batch order; ``status`` is ``new``, ``duplicate`` or ``unknown_label``
    (near-duplicates are new items with ``near_duplicate_of`` set). ``value`` is None for
    items that would not join the dataset (duplicates, unknown labels). ``embedding`` names the
    features the values and the KNN figures were computed on (``pixels``, ``tabular``,
    ``efficientnet-lite0``, ...).
    """

    new: int
    duplicates: int
    near_duplicates: int
    unknown_labels: int
    accuracy_before: float
    accuracy_after: float
    gain: float
    utility_before: float
    utility_after: float
    utility_gain: float
    items: list[dict[str, Any]]
    suspects: list[str]
    suspect_threshold: float
    score_bps: int
    runtime_s: float
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    embedding: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary of every field."""
        return _json_safe(asdict(self))

    def summary(self) -> str:
        """One line for a proposal listing, e.g. ``200 new, 1 dup, … gain +1.2 pts, …``."""
        return (
            f"{self.new} new, {self.duplicates} duplicate, {self.near_duplicates} near-duplicate, "
            f"{self.unknown_labels} unknown label; accuracy {self.accuracy_before:.1%} → "
            f"{self.accuracy_after:.1%} (gain {100 * self.gain:+.2f} pts); "
            f"{len(self.suspects)} suspect; score {self.score_bps} bps"
            + (f" ({self.embedding} features)" if self.embedding else "")
        )


def score_to_bps(report: EvaluationReport) -> int:
    """Suggested on-chain score in basis points, 0..20000 (10000 = neutral).

    ``score = 10000 · clean · (1 + clip(r, −1, 1))`` where ``clean`` is the share of submitted
    items that join the dataset and are not suspects, and ``r = (U_after − U_before) /
    max(1 − U_before, 0.01)`` is the share of the remaining error (in the KNN utility) the
    batch removes — negative when it makes the model worse.
    """
    submitted = report.new + report.duplicates + report.unknown_labels
    if submitted == 0:
        return 0
    joining = report.new
    suspects_joining = sum(1 for it in report.items if it["suspect"] and it["status"] == "new")
    clean = max(0, joining - suspects_joining) / submitted
    r = report.utility_gain / max(1.0 - report.utility_before, 0.01)
    return round(10000 * clean * (1 + float(np.clip(r, -1.0, 1.0))))


def _features(
    featurizer: Featurizer, blobs: Sequence[LabeledBlob], fit_on: Sequence[LabeledBlob]
) -> NDArray[np.float64]:
    def call(method: Any, items: Sequence[LabeledBlob]) -> Any:
        pairs = [(b.data, b.media_type) for b in items]
        # our featurizers name a failing item by CID; a plug-in need not take names
        if "names" in inspect.signature(method).parameters:
            return method(pairs, names=[b.cid for b in items])
        return method(pairs)

    call(featurizer.fit, fit_on)
    out = np.asarray(call(featurizer.transform, blobs), dtype=np.float64)
    if out.ndim != 2 or out.shape[0] != len(blobs) or not np.isfinite(out).all():
        raise ValuationError("featurizer returned no finite feature matrix of one row per item")
    return out


def _values(
    method: Method,
    k: int,
    seed: int,
    budget_s: float,
    data: tuple[NDArray[np.float64], NDArray[Any], NDArray[np.float64], NDArray[Any]],
) -> tuple[ValuationResult, float]:
    """Values of all points and the neutral value below which a significant value is suspect."""
    x, y, xv, yv = data
    if method == "knn":
        return KNNShapley(k=k).fit(x, y, xv, yv).result, 0.0
    if method == "data_oob":
        # neutral: half the out-of-bag models agree with the label
        return DataOOB(seed=seed).fit(x, y).result, 0.5
    utility = KNNUtility(x, y, xv, yv, k=k)
    if method == "tmc":
        return TMCShapley(stop=MaxSeconds(budget_s), seed=seed).fit(utility).result, 0.0
    if method == "loo":
        return LOO().fit(utility).result, 0.0
    raise ValuationError(f"unknown valuation method {method!r}")


def evaluate_proposal(
    base: Sequence[LabeledBlob],
    batch: Sequence[LabeledBlob],
    validation: Sequence[LabeledBlob],
    label_set: Sequence[str],
    *,
    featurizer: Featurizer | None = None,
    duplicate_featurizer: Featurizer | None = None,
    method: Method = "knn",
    k: int = 5,
    seed: int = 0,
    alpha: float = SUSPECT_ALPHA,
    near_duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD,
    budget_s: float = 10.0,
) -> EvaluationReport:
    """Evaluate ``batch`` as an addition to ``base``, measured on ``validation``.

    Args:
        base: the dataset's items (trusted; their values calibrate the suspect threshold).
        batch: the proposal's items, in order.
        validation: the dataset's fixed validation split, never trained on.
        label_set: the dataset's labels; other labels count as unknown.
        featurizer: the features of the values and the KNN figures; default: chosen from the
            media types (:func:`featurizer_for`, raw pixels for images).
        duplicate_featurizer: the features near-duplicates are found in. Default: the
            ``featurizer`` when it is one of ours (pixels, tabular), else the media types'
            default: the threshold is calibrated in pixel (or standardised column) units, and
            "the same picture re-encoded" is a pixel-level notion, not an embedding one.
        method: ``"knn"`` (exact KNN-Shapley), ``"data_oob"``, ``"tmc"`` or ``"loo"``.
        k: neighbours of the KNN classifier and utility.
        seed: seeds the sampling methods.
        alpha: quantile of the dataset's values under which an item is suspect.
        near_duplicate_threshold: RMS feature distance of a near-duplicate.
        budget_s: time budget of ``"tmc"``.

    Raises:
        ValuationError: no validation data, an empty label set, or an unreadable item.
    """
    start = time.perf_counter()
    labels = set(label_set)
    if not labels:
        raise ValuationError("the dataset has no label set")
    if not validation:
        raise ValuationError("the dataset has no validation split to evaluate on")
    if not batch:
        raise ValuationError("the proposal has no items")
    media_types = [b.media_type for b in (*base, *batch, *validation)]
    featurizer = featurizer or featurizer_for(media_types)
    if duplicate_featurizer is None and not isinstance(
        featurizer, ImageFeaturizer | TabularFeaturizer
    ):
        duplicate_featurizer = featurizer_for(media_types)
    fit_on = list(base) if base else list(validation)
    feats = _features(featurizer, [*base, *batch, *validation], fit_on)
    nb, nbatch = len(base), len(batch)
    x_base, x_batch, x_val = feats[:nb], feats[nb : nb + nbatch], feats[nb + nbatch :]
    if duplicate_featurizer is None:
        d_base, d_batch = x_base, x_batch
    else:
        dup = _features(duplicate_featurizer, [*base, *batch], fit_on)
        d_base, d_batch = dup[:nb], dup[nb:]
    y_base = np.array([b.label for b in base], dtype=str)
    y_val = np.array([b.label for b in validation], dtype=str)

    # Triage: exact duplicates and unknown labels never join; near-duplicates do, flagged.
    seen = {b.cid for b in base}
    status: list[str] = []
    for item in batch:
        if item.cid in seen:
            status.append("duplicate")
        elif item.label not in labels:
            status.append("unknown_label")
        else:
            status.append("new")
        seen.add(item.cid)
    joining = np.array([i for i, s in enumerate(status) if s == "new"], dtype=np.intp)
    x_join = x_batch[joining]
    d_join = d_batch[joining]
    y_join = np.array([batch[i].label for i in joining], dtype=str)
    # Near-duplicates: of a dataset item first, else of an earlier joining item.
    near_of: dict[int, str] = {}
    hit_base = near_duplicates(d_join, d_base, near_duplicate_threshold)
    for pos, i in enumerate(joining):
        if hit_base[pos] >= 0:
            near_of[int(i)] = base[int(hit_base[pos])].cid
        elif pos:
            hit = near_duplicates(d_join[pos : pos + 1], d_join[:pos], near_duplicate_threshold)[0]
            if hit >= 0:
                near_of[int(i)] = batch[int(joining[hit])].cid

    # Accuracy before/after: the KNN classifier and the KNN utility (exact gain, no refit).
    x_all = np.concatenate([x_base, x_join])
    y_all = np.concatenate([y_base, y_join])
    acc_before = float(np.mean(knn_predict(x_base, y_base, x_val, k) == y_val)) if nb else 0.0
    acc_after = float(np.mean(knn_predict(x_all, y_all, x_val, k) == y_val)) if len(y_all) else 0.0
    utility = KNNUtility(x_base, y_base, x_val, y_val, k=k)
    u_before = utility.full_score()
    u_gain = utility.gain(x_join, y_join)

    # Per-item values in the game of dataset + joining items; calibrated on the base items.
    if len(y_all):
        try:
            result, neutral = _values(method, k, seed, budget_s, (x_all, y_all, x_val, y_val))
        except ValueError as exc:  # e.g. too few points for bagging
            raise ValuationError(f"{method} valuation failed: {exc}") from exc
        values, stderr = result.values, np.nan_to_num(result.stderr, nan=np.inf)
        params_m = result.params
    else:
        values = stderr = np.zeros(0)
        neutral, params_m = 0.0, {}
    base_vals = values[:nb]
    # never above neutral: an item whose value says it helps is not called mislabeled
    threshold = min(float(np.quantile(base_vals, alpha)), neutral) if nb else neutral
    significant = values + SUSPECT_Z * stderr < neutral
    flagged = (values < threshold) | significant

    items: list[dict[str, Any]] = []
    suspects: list[str] = []
    for i, item in enumerate(batch):
        entry: dict[str, Any] = {"cid": item.cid, "label": item.label, "status": status[i]}
        if status[i] == "new":
            pos = nb + int(np.searchsorted(joining, i))
            entry["value"] = float(values[pos])
            entry["stderr"] = float(stderr[pos])
            entry["suspect"] = bool(flagged[pos])
            entry["near_duplicate_of"] = near_of.get(i)
        else:
            entry.update(value=None, stderr=None, near_duplicate_of=None)
            entry["suspect"] = status[i] == "unknown_label"
        if entry["suspect"]:
            suspects.append(item.cid)
        items.append(entry)

    report = EvaluationReport(
        new=len(joining),
        duplicates=status.count("duplicate"),
        near_duplicates=len(near_of),
        unknown_labels=status.count("unknown_label"),
        accuracy_before=acc_before,
        accuracy_after=acc_after,
        gain=acc_after - acc_before,
        utility_before=u_before,
        utility_after=u_before + u_gain,
        utility_gain=u_gain,
        items=items,
        suspects=suspects,
        suspect_threshold=threshold,
        score_bps=0,
        runtime_s=0.0,
        method=method,
        params={
            "k": k,
            "seed": seed,
            "alpha": alpha,
            "z": SUSPECT_Z,
            "neutral_value": neutral,
            "near_duplicate_threshold": near_duplicate_threshold,
            "budget_s": budget_s if method == "tmc" else None,
            "featurizer": type(featurizer).__name__,
            "duplicate_featurizer": type(duplicate_featurizer or featurizer).__name__,
            "n_base": nb,
            "n_validation": len(validation),
            "valuation": params_m,
        },
        embedding=embedding_name(featurizer),
    )
    report.score_bps = score_to_bps(report)
    report.runtime_s = time.perf_counter() - start
    return report
