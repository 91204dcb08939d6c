"""Worker identities pulling from a coordinator over HTTP, in a process of their own.

``python -m tests.market.http_workers URL KEYFILE [FAULT_INDEX:MODE]``: one thread per key
(hex private keys, one a line); they share this process and compute one task at a time (torch
settings are per process), as the embedded executor's identities do. SIGTERM stops them.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


def main() -> None:
    from databright.chain.accounts import signer_from_key
    from databright.market.compute import remote_worker

    url, keyfile = sys.argv[1], Path(sys.argv[2])
    faults = dict(a.split(":") for a in sys.argv[3:])
    keys = [signer_from_key(k) for k in keyfile.read_text().split()]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    honest = remote_worker.honest_compute

    def serialized(spec: bytes, fetch):  # type: ignore[no-untyped-def]
        with lock:
            return honest(spec, fetch)

    remote_worker.honest_compute = serialized  # type: ignore[assignment]
    threads = [threading.Thread(target=remote_worker.work, args=(url, key),
                                kwargs={"stop": stop, "fault": faults.get(str(i))}, daemon=True)
               for i, key in enumerate(keys)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    stop.wait()
    for t in threads:
        t.join(timeout=30)


if __name__ == "__main__":
    main()
