"""``databright coordinator serve``: the coordinator as a service for HTTP-pull workers (an HTTP
service, so it lives in ``web``; the jobs it runs are ``market.compute``'s).

The service publishes the workers' API (``docs/compute-protocol.md``) over one lease board and
runs, one at a time, every open job on chain that names its enclave key: it plans the job over
the workers registered for it, serves their leases, judges every task under TMR, signs the
receipt and settles. A prediction job (its stored spec's kind ``predict``) runs through
``market.compute.predict_execute`` on the same board and workers. On the embedded chain it
opens the home only while it reads or writes the chain (between jobs, a poll a second), so
other commands on the same home get their turn; a job holds it from start to settlement.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from databright.errors import DataBrightError
from databright.home import Home
from databright.market.compute.coordinator import Coordinator, open_coordinator
from databright.market.compute.execute import Executed, execute_train, receipt_path
from databright.market.compute.executor import RemoteExecutor
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.compute.board import Lease, TaskBoard
    from databright.compute.scheduler import WorkerInfo
    from databright.market.compute.run import _Run

__all__ = ["CoordinatorService"]

log = logging.getLogger("databright.coordinator")


class _Addresses:
    """The board as the HTTP layer sees it: addresses in any case mean the same account."""

    def __init__(self, board: TaskBoard) -> None:
        self._board = board
        self.max_payload_bytes = board.max_payload_bytes

    @property
    def clock(self) -> Callable[[], float]:
        return self._board.clock

    @property
    def published(self) -> dict[str, str]:
        return self._board.published

    def lease(self, account: str) -> Lease | None:
        return self._board.lease(account.lower())

    def commit(self, account: str, lease_id: str, sha256_hex: str) -> bool:
        return self._board.commit(account.lower(), lease_id, sha256_hex)

    def reveal(self, account: str, lease_id: str, payload: bytes) -> None:
        self._board.reveal(account.lower(), lease_id, payload)

    def allowed_cids(self, account: str) -> set[str]:
        return self._board.allowed_cids(account.lower())

    def status(self, task_ids: Any = None) -> Any:
        return self._board.status(task_ids)

    def leases_of(self, account: str) -> Any:
        return self._board.leases_of(account.lower())

    def watch(self, callback: Callable[[], None]) -> None:
        self._board.watch(callback)


class CoordinatorService:
    """The coordinator of ``home`` serving HTTP workers; ``operator`` pays its gas.

    Use :meth:`app` for the ASGI app and :meth:`run_jobs` (a thread) for the job loop.
    """

    def __init__(self, home: Home, operator: Signer, *, poll_seconds: float = 1.0,
                 on_job: Callable[[Executed], None] | None = None) -> None:
        from databright.compute.board import TaskBoard
        from databright.storage.cas import open_store

        self.home = home
        self.operator = operator
        self.poll_seconds = poll_seconds
        self.on_job = on_job
        with Deployment(home) as dep:
            self.coordinator: Coordinator = open_coordinator(dep, operator)
            self.store = open_store(home.store_url(dep.config))
            self.pool = self._pool(dep)
        self.board = TaskBoard(time.monotonic, spare=self._spare)
        self.current: _Run | None = None
        self.stop = threading.Event()
        self.done: list[Executed] = []
        self.errors: list[str] = []

    # -- what the HTTP layer asks -------------------------------------------------------------
    def app(self) -> Any:
        from databright.web.coordinator_server import create_app

        return create_app(_Addresses(self.board), self.store.get, self.authorize,  # type: ignore[arg-type]
                          attestation=self.attest)

    def authorize(self, address: str) -> str | None:
        """None for an active worker registered for this coordinator, else the reason."""
        account = address.lower()
        if account not in {w.account for w in self.pool}:
            return f"not an active worker of coordinator {self.coordinator.address}"
        run = self.current
        if run is not None and account in run.banned:
            return "banned from the running job (its result differed from the coordinator's)"
        return None

    def attest(self, nonce: bytes) -> tuple[bytes, str]:
        return self.coordinator.evidence(nonce), self.coordinator.address

    def _spare(self, task_id: str, failed: str) -> str | None:
        run = self.current
        return run.spare(task_id, failed) if run is not None else None

    # -- the job loop ---------------------------------------------------------------------------
    def _pool(self, dep: Deployment) -> list[WorkerInfo]:
        from databright.compute.scheduler import WorkerInfo
        from databright.market.compute.pool import pool_of

        return [WorkerInfo(w.account.lower(), w.determinism_class.removeprefix("0x"), w.min_fee)
                for w in pool_of(dep, self.coordinator.address)]

    def open_jobs(self, dep: Deployment) -> list[int]:
        """Open jobs on chain naming this coordinator that it has not settled yet."""
        me = self.coordinator.address.lower()
        out = []
        for log_ in dep.compute.logs("JobCreated"):
            args = log_["args"]
            job_id = int(args["job_id"])
            if args["coordinator"].lower() != me or receipt_path(dep, job_id).exists():
                continue
            if dep.compute.get_job(job_id).status == "open":
                out.append(job_id)
        return sorted(out)

    def run_once(self) -> Executed | None:
        """Run the oldest open job naming this coordinator, if any."""
        with Deployment(self.home) as dep:
            self.pool = self._pool(dep)
            jobs = self.open_jobs(dep)
            if not jobs:
                return None
            job_id = jobs[0]
            log.info("job #%d: starting on %d registered workers", job_id, len(self.pool))
            try:
                done = self._execute(dep, job_id)
            except DataBrightError as exc:
                self.errors.append(f"job #{job_id}: {exc}")
                log.error("job #%d failed and was settled as aborted: %s", job_id, exc)
                return None
            finally:
                self.current = None
        log.info("job #%d settled: receipt %s", job_id, done.path)
        self.done.append(done)
        if self.on_job is not None:
            self.on_job(done)
        return done

    def _execute(self, dep: Deployment, job_id: int) -> Any:
        from databright.market.compute.predict_execute import execute_predict
        from databright.market.compute.predict_job import is_prediction_spec

        run = execute_train
        if is_prediction_spec(dep.store.get(dep.compute.get_job(job_id).spec_cid)):
            run = execute_predict  # type: ignore[assignment]
        return run(dep, self.operator, self.coordinator, job_id, self.pool, self.board,
                   RemoteExecutor(), on_run=lambda r: setattr(self, "current", r))

    def run_jobs(self) -> None:
        """Poll for jobs until :attr:`stop` is set."""
        while not self.stop.is_set():
            try:
                if self.run_once() is None:
                    self.stop.wait(self.poll_seconds)
            except Exception:
                log.exception("coordinator job loop")
                self.stop.wait(self.poll_seconds)
