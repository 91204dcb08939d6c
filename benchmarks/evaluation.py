"""Proposal evaluation benchmark: finding flipped labels in a batch, raw pixels vs the pretrained
embedding, with cleanlab on the same features as the anchor; and the sign of the accuracy gain.

    python benchmarks/evaluation.py            # full run: 5 seeds (≈ 2 min of embedding once)
    python benchmarks/evaluation.py --quick    # small sizes, 2 seeds
    python benchmarks/evaluation.py --json     # one JSON document on stdout

Data: scikit-learn's 8×8 digits rendered as 32×32 grayscale PNGs (as the demo stores them). Per
seed a fixed permutation gives a trusted dataset (``base``), a validation split and a proposal
batch; 20 % of the batch's labels are flipped to another class. The batch is evaluated exactly as
``databright evaluate`` does (:func:`databright.valuation.evaluate_proposal`) with each featurizer
(``pixels``; ``efficientnet-lite0``: EfficientNet-Lite0 ImageNet embeddings, cached by CID in
``.bench/embeddings``) and method. Suspect precision/recall: the report's suspects against the
flipped items; AUC: minus the value as a score for "flipped".

Anchor: ``cleanlab.filter.find_label_issues`` on the same features of base + batch, with
out-of-sample class probabilities from a 5-fold ``cross_val_predict`` of a standardised
logistic regression; scored on the batch items; its AUC from ``get_label_quality_scores``.

Gain: a clean batch and the same batch with uniformly random labels, added to the dataset:
the KNN accuracy gain of the report, and ``fine_tune_gain`` of an ``efficientnet-head``
checkpoint trained on the dataset (fine-tuned on the batch alone, as ``evaluate --model`` does).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from databright.market.embedding import PRETRAINED, make_featurizer
from databright.storage.cid import cid_of_bytes
from databright.valuation import LabeledBlob, evaluate_proposal
from databright.valuation.features import Featurizer

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench" / "embeddings"
TARGETS = {"precision": 0.90, "recall": 0.90, "auc": 0.98}
FLIP = 0.20
FEATURIZERS = ("pixels", PRETRAINED)
LABELS = [str(i) for i in range(10)]


def digit_png(pixels: np.ndarray) -> bytes:
    """One 8×8 digit (0..16) as a 32×32 grayscale PNG, dark on white, like the demo's."""
    img = (255 - pixels.reshape(8, 8) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").resize((32, 32), Image.Resampling.NEAREST).save(buf, "PNG")
    return buf.getvalue()


def digits() -> tuple[list[bytes], list[str], np.ndarray]:
    d = load_digits()
    pngs = [digit_png(px) for px in d.data]
    return pngs, [cid_of_bytes(b) for b in pngs], d.target.astype(int)


def flip(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """Exactly ``round(fraction · n)`` labels moved to another class; (labels, flipped mask)."""
    mask = np.zeros(len(labels), bool)
    mask[rng.choice(len(labels), round(fraction * len(labels)), replace=False)] = True
    out = labels.copy()
    out[mask] = (labels[mask] + rng.integers(1, 10, mask.sum())) % 10
    return out, mask


def blobs(idx: np.ndarray, labels: np.ndarray, pngs: list[bytes], cids: list[str]
          ) -> list[LabeledBlob]:
    return [LabeledBlob(cids[i], str(int(y)), "image/png", pngs[i]) for i, y in zip(idx, labels)]


def scores(suspect: np.ndarray, value: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    hits = int((suspect & flipped).sum())
    return {"precision": hits / max(int(suspect.sum()), 1), "recall": hits / int(flipped.sum()),
            "auc": float(roc_auc_score(flipped, -value))}


def cleanlab_scores(x: np.ndarray, y: np.ndarray, batch: slice, flipped: np.ndarray,
                    seed: int) -> dict[str, float]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probs = cross_val_predict(model, x, y, cv=5, method="predict_proba")
    issues = find_label_issues(y, probs)
    quality = get_label_quality_scores(y, probs)
    return scores(issues[batch], quality[batch], flipped)


def features(featurizer: Featurizer, fit_on: list[LabeledBlob], items: list[LabeledBlob]
             ) -> np.ndarray:
    """The features the report computes: fitted on the dataset, then of ``items``."""
    def pairs(blobs: list[LabeledBlob]) -> list[tuple[bytes, str]]:
        return [(b.data, b.media_type) for b in blobs]

    featurizer.fit(pairs(fit_on), names=[b.cid for b in fit_on])  # type: ignore[call-arg]
    return np.asarray(featurizer.transform(pairs(items),  # type: ignore[call-arg]
                                           names=[b.cid for b in items]))


def fine_tune_gains(base: list[LabeledBlob], val: list[LabeledBlob], clean: list[LabeledBlob],
                    noisy: list[LabeledBlob], cache_dir: str | os.PathLike[str] | None
                    ) -> dict[str, int]:
    from databright.training import fine_tune_gain, train_dataset
    from databright.training.records import Record

    def records(items: list[LabeledBlob]) -> list[Record]:
        return [Record(b.cid, b.label, b.media_type, (lambda d=b.data: d)) for b in items]

    trained = train_dataset(records(base), records(val), "efficientnet-head", cache_dir=cache_dir)
    out = {"base_bps": trained.accuracy_bps}
    for name, batch in (("clean", clean), ("random", noisy)):
        out[f"{name}_gain_bps"] = fine_tune_gain(trained.checkpoint, records(batch), records(val),
                                                 cache_dir=cache_dir).gain_bps
    return out


def run_seed(seed: int, data: tuple[list[bytes], list[str], np.ndarray], sizes: dict[str, int],
             methods: list[str], featurizers: dict[str, Featurizer],
             cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    pngs, cids, y = data
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    nb, nv, nbatch = sizes["base"], sizes["validation"], sizes["batch"]
    ib, iv, ix = order[:nb], order[nb:nb + nv], order[nb + nv:nb + nv + nbatch]
    y_batch, flipped = flip(y[ix], FLIP, rng)
    base, val = blobs(ib, y[ib], pngs, cids), blobs(iv, y[iv], pngs, cids)
    batch = blobs(ix, y_batch, pngs, cids)
    clean = blobs(ix, y[ix], pngs, cids)
    noisy = blobs(ix, rng.integers(0, 10, nbatch), pngs, cids)
    out: dict[str, Any] = {"detection": {}, "gain": {}}
    for fname, featurizer in featurizers.items():
        det: dict[str, Any] = {}
        for method in methods:
            t0 = time.perf_counter()
            rep = evaluate_proposal(base, batch, val, LABELS, featurizer=featurizer,
                                    method=method, seed=seed)  # type: ignore[arg-type]
            det[method] = scores(np.array([it["suspect"] for it in rep.items]),
                                 np.array([it["value"] for it in rep.items]), flipped)
            det[method]["seconds"] = time.perf_counter() - t0
        x = features(featurizer, base, [*base, *batch])
        labels = np.concatenate([y[ib], y_batch])
        t0 = time.perf_counter()
        det["cleanlab"] = cleanlab_scores(x, labels, slice(nb, None), flipped, seed)
        det["cleanlab"]["seconds"] = time.perf_counter() - t0
        out["detection"][fname] = det
        gains = {}
        for name, b in (("clean", clean), ("random", noisy)):
            rep = evaluate_proposal(base, b, val, LABELS, featurizer=featurizer, method="knn")
            gains[f"{name}_knn_gain"] = rep.gain
            gains[f"{name}_utility_gain"] = rep.utility_gain
        out["gain"][fname] = gains
    out["gain"]["fine_tune"] = fine_tune_gains(base, val, clean, noisy, cache_dir)
    return out


def mean_over(runs: list[dict[str, Any]], *path: str) -> float:
    vals = []
    for r in runs:
        for key in path:
            r = r[key]
        vals.append(float(r))  # type: ignore[arg-type]
    return float(np.mean(vals))


def summarise(runs: list[dict[str, Any]], methods: list[str], featurizers: list[str]
              ) -> dict[str, Any]:
    detection: dict[str, Any] = {}
    for f in featurizers:
        detection[f] = {m: {k: mean_over(runs, "detection", f, m, k)
                            for k in ("precision", "recall", "auc", "seconds")}
                        for m in [*methods, "cleanlab"]}
    gain: dict[str, Any] = {f: {k: mean_over(runs, "gain", f, k) for k in runs[0]["gain"][f]}
                            for f in [*featurizers, "fine_tune"]}
    # seeds in which a clean batch gains (> 0) and the random-label batch loses (< 0)
    signs: dict[str, dict[str, int]] = {}
    for f in [*featurizers, "fine_tune"]:
        kinds = ("_gain_bps",) if f == "fine_tune" else ("_knn_gain", "_utility_gain")
        for kind in kinds:
            name = "fine_tune" if f == "fine_tune" else f"{f}{kind}"
            signs[name] = {
                "clean_positive": sum(r["gain"][f][f"clean{kind}"] > 0 for r in runs),
                "random_negative": sum(r["gain"][f][f"random{kind}"] < 0 for r in runs),
                "seeds": len(runs)}
    passed = {f"{f}/{m}/{k}": bool(detection[f][m][k] >= t)
              for f in featurizers for m in [*methods, "cleanlab"] for k, t in TARGETS.items()}
    return {"detection": detection, "gain": gain, "gain_signs": signs, "targets": TARGETS,
            "pass": passed}


def table(doc: dict[str, Any]) -> str:
    head = (f"digits as 32×32 PNGs, {FLIP:.0%} of the batch's labels flipped, seeds "
            f"{doc['seeds']}, sizes {doc['sizes']}")
    cols = (f"{'featurizer':18} {'method':9} {'precision':>9} {'recall':>7} {'auc':>7} "
            f"{'s/seed':>7}  targets (P≥{TARGETS['precision']}, R≥{TARGETS['recall']}, "
            f"AUC≥{TARGETS['auc']})")
    lines = [head, cols]
    for f, per in doc["detection"].items():
        for m, s in per.items():
            ok = " ".join(("pass" if doc["pass"][f"{f}/{m}/{k}"] else f"MISS {k} {s[k]:.3f}")
                          for k in TARGETS)
            lines.append(f"{f:18} {m:9} {s['precision']:9.3f} {s['recall']:7.3f} {s['auc']:7.4f} "
                         f"{s['seconds']:7.2f}  {ok}")
    lines.append("")
    lines.append("mean gain of a clean batch / of the same batch with random labels "
                 "(seeds where clean > 0, random < 0)")

    def seeds(name: str) -> str:
        c = doc["gain_signs"][name]
        return f"{c['clean_positive']}/{c['seeds']}, {c['random_negative']}/{c['seeds']}"

    for f, g in doc["gain"].items():
        if f == "fine_tune":
            lines.append(f"  fine-tuned efficientnet-head (base {g['base_bps']:.0f} bps): "
                         f"{g['clean_gain_bps']:+.0f} / {g['random_gain_bps']:+.0f} bps "
                         f"({seeds('fine_tune')})")
        else:
            lines.append(f"  {f}: KNN utility (batch_gain) {100 * g['clean_utility_gain']:+.2f} / "
                         f"{100 * g['random_utility_gain']:+.2f} pts "
                         f"({seeds(f + '_utility_gain')}); KNN accuracy "
                         f"{100 * g['clean_knn_gain']:+.2f} / {100 * g['random_knn_gain']:+.2f} "
                         f"pts ({seeds(f + '_knn_gain')})")
    return "\n".join(lines)


def run(seeds: list[int], sizes: dict[str, int], methods: list[str],
        cache_dir: str | os.PathLike[str] | None = CACHE) -> dict[str, Any]:
    data = digits()
    featurizers = {name: make_featurizer(name, cache_dir) for name in FEATURIZERS}
    t0 = time.perf_counter()
    runs = [run_seed(s, data, sizes, methods, featurizers, cache_dir) for s in seeds]
    return {"seeds": seeds, "sizes": sizes, "methods": methods,
            **summarise(runs, methods, list(FEATURIZERS)), "runs": runs,
            "seconds": time.perf_counter() - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 seeds, knn only")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.quick:
        doc = run([0, 1], {"base": 100, "validation": 50, "batch": 50}, ["knn"])
    else:
        doc = run([0, 1, 2, 3, 4], {"base": 600, "validation": 300, "batch": 300},
                  ["knn", "data_oob"])
    if args.json:
        print(json.dumps(doc))
    else:
        print(table(doc))
        print(f"({doc['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
