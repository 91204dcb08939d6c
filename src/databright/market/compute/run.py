"""One job's tasks under triple modular redundancy: post, let workers answer, judge, pay.

:class:`_Run` is the coordinator's bookkeeping for one job: the current replicas of every shard
(a liar or a silent worker is replaced by a spare the scheduler approves under the cap), the
exposure it records *before* a task is offered to an account, the verdict chain, and the tasks
each account answered right. The executor only moves tasks; every decision is made here.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from databright.errors import DataBrightError, UsageError
from databright.market.compute.receipts import RECEIPT_VERSION

if TYPE_CHECKING:
    from databright.compute.board import TaskBoard
    from databright.compute.exposure import ExposureLedger
    from databright.compute.scheduler import Plan
    from databright.compute.spec import TaskSpec
    from databright.market.compute.coordinator import Coordinator
    from databright.market.compute.executor import Executor
    from databright.market.context import Deployment

__all__ = ["LEASE_SECONDS"]

LEASE_SECONDS = 60.0
AUDIT_PPM = 20_000  # the coordinator recomputes 2 % of the unanimous tasks, drawn in secret


class _Run:
    def __init__(self, dep: Deployment, coordinator: Coordinator, plan: Plan,
                 ledger: ExposureLedger, ledger_key: str, n_items: int, cap_bps: int,
                 records: list[Any], board: TaskBoard) -> None:
        from databright.compute.tmr import VerdictChain

        self.dep, self.coordinator, self.plan = dep, coordinator, plan
        self.ledger, self.key, self.n_items, self.cap_bps = ledger, ledger_key, n_items, cap_bps
        self.records = records
        self.replicas = {s.index: list(s.replicas) for s in plan.shards}
        self.banned: set[str] = set()
        self.correct: dict[str, int] = {}
        self.tasks = 0
        self.recomputed = 0
        self.audits = 0  # unanimous tasks the coordinator recomputed anyway
        self.stand_ins = 0  # replica slots the coordinator fills itself (no spare under the cap)
        self.reissued: dict[str, int] = {}  # per account: its leases dropped at their deadline
        self.chain = VerdictChain()
        self.board = board  # its spare callback must reach self.spare
        board.published.clear()  # nothing is published to workers under TMR
        self._sent: set[tuple[str, int]] = set()
        self._shard_of_task: dict[str, int] = {}
        self._failed: dict[int, set[str]] = {}

    # -- exposure ---------------------------------------------------------------------------
    def _send(self, account: str, shard: int) -> None:
        """Record the shard's items as sent to ``account`` (the ledger refuses past the cap)."""
        if (account, shard) in self._sent:
            return
        items = self.plan.shards[shard].items
        self.ledger.record(account, self.key, items, n_items=self.n_items, cap_bps=self.cap_bps)
        self._sent.add((account, shard))

    def _send_all(self, pairs: list[tuple[str, int]]) -> None:
        """:meth:`_send` for a step's replicas in one durable ledger transaction."""
        new = list(dict.fromkeys(p for p in pairs if p not in self._sent))
        if not new:
            return
        self.ledger.record_many([(a, self.plan.shards[s].items) for a, s in new], self.key,
                                n_items=self.n_items, cap_bps=self.cap_bps)
        self._sent.update(new)

    def spare(self, task_id: str, failed: str) -> str | None:
        failed = failed.lower()
        shard = self._shard_of_task[task_id]
        self._failed.setdefault(shard, set()).add(failed)
        self.reissued[failed] = self.reissued.get(failed, 0) + 1
        exclude = self.banned | self._failed[shard] | set(self.replicas[shard])
        account = self.plan.spare(shard, exclude=exclude)
        if account is None:
            if failed in self.replicas[shard]:  # no headroom: the coordinator stands in
                self.replicas[shard].remove(failed)
                self.stand_ins += 1
            return None
        self._send(account, shard)
        if failed in self.replicas[shard]:  # a silent worker: the spare takes its place
            self.replicas[shard][self.replicas[shard].index(failed)] = account
        return account

    # -- one step ---------------------------------------------------------------------------
    def step(self, specs: Mapping[int, TaskSpec], executor: Executor) -> dict[int, bytes]:
        """Run one step's tasks to their verdicts; the accepted payload per shard."""
        accepted: dict[int, bytes] = {}
        # every replica's items are recorded (one commit) before any task of the step is offered
        self._send_all([(a, shard) for shard in specs for a in self.replicas[shard]])
        for shard, spec in specs.items():
            reps = self.replicas[shard]
            if not reps:  # every replica lied and none can be replaced: the coordinator computes
                accepted[shard] = self._judge(spec, shard, {})
                continue
            cids = frozenset({spec.weights.cid, *(i.cid for i in spec.items)})
            self._shard_of_task[spec.task] = shard
            self.board.post(spec.task, spec.to_bytes(), cids, tuple(reps), LEASE_SECONDS)
        pending = {spec.task: (shard, spec) for shard, spec in specs.items()
                   if shard not in accepted}
        while pending:
            answered = executor.pump(self.board)
            for task_id, (shard, spec) in list(pending.items()):
                results = self.board.results(task_id)
                if results is None:
                    continue
                accepted[shard] = self._judge(spec, shard, results)
                self.board.remove(task_id)
                del pending[task_id]
            if pending and answered == 0:
                executor.idle()
        return accepted

    def _judge(self, spec: TaskSpec, shard: int, results: Mapping[str, bytes]) -> bytes:
        """The verdict of one task; liars are banned and replaced for the rest of the job."""
        from databright.compute.grad import check_result, result_digest, run_task
        from databright.compute.tmr import decide

        results = {a.lower(): p for a, p in results.items()}
        shapes = self._shapes(spec)
        digests: dict[str, str | None] = {}
        checked: dict[str, bool] = {}  # digest → well-formed (the same bytes are checked once)
        valid = True
        for account, payload in results.items():
            sha = digests[account] = result_digest(payload)
            if sha not in checked:
                try:
                    check_result(payload, spec.job, spec.task, shapes)
                    checked[sha] = True
                except DataBrightError:
                    checked[sha] = False
            # a malformed answer is a wrong answer: never accepted unchecked
            valid = valid and checked[sha]
        mine: dict[str, bytes] = {}

        def recompute() -> str:
            mine["payload"] = run_task(spec, self.dep.store.get)
            return result_digest(mine["payload"])

        # fewer than three answers, or a malformed one: the coordinator decides by recomputing.
        # A secret spot check of unanimous tasks: three colluders holding one shard would
        # otherwise pass every step of it (docs/compute-jobs.md, "The trust model").
        audit = valid and secrets.randbelow(1_000_000) < AUDIT_PPM
        if audit:
            self.audits += 1
        verdict = decide(spec.task, digests, recompute, audit=audit,
                         replicas=3 if valid else len(digests) + 1)
        unanimous = valid and len(digests) >= 3 and len(set(digests.values())) == 1
        if verdict.recomputed and not unanimous:
            self.recomputed += 1  # the replicas disagreed (or too few answered)
        self.chain.append(verdict)
        self.tasks += 1
        for account, digest in digests.items():
            if digest == verdict.accepted:
                self.correct[account] = self.correct.get(account, 0) + 1
        for liar in verdict.liars:
            self._ban(liar)
        if "payload" in mine:
            return mine["payload"]
        for account, payload in results.items():
            if digests[account] == verdict.accepted:
                return payload
        raise UsageError(f"task {spec.task}: no answer matches the verdict")  # unreachable

    def _ban(self, account: str) -> None:
        if account in self.banned:
            return
        self.banned.add(account)
        for shard, reps in self.replicas.items():
            if account in reps:
                spare = self.plan.spare(shard, exclude=self.banned | set(reps))
                if spare is None:  # no headroom left: the coordinator stands in for the liar
                    reps.remove(account)
                    self.stand_ins += 1
                    continue
                self._send(spare, shard)
                reps[reps.index(account)] = spare

    def _shapes(self, spec: TaskSpec) -> dict[str, tuple[int, ...]]:
        from databright.compute.grad import grad_shapes
        from databright.training import load_checkpoint

        if not hasattr(self, "_shape_cache"):
            ckpt = load_checkpoint(self.dep.store, spec.weights.cid, spec.weights.sha256)
            self._shape_cache = grad_shapes(ckpt)
        return self._shape_cache

    # -- the receipt --------------------------------------------------------------------------
    def body(self, *, job_id: int, kind: str, spec_cid: str, spec: Mapping[str, Any],
             model_in: str | None, model_out: str | None, metric_bps: int,
             fees: Mapping[str, int]) -> dict[str, Any]:
        from databright.chain.wrapper import checksum

        dep = self.dep
        accounts = sorted({a for reps in self.replicas.values() for a in reps}
                          | {a for a, _ in self._sent} | self.banned)
        exposures = self.ledger.exposures(self.key)
        workers = []
        for account in accounts:
            paid = 0 if account in self.banned else self.correct.get(account, 0) * fees[account]
            workers.append({
                "account": checksum(account), "tasks": self.correct.get(account, 0),
                "exposure_items": exposures.get(account, 0),
                "exposure": exposures.get(account, 0) / self.n_items, "fee": str(paid),
            })
        return {
            "version": RECEIPT_VERSION, "chain_id": dep.compute.chain_id(),
            "market": dep.compute.address, "job_id": int(job_id), "kind": kind,
            "coordinator": self.coordinator.address,
            "attestation": {"kind": self.coordinator.kind,
                            "evidence_cid": self.coordinator.evidence_cid},
            "program_digest": spec["program_digest"], "spec_cid": spec_cid,
            "dataset_id": int(spec["dataset_id"]), "dataset_root": spec["dataset_root"],
            "snapshot": int(spec["snapshot"]), "model_in": model_in, "model_out": model_out,
            "metric_bps": int(metric_bps), "tasks": self.tasks, "recomputed": self.recomputed,
            "verdicts_head": self.chain.head, "stand_ins": self.stand_ins,
            "audits": self.audits, "cap_bps": self.cap_bps,
            "items": self.n_items, "workers": workers,
            "liars": [checksum(a) for a in sorted(self.banned)],
            "verification": {"mode": "tmr"},
        }
