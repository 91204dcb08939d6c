"""Probability that TMR accepts a wrong result when a fraction f of the pool colludes.

    python benchmarks/collusion.py            # 100,000 tasks per configuration (≈ 40 s)
    python benchmarks/collusion.py --quick    # 20,000 tasks per configuration
    python benchmarks/collusion.py --json     # one JSON document on stdout

For a pool of N accounts of one determinism class, m = ⌊f·N⌋ of which collude (they all return
the same wrong digest), each Monte Carlo task draws its three replicas without replacement and
runs them through the real verdict (``databright.compute.tmr.decide``, whose recompute returns
the right digest); a wrong result is accepted only when all three are colluders.

Anchor, computed in the same run: the hypergeometric C(m, 3) / C(N, 3). Reported per
configuration: the analytic value, the Monte Carlo estimate, its 95 % Wilson interval, whether
the interval contains the analytic value, and the ratio estimate / analytic. At 95 % about one
configuration in twenty is expected outside its interval by chance alone.

Per job: a shard keeps its three replicas for the whole job, so the chance that *some* shard of
a job is served by colluders only is larger. Jobs of 1,000 items at 5 % are planned by the real
scheduler with random seeds over the pool (20 disjoint triples); anchor: inclusion-exclusion
over the 20 triples (``p_job_accept_wrong``).
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from databright.compute.collusion import (
    colluders,
    job_monte_carlo,
    monte_carlo,
    p_accept_wrong,
    p_job_accept_wrong,
)

ROOT = Path(__file__).resolve().parent.parent
POOLS = (30, 60, 300)
FRACTIONS = (Fraction(1, 20), Fraction(1, 10), Fraction(1, 5), Fraction(1, 3))
JOB_ITEMS = 1000  # at 5 %: 50 items an account, 60 accounts in 20 disjoint triples


def per_job(jobs: int, seed: int) -> list[dict[str, Any]]:
    """Whole jobs planned by the scheduler: P(some shard's three replicas all collude)."""
    rows = []
    for k, n in enumerate(POOLS[1:]):
        for j, f in enumerate(FRACTIONS):
            m = colluders(n, f)
            hits, shards, ci = job_monte_carlo(n, m, JOB_ITEMS, jobs,
                                               seed=seed * 1000 + 10 * k + j)
            analytic = p_job_accept_wrong(n, m, shards)
            rows.append({"N": n, "f": round(float(f), 4), "colluders": m, "items": JOB_ITEMS,
                         "shards": shards, "analytic": float(analytic), "mc": hits / jobs,
                         "hits": hits, "jobs": jobs, "ci95": list(ci),
                         "within": ci[0] <= float(analytic) <= ci[1]})
    return rows


def run(trials: int, seed: int, jobs: int) -> dict[str, Any]:
    rows = []
    t0 = time.perf_counter()
    for k, n in enumerate(POOLS):
        for j, f in enumerate(FRACTIONS):
            m = colluders(n, f)
            analytic = p_accept_wrong(n, m)
            mc = monte_carlo(n, m, trials, seed=seed * 1000 + 10 * k + j)
            rows.append({
                "N": n, "f": round(float(f), 4), "colluders": m,
                "analytic": float(analytic), "analytic_exact": f"{analytic.numerator}/"
                                                              f"{analytic.denominator}",
                "mc": mc.estimate, "hits": mc.hits, "trials": mc.trials,
                "ci95": [mc.ci[0], mc.ci[1]], "within": mc.contains(analytic),
                "ratio": round(mc.estimate / float(analytic), 4) if analytic else None,
            })
    within = sum(bool(r["within"]) for r in rows)
    jobs_rows = per_job(jobs, seed)
    return {"trials_per_config": trials, "seed": seed, "configs": len(rows),
            "within_ci95": within, "expected_within_ci95": round(0.95 * len(rows), 1),
            "rows": rows, "per_job": jobs_rows,
            "per_job_within_ci95": sum(bool(r["within"]) for r in jobs_rows),
            "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=400, help="planned jobs per per-job row")
    ap.add_argument("--quick", action="store_true", help="20,000 tasks, 100 jobs a row")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    result = run(20_000 if args.quick else args.trials, args.seed,
                 100 if args.quick else args.jobs)
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "collusion.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
        return
    print(f"P(accept a wrong result), 3 replicas without replacement, "
          f"{result['trials_per_config']:,} tasks per row")
    print(f"  {'N':>4} {'f':>6} {'m':>4} {'analytic':>11} {'Monte Carlo':>11} "
          f"{'95% CI':>25} {'within':>6} {'ratio':>7}")
    for r in result["rows"]:
        lo, hi = r["ci95"]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        print(f"  {r['N']:>4} {r['f']:>6.3f} {r['colluders']:>4} {r['analytic']:>11.3e} "
              f"{r['mc']:>11.3e}   [{lo:.3e}, {hi:.3e}] {r['within']!s:>6} {ratio:>7}")
    print(f"  within the 95% interval: {result['within_ci95']}/{result['configs']} "
          f"(≈ {result['expected_within_ci95']} expected)")
    print(f"P(some shard of a job is all colluders), {JOB_ITEMS} items at 5 %, "
          f"{result['per_job'][0]['jobs']} planned jobs per row (inclusion-exclusion anchor)")
    for r in result["per_job"]:
        lo, hi = r["ci95"]
        print(f"  {r['N']:>4} {r['f']:>6.3f} {r['colluders']:>4} {r['shards']:>3} shards "
              f"{r['analytic']:>9.3e} {r['mc']:>9.3e}   [{lo:.3e}, {hi:.3e}] {r['within']!s:>6}")
    print(f"  {result['seconds']} s")


if __name__ == "__main__":
    main()
