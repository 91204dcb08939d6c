"""Crash safety: SIGKILL an ingestion at random points, many times.

After every kill the store holds no partial blob, no manifest names a missing blob, and no
temporary file survives the next open; re-running completes with the same manifest CID and root.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time

import pytest

from databright.storage.cas import _pid_alive, open_store
from databright.storage.manifest import InvalidManifestError, read_manifest

KILLS = 20
RUN = (
    "import sys\n"
    "from databright.storage import ingest, open_store\n"
    "r = ingest(sys.argv[1], open_store(sys.argv[2]), workers=2)\n"
    "print(r.manifest_cid, r.merkle_root.hex())\n"
)


def run_ingest(src, store_path, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, str(src), str(store_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def manifests_in(store) -> list[str]:
    found = []
    for cid in store.iter_cids():
        with open(store.path_of(cid), "rb") as f:
            if f.read(4) != b"PAR1":
                continue
        try:
            read_manifest(store, cid)
        except InvalidManifestError:
            continue
        found.append(cid)
    return found


def wait_for_writers_to_die(store_path, timeout: float = 10.0) -> None:
    """SIGKILL reaches the worker processes through PR_SET_PDEATHSIG a moment after the parent."""
    deadline = time.monotonic() + timeout
    tmp = store_path / "tmp"
    while tmp.exists():
        pids = {int(p) for n in tmp.iterdir() for p in n.name.split("-")[:2]}  # owner, writer
        if not any(_pid_alive(pid) for pid in pids):
            return
        assert time.monotonic() < deadline, f"ingestion workers {pids} outlived the killed parent"
        time.sleep(0.02)


def check_store(store_path) -> tuple[int, int]:
    """The crash-safety invariants; returns (temporary files left by the crash, blobs held)."""
    wait_for_writers_to_die(store_path)
    temps = len(list((store_path / "tmp").rglob("*.tmp"))) if (store_path / "tmp").exists() else 0
    store = open_store(store_path)  # reopening removes dead writers' temporary files
    assert list(store.tmp.iterdir()) == [], "a temporary file survived its dead writer"
    assert store.fsck() == {}, "a partial or corrupted blob is in the store"
    for m in manifests_in(store):
        missing = [it.cid for it in read_manifest(store, m) if not store.has(it.cid)]
        assert not missing, f"manifest {m} names missing blobs {missing[:3]}"
    return temps, sum(1 for _ in store.iter_cids())


@pytest.mark.slow
def test_sigkill_at_random_points(tmp_path) -> None:
    rng = random.Random(20261123)
    src = tmp_path / "in"
    for i in range(800):
        p = src / f"label{i % 5}" / f"{i:05d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.choice([1, 100, 4096, 20000])) + i.to_bytes(4, "big"))
    (src / "label0" / "large.bin").write_bytes(rng.randbytes(9 << 20))  # the streamed path too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    t0 = time.monotonic()
    ref = run_ingest(src, tmp_path / "reference", env)
    out, err = ref.communicate(timeout=120)
    full = time.monotonic() - t0
    assert ref.returncode == 0, err
    expected = out.split()
    _, total_blobs = check_store(tmp_path / "reference")

    counts, manifest_after_kill, durations = [], 0, [full]
    for k in range(KILLS):
        # a fresh store each time, so every kill can land in the middle of the writes
        store_path = tmp_path / f"store{k}"
        proc = run_ingest(src, store_path, env)
        # most kills land after the interpreter start-up, where the writing happens; the length of
        # a full run is re-estimated from the re-runs, as the machine's load changes
        full = statistics.median(durations[-5:])
        time.sleep(rng.uniform(0.0, full) if k < 3 else rng.uniform(0.45 * full, 1.02 * full))
        os.kill(proc.pid, signal.SIGKILL)  # only the main process: its workers must die with it
        proc.communicate(timeout=60)
        counts.append(check_store(store_path) if store_path.exists() else (0, 0))
        manifest_after_kill += bool(store_path.exists() and manifests_in(open_store(store_path)))
        t0 = time.monotonic()
        rerun = run_ingest(src, store_path, env)
        out, err = rerun.communicate(timeout=120)
        durations.append(time.monotonic() - t0)
        assert rerun.returncode == 0, err
        assert out.split() == expected, "re-running after a crash gave a different manifest or root"
        assert check_store(store_path) == (0, total_blobs)
    print(f"\n{KILLS} SIGKILLs (full run {full:.2f} s, {total_blobs} blobs); (temporary files, blobs) "
          f"after each kill: {sorted(counts)}; manifest already written in {manifest_after_kill}")
    assert len(set(counts)) >= 2  # the kills landed at different stages (timing varies with load)
