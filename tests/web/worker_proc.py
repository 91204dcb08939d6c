"""A worker process for the kill test: ``python -m tests.web.worker_proc URL KEY``. Its compute
blocks forever on a spec that says ``"block": true`` (so the test can kill it mid-task)."""

from __future__ import annotations

import json
import sys
import threading
import time

from databright.market.worker import run_worker
from tests.web.coordinator_world import fake_compute


def compute(spec: bytes, fetch):  # type: ignore[no-untyped-def]
    if json.loads(spec).get("block"):
        fetch(json.loads(spec)["cids"][0])  # the test sees the blob fetched: mid-task
        while True:
            time.sleep(1)
    return fake_compute(spec, fetch)


if __name__ == "__main__":
    run_worker(sys.argv[1], sys.argv[2], compute, threads=1, determinism_class="cls",
               stop=threading.Event(), backoff=0.05)
