"""Valuation benchmark: our KNN-Shapley vs pyDVL's, noisy-label detection, proposal gain.

    python benchmarks/valuation.py            # full run (creates .bench/venv-pydvl on first use)
    python benchmarks/valuation.py --quick    # small sizes, seconds
    python benchmarks/valuation.py --json     # one JSON document on stdout

pyDVL 0.10 pins numpy<2, so it runs in a virtual environment of its own
(``.bench/venv-pydvl``, git-ignored), in a subprocess; arrays go through .npy files.
Values are compared on synthetic tie-free data (continuous features: no exact distance ties,
so both libraries see the same neighbour order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

from databright.valuation import (
    LOO,
    DataOOB,
    KNNShapley,
    KNNUtility,
    MaxSeconds,
    TMCShapley,
    batch_gain,
)

ROOT = Path(__file__).resolve().parent.parent
PYDVL_VENV = ROOT / ".bench" / "venv-pydvl"
PYDVL_VERSION = "0.10.0"
K = 5

PYDVL_SCRIPT = """
import json, sys, time
import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from pydvl.valuation.dataset import Dataset
from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation
d, k = sys.argv[1], int(sys.argv[2])
xt, yt, xv, yv = (np.load(f"{d}/{n}.npy") for n in ("xt", "yt", "xv", "yv"))
train, test = Dataset(xt, yt), Dataset(xv, yv)
start = time.perf_counter()
valuation = KNNShapleyValuation(KNeighborsClassifier(n_neighbors=k), test, progress=False)
valuation.fit(train)
seconds = time.perf_counter() - start
result = valuation.result
values = np.zeros(len(yt))
values[np.asarray(result.indices, dtype=int)] = result.values
np.save(f"{d}/pydvl_values.npy", values)
print(json.dumps({"seconds": seconds}))
"""


def ensure_pydvl(venv: Path = PYDVL_VENV) -> Path:
    """The pyDVL venv's python, creating the venv on first use. Raises RuntimeError on failure."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import pydvl; assert pydvl.__version__ == '{PYDVL_VERSION}'"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", f"pydvl=={PYDVL_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed: {done.stderr.strip()[-800:]}")
    return python


def synthetic(n: int, m: int, seed: int, d: int = 10, classes: int = 3):
    """Tie-free classification data: Gaussian features, labels from a noisy linear rule."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, classes))
    x, xv = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    label = lambda a: np.argmax(a @ w + rng.normal(scale=1.0, size=(a.shape[0], classes)), 1)
    return x, label(x), xv, label(xv)


def ours(x, y, xv, yv, k: int = K) -> tuple[np.ndarray, float, float]:
    """Values, wall seconds and CPU seconds (the latter barely depends on machine load)."""
    start, cpu = time.perf_counter(), time.process_time()
    values = KNNShapley(k=k).fit(x, y, xv, yv).result.values
    return values, time.perf_counter() - start, time.process_time() - cpu


def pydvl(python: Path, x, y, xv, yv, k: int = K) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory() as tmp:
        for name, arr in (("xt", x), ("yt", y), ("xv", xv), ("yv", yv)):
            np.save(f"{tmp}/{name}.npy", arr)
        env = {key: v for key, v in os.environ.items() if key != "PYTHONPATH"}
        done = subprocess.run(
            [str(python), "-c", PYDVL_SCRIPT, tmp, str(k)],
            capture_output=True, text=True, env=env, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pyDVL run failed: {done.stderr.strip()[-800:]}")
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        return np.load(f"{tmp}/pydvl_values.npy"), float(seconds)


def compare_knn(sizes: list[tuple[int, int]], python: Path | None) -> dict[str, Any]:
    """Our KNN-Shapley vs pyDVL's on tie-free data, for (training, validation) sizes.

    pyDVL runs only up to 20k training points (its per-point Python loop is the slow part).
    """
    out: dict[str, Any] = {"rows": [], "knn_max_abs_diff": None}
    diffs = []
    for n, mm in sizes:
        x, y, xv, yv = synthetic(n, mm, seed=n)
        ours_v, ours_s, ours_cpu = ours(x, y, xv, yv)
        row: dict[str, Any] = {"n": n, "m": mm, "ours_s": ours_s, "ours_cpu_s": ours_cpu,
                               "pydvl_s": None, "speedup": None, "max_abs_diff": None}
        if python is not None and n <= 20_000:
            ref, ref_s = pydvl(python, x, y, xv, yv)
            row.update(pydvl_s=ref_s, speedup=ref_s / ours_s,
                       max_abs_diff=float(np.abs(ours_v - ref).max()))
            diffs.append(row["max_abs_diff"])
        out["rows"].append(row)
    out["knn_max_abs_diff"] = max(diffs) if diffs else None
    return out


def noisy_digits(seed: int, noise: float = 0.2):
    """Digits scaled to [0, 1], stratified 75/25 split; ``noise`` of training labels flipped."""
    d = load_digits()
    xt, xv, yt, yv = train_test_split(
        d.data / 16.0, d.target, test_size=0.25, stratify=d.target, random_state=seed
    )
    rng = np.random.default_rng(seed)
    flip = rng.choice(yt.size, round(noise * yt.size), replace=False)
    noisy_y = yt.copy()
    noisy_y[flip] = (yt[flip] + rng.integers(1, 10, flip.size)) % 10  # always another class
    is_noisy = np.zeros(yt.size, dtype=bool)
    is_noisy[flip] = True
    return xt, noisy_y, xv, yv, is_noisy


def detection(values: np.ndarray, is_noisy: np.ndarray) -> tuple[float, float]:
    """AUC of −value for "is noisy", and F1 when the lowest (true noise rate) share is flagged."""
    # a point with no evidence (never out of bag) is ranked as an average one
    score = -np.where(np.isnan(values), np.nanmean(values), values)
    flagged = np.zeros_like(is_noisy)
    flagged[np.argsort(score, kind="stable")[::-1][: int(is_noisy.sum())]] = True
    return float(roc_auc_score(is_noisy, score)), float(f1_score(is_noisy, flagged))


def digits_detection(seeds: list[int], oob_estimators: int, tmc_seconds: float) -> dict[str, Any]:
    methods = ("knn_shapley", "data_oob", "tmc_shapley", "loo")
    auc: dict[str, list[float]] = {m: [] for m in methods}
    f1: dict[str, list[float]] = {m: [] for m in methods}
    secs: dict[str, list[float]] = {m: [] for m in methods}
    for seed in seeds:
        xt, yt, xv, yv, is_noisy = noisy_digits(seed)
        utility = KNNUtility(xt, yt, xv, yv, k=K)
        for name in methods:
            start = time.perf_counter()
            if name == "knn_shapley":
                result = KNNShapley(k=K).fit(xt, yt, xv, yv).result
            elif name == "data_oob":
                result = DataOOB(n_estimators=oob_estimators, seed=seed).fit(xt, yt).result
            elif name == "tmc_shapley":
                result = TMCShapley(stop=MaxSeconds(tmc_seconds), seed=seed).fit(utility).result
            else:  # a fresh utility, so LOO's time includes its own neighbour sort
                result = LOO().fit(KNNUtility(xt, yt, xv, yv, k=K)).result
            secs[name].append(time.perf_counter() - start)
            a, f = detection(result.values, is_noisy)
            auc[name].append(a)
            f1[name].append(f)
    mean = lambda d: {k: float(np.mean(v)) for k, v in d.items()}
    return {"auc": mean(auc), "f1": mean(f1), "seconds": mean(secs), "seeds": seeds,
            "k": K, "oob_estimators": oob_estimators, "tmc_seconds": tmc_seconds}


def gain_check(n_batches: int, seed: int = 0, base_size: int = 300) -> dict[str, Any]:
    """Predicted vs realised gain of random batches (some with flipped labels) on digits."""
    d = load_digits()
    xt, xv, yt, yv = train_test_split(
        d.data / 16.0, d.target, test_size=0.25, stratify=d.target, random_state=seed
    )
    rng = np.random.default_rng(seed)
    base = rng.choice(yt.size, base_size, replace=False)
    pool = np.setdiff1d(np.arange(yt.size), base)
    knn = KNNUtility(xt[base], yt[base], xv, yv, k=K)
    lr = lambda: LogisticRegression(max_iter=300)
    lr_base = lr().fit(xt[base], yt[base]).score(xv, yv)
    predicted, realised_knn, realised_lr = [], [], []
    for _ in range(n_batches):
        batch = rng.choice(pool, int(rng.integers(5, 150)), replace=False)
        yb = yt[batch].copy()
        flip = rng.random(batch.size) < rng.uniform(0, 0.8)
        yb[flip] = (yb[flip] + rng.integers(1, 10, int(flip.sum()))) % 10
        predicted.append(batch_gain(knn, xt[batch], yb))
        xa, ya = np.concatenate([xt[base], xt[batch]]), np.concatenate([yt[base], yb])
        refit = KNNUtility(xa, ya, xv, yv, k=K)
        realised_knn.append(refit(np.arange(ya.size)) - knn(np.arange(base.size)))
        realised_lr.append(lr().fit(xa, ya).score(xv, yv) - lr_base)
    p, rk, rl = map(np.asarray, (predicted, realised_knn, realised_lr))
    return {
        "batches": n_batches,
        "gain_correlation": float(np.corrcoef(p, rk)[0, 1]),
        "gain_max_abs_diff": float(np.abs(p - rk).max()),
        "gain_correlation_logreg": float(np.corrcoef(p, rl)[0, 1]),
    }


def run(quick: bool, with_pydvl: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"quick": quick, "k": K, "pydvl_version": PYDVL_VERSION,
                           "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    python = None
    if with_pydvl:
        try:
            python = ensure_pydvl()
        except RuntimeError as exc:
            doc["pydvl_error"] = str(exc)
    if quick:
        sizes = [(1000, 50), (5000, 50)]
    else:
        sizes = [(1000, 200), (20_000, 200), (100_000, 200), (100_000, 1000)]
    knn = compare_knn(sizes, python=python)
    doc["knn_rows"] = knn["rows"]
    doc["knn_max_abs_diff"] = knn["knn_max_abs_diff"]
    by = {(r["n"], r["m"]): r for r in knn["rows"]}
    row_20k, row_100k = by.get((20_000, 200), {}), by.get((100_000, 200), {})
    doc["ours_s_20k"] = row_20k.get("ours_s")
    doc["pydvl_s_20k"] = row_20k.get("pydvl_s")
    doc["speedup_20k"] = row_20k.get("speedup")
    doc["ours_s_100k"] = row_100k.get("ours_s")  # 200 validation points, like the other rows
    doc["ours_cpu_s_100k"] = row_100k.get("ours_cpu_s")
    row_big = by.get((100_000, 1000), {})
    doc["ours_s_100k_val1000"] = row_big.get("ours_s")
    doc["ours_cpu_s_100k_val1000"] = row_big.get("ours_cpu_s")
    doc["digits"] = digits_detection(
        [0, 1] if quick else [0, 1, 2, 3, 4], oob_estimators=30 if quick else 200,
        tmc_seconds=1.0 if quick else 20.0,
    )
    doc["auc"], doc["f1"] = doc["digits"]["auc"], doc["digits"]["f1"]
    gain = gain_check(10 if quick else 30)
    doc.update(gain)
    doc["load_after"] = os.getloadavg()[0]
    return doc


def table(doc: dict[str, Any]) -> str:
    fmt = lambda v, spec: "—" if v is None else format(v, spec)
    header = (f"{'n':>8} {'val':>5} {'ours s':>8} {'ours cpu':>8} {'pyDVL s':>8} "
              f"{'speedup':>8} {'max|diff|':>10}")
    lines = [header]
    for r in doc["knn_rows"]:
        lines.append(f"{r['n']:>8} {r['m']:>5} {fmt(r['ours_s'], '8.3f')} "
                     f"{fmt(r.get('ours_cpu_s'), '8.3f')} "
                     f"{fmt(r['pydvl_s'], '8.2f')} {fmt(r['speedup'], '7.1f') + '×':>8} "
                     f"{fmt(r['max_abs_diff'], '10.1e')}")
    if "load_before" in doc:
        lines.append(f"load average {doc['load_before']:.1f} → {doc['load_after']:.1f} "
                     f"on {doc['cpus']} CPUs (wall times grow with it; CPU times much less)")
    if "pydvl_error" in doc:
        lines.append(f"pyDVL not run: {doc['pydvl_error']}")
    lines.append("")
    lines.append(f"digits, 20% flipped, seeds {doc['digits']['seeds']}, K={doc['k']}")
    lines.append(f"{'method':<12} {'AUC':>7} {'F1':>7} {'s/seed':>8}")
    for m in doc["auc"]:
        lines.append(f"{m:<12} {doc['auc'][m]:7.4f} {doc['f1'][m]:7.4f} "
                     f"{doc['digits']['seconds'][m]:8.2f}")
    lines.append("")
    lines.append(f"gain, {doc['batches']} batches: corr(predicted, realised KNN) = "
                 f"{doc['gain_correlation']:.6f} (max |diff| {doc['gain_max_abs_diff']:.1e}); "
                 f"corr(predicted KNN, realised logistic regression) = "
                 f"{doc['gain_correlation_logreg']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--no-pydvl", action="store_true", help="skip the pyDVL comparison")
    args = parser.parse_args(argv)
    doc = run(args.quick, with_pydvl=not args.no_pydvl)
    print(json.dumps(doc, indent=2) if args.json else table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
