"""Run every benchmark in one go: ``python benchmarks/run_all.py [--quick]``.

Each script measures its anchor in the same run and prints its own table; this runner collects
their ``--json`` output into ``benchmarks/results/all.json`` and prints a one-screen summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["gas.py", "ingest.py", "valuation.py", "evaluation.py", "index.py", "predict.py",
           "collusion.py", "compute_faults.py", "compute_overhead.py", "spot.py",
           "predict_jobs.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick where a script has it")
    args = parser.parse_args()
    results: dict[str, object] = {}
    failed = []
    for script in SCRIPTS:
        argv = [sys.executable, str(HERE / script), "--json"]
        if args.quick and "--quick" in (HERE / script).read_text():
            argv.append("--quick")
        print(f"== {script}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            failed.append(script)
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        results[script] = json.loads(proc.stdout)
        print(json.dumps(results[script], indent=1)[:3000])
        print(f"   ({took:.0f} s)")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "all.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'all.json'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
