"""Ingestion speed: DataBright against ``git add`` (and ``dvc add`` when installed), same run.

Generates one folder (default 20,000 files of 4 KiB of random bytes in 10 label folders), then,
``--repeats`` times each, into a fresh store / repository every time:

* DataBright: ``python -c "ingest(folder, open_store(store))"`` in a new interpreter, so the time
  includes start-up and imports, as the CLI would pay them (the ingest call alone is also shown);
  it hashes, checks, stores every blob durably (one ``syncfs`` per chunk), writes the manifest
  and computes the Merkle root;
* git: ``git add -A`` into a fresh repository (hash, zlib-compress and write every object, write
  the index); git does not fsync loose objects by default;
* dvc (optional second anchor, in its own venv at ``.bench/dvc-venv`` or on PATH): ``dvc add``
  of the folder in a fresh ``dvc init --no-scm`` project.

The page cache is warmed by reading every file once before timing. Figures are medians.

Usage: ``python benchmarks/ingest.py [--files N] [--size BYTES] [--repeats R] [--json]``.
Writes the same JSON to ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DVC_VENV = ROOT / ".bench" / "dvc-venv" / "bin" / "dvc"

INGEST = (
    "import sys, time, json\n"
    "t = time.perf_counter()\n"
    "from databright.storage import ingest, open_store\n"
    "r = ingest(sys.argv[1], open_store(sys.argv[2]), workers=2)\n"
    "print(json.dumps({'items': r.item_count, 'ingest_s': time.perf_counter() - t}))\n"
)


def generate(folder: Path, files: int, size: int, labels: int) -> None:
    rng = random.Random(42)
    for lab in range(labels):
        (folder / f"label{lab}").mkdir(parents=True)
    for i in range(files):
        with open(folder / f"label{i % labels}" / f"{i:06d}.bin", "wb") as f:
            f.write(rng.randbytes(size))


def warm(folder: Path) -> None:
    for dirpath, _, names in os.walk(folder):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as f:
                f.read()


def time_databright(folder: Path, work: Path) -> tuple[float, float, int]:
    store = work / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", INGEST, str(folder), str(store)], env=env,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    info = json.loads(out.stdout)
    shutil.rmtree(store)
    return wall, info["ingest_s"], info["items"]


def time_git(folder: Path, work: Path) -> float:
    gitdir = work / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(gitdir)], check=True)
    env = {**os.environ, "GIT_DIR": str(gitdir), "GIT_WORK_TREE": str(folder)}
    t = time.perf_counter()
    subprocess.run(["git", "add", "-A", "."], cwd=folder, env=env, check=True)
    elapsed = time.perf_counter() - t
    shutil.rmtree(gitdir)
    return elapsed


def dvc_binary() -> str | None:
    if DVC_VENV.exists():
        return str(DVC_VENV)
    return shutil.which("dvc")


def time_dvc(dvc: str, folder: Path, work: Path) -> float:
    project = work / "dvcproj"
    project.mkdir()
    data = project / "data"
    shutil.copytree(folder, data)  # dvc tracks data inside its project
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=project, check=True)
    t = time.perf_counter()
    subprocess.run([dvc, "add", "-q", "data"], cwd=project, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    elapsed = time.perf_counter() - t
    shutil.rmtree(project)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-dvc", action="store_true", help="skip the dvc anchor")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="databright-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        folder = work / "data"
        generate(folder, args.files, args.size, args.labels)
        warm(folder)
        dvc = None if args.no_dvc else dvc_binary()
        db_wall, db_call, git_s, dvc_s = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so background load hits both alike
            wall, call, items = time_databright(folder, work)
            assert items == args.files, f"DataBright ingested {items} of {args.files} files"
            db_wall.append(wall)
            db_call.append(call)
            git_s.append(time_git(folder, work))
            if dvc:
                dvc_s.append(time_dvc(dvc, folder, work))

    result: dict[str, object] = {
        "files": args.files,
        "file_size": args.size,
        "labels": args.labels,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "databright_s": round(statistics.median(db_wall), 3),
        "databright_ingest_call_s": round(statistics.median(db_call), 3),
        "git_add_s": round(statistics.median(git_s), 3),
        "ratio": round(statistics.median(db_wall) / statistics.median(git_s), 3),
        "runs": {"databright_s": [round(x, 3) for x in db_wall], "git_add_s": [round(x, 3) for x in git_s]},
    }
    if dvc_s:
        result["dvc_add_s"] = round(statistics.median(dvc_s), 3)
        result["dvc_ratio"] = round(statistics.median(db_wall) / statistics.median(dvc_s), 3)
        result["runs"]["dvc_add_s"] = [round(x, 3) for x in dvc_s]  # type: ignore[index]
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ingest.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
        return
    print(f"ingest {args.files} files of {args.size} B in {args.labels} label folders "
          f"(median of {args.repeats}, {os.cpu_count()} CPUs)")
    print(f"  {'DataBright (new process)':28s} {result['databright_s']:8.3f} s")
    print(f"  {'DataBright (ingest call)':28s} {result['databright_ingest_call_s']:8.3f} s")
    print(f"  {'git add':28s} {result['git_add_s']:8.3f} s")
    if dvc_s:
        print(f"  {'dvc add':28s} {result['dvc_add_s']:8.3f} s")
    print(f"  ratio DataBright / git add      {result['ratio']:.3f}  (target <= 1.0)")
    if dvc_s:
        print(f"  ratio DataBright / dvc add      {result['dvc_ratio']:.3f}")


if __name__ == "__main__":
    main()
