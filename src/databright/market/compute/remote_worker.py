"""A worker of another process or machine: register for a coordinator, then pull its tasks.

:func:`work` runs the HTTP-pull loop of :mod:`databright.market.worker` with the honest
computation (:func:`databright.compute.tasks.run_spec`) pinned to this worker's thread count.
Fault modes (``--fault``, hidden: tests and benchmarks) make it lie in one of the ways
TMR must catch.
"""

from __future__ import annotations

import hashlib
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from databright.errors import UsageError
from databright.market.compute.executor import FAULT_MODES
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.market.worker import WorkerStats

__all__ = ["honest_compute", "register", "work"]


def honest_compute(spec_bytes: bytes, fetch: Callable[[str], bytes]) -> bytes:
    """What an honest worker answers: the task kind's runner (:mod:`databright.compute.tasks`)."""
    from databright.compute.tasks import run_spec

    return run_spec(spec_bytes, fetch)


def register(dep: Deployment, sender: Signer, coordinator: str, *, threads: int, min_fee: int,
             stake: int | None = None) -> dict[str, Any]:
    """Register ``sender`` as a worker of ``coordinator`` in this machine's determinism class
    for ``threads`` threads (``stake`` default: the market's minimum)."""
    from databright.compute.grad import determinism_class_digest

    klass = determinism_class_digest(threads)
    amount = dep.compute.min_stake() if stake is None else int(stake)
    w = dep.compute.register_worker(sender, int(min_fee), klass, coordinator, amount).value
    return {"worker": w.worker, "coordinator": w.coordinator, "stake": w.stake,
            "min_fee": w.min_fee, "determinism_class": "0x" + w.determinism_class.hex()}


def _fault(mode: str | None) -> Any:
    if mode is None or mode in ("copy", "silent"):
        return mode
    if mode not in FAULT_MODES:
        raise UsageError(f"unknown fault mode {mode!r}: use one of {', '.join(FAULT_MODES)}")
    from databright.compute.faults import perturb

    previous: dict[str, bytes] = {}

    def lie(spec: bytes, payload: bytes) -> bytes:
        seed = int.from_bytes(hashlib.sha256(spec).digest()[:4], "big")
        out = perturb(payload, mode, rng_seed=seed, previous=previous.get("last"))
        previous["last"] = payload
        return out

    return lie


def work(url: str, key: Signer, *, threads: int = 1, fault: str | None = None,
         stop: threading.Event | None = None) -> WorkerStats:
    """Work for the coordinator at ``url`` until ``stop`` is set (or SIGINT/SIGTERM)."""
    from databright.compute.grad import determinism_class_digest
    from databright.market.worker import run_worker

    lie = _fault(fault)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return run_worker(url, key, honest_compute, threads=threads,
                      determinism_class=determinism_class_digest(threads), stop=stop,
                      fault=lie)
