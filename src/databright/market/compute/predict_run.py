"""The coordinator's bookkeeping for one prediction job: batches to workers, verdicts, liars.

A prediction job's batches are tasks of kind ``predict`` (:mod:`databright.compute.predict`).
Two verification modes:

- ``tmr``: three distinct accounts answer each batch; results are compared by sha256 with the
  same :func:`~databright.compute.tmr.decide` as training tasks (a disagreement, a malformed
  answer or fewer than three answers: the coordinator recomputes, and every account that differs
  from its result is a liar);
- ``spot``: one account answers each batch; the coordinator re-runs the batches
  :func:`~databright.compute.spot_choice.is_checked` picks under a secret seed it drew when the
  job started (its commitment is in the receipt from the start, the seed revealed at the end).
  A caught liar's earlier accepted batches are redone by others, since any of them may be wrong.

A liar is banned from the rest of the job (its slots go to other accounts), paid nothing, and
named for slashing in the receipt. The consumer's inputs are not dataset items: no exposure cap
applies (the cap protects a dataset's items, and a job's inputs belong to its consumer).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from databright.errors import DataBrightError, UsageError

if TYPE_CHECKING:
    from databright.compute.board import TaskBoard
    from databright.compute.predict import PredictSpec
    from databright.market.compute.executor import Executor

__all__ = ["PredictRun"]

LEASE_SECONDS = 60.0


class PredictRun:
    """One prediction job's tasks, run to their verdicts.

    Args:
        accounts: the pool (lower-case addresses of one determinism class).
        board: the lease board the executor serves (its ``spare`` callback is :meth:`spare`).
        verification: ``tmr`` or ``spot``; spot_ppm: the re-checked fraction in ppm.
        fetch: the coordinator's blob reader (for its own recomputations).
    """

    def __init__(self, accounts: Sequence[str], board: TaskBoard, fetch: Any, *,
                 verification: str = "tmr", spot_ppm: int = 100_000,
                 seed: bytes | None = None) -> None:
        from databright.compute.spot_choice import commitment, draw_seed
        from databright.compute.tmr import VerdictChain

        self.replicas = 3 if verification == "tmr" else 1
        order = sorted({a.lower() for a in accounts})
        secrets.SystemRandom().shuffle(order)  # who answers which batch: the coordinator's secret
        self.accounts = order
        self.board, self.fetch = board, fetch
        self.verification, self.spot_ppm = verification, spot_ppm
        self.seed = seed if seed is not None else draw_seed()
        self.commitment = commitment(self.seed)
        self.chain = VerdictChain()
        self.banned: set[str] = set()
        self.correct: dict[str, int] = {}
        self.answered_by: dict[str, list[str]] = {}  # account → task ids it had accepted
        self.assigned: dict[str, tuple[str, ...]] = {}
        self.tasks = self.recomputed = self.redone = 0
        self.decided: list[str] = []  # spot: every batch label, in decision order
        self.checked: list[str] = []  # those the seed chose
        self.caught: list[dict[str, str]] = []
        self.reissued: dict[str, int] = {}
        self._next = 0

    # -- scheduling -------------------------------------------------------------------------
    def _live(self) -> list[str]:
        return [a for a in self.accounts if a not in self.banned]

    def _pick(self, n: int, exclude: set[str]) -> list[str]:
        live = [a for a in self._live() if a not in exclude]
        out: list[str] = []
        for i in range(len(live)):
            if len(out) == n:
                break
            a = live[(self._next + i) % len(live)]
            out.append(a)
        self._next += 1
        return out

    def spare(self, task_id: str, failed: str) -> str | None:
        """The board's callback for a slot that missed its deadline: another live account."""
        failed = failed.lower()
        self.reissued[failed] = self.reissued.get(failed, 0) + 1
        taken = set(self.assigned.get(task_id, ())) | {failed}
        pick = self._pick(1, taken)
        if pick:
            self.assigned[task_id] = (*self.assigned.get(task_id, ()), pick[0])
        return pick[0] if pick else None

    # -- running ----------------------------------------------------------------------------
    def run(self, specs: Sequence[PredictSpec], executor: Executor,
            progress: Any = None) -> dict[str, bytes]:
        """Every batch to its verdict; the accepted payload by task id."""
        if len(self.accounts) < self.replicas:
            raise UsageError(f"{self.verification} needs at least {self.replicas} workers of "
                             f"one determinism class; the pool has {len(self.accounts)}")
        # published before any task is offered (``/v1/status``): the choice cannot move later
        self.board.published.clear()
        if self.verification == "spot" and specs:
            self.board.published.update({"job": specs[0].job, "verification": "spot",
                                         "seed_commitment": self.commitment})
        accepted: dict[str, bytes] = {}
        queue = list(specs)
        by_task = {s.task: s for s in specs}
        while queue:
            pending: dict[str, PredictSpec] = {}
            for spec in queue:
                reps = self._pick(self.replicas, set())
                if len(reps) < self.replicas:  # too few honest accounts left: do it myself
                    accepted[spec.task] = self._verdict(spec, {}, force=True)
                    continue
                cids = frozenset({spec.checkpoint_cid, *(i.cid for i in spec.items)})
                self.assigned[spec.task] = tuple(reps)
                self.board.post(spec.task, spec.to_bytes(), cids, tuple(reps), LEASE_SECONDS)
                pending[spec.task] = spec
            queue = []
            while pending:
                answered = executor.pump(self.board)
                for task_id, spec in list(pending.items()):
                    results = self.board.results(task_id)
                    if results is None:
                        continue
                    self.board.remove(task_id)
                    del pending[task_id]
                    newly = self.banned.copy()
                    accepted[task_id] = self._verdict(spec, results)
                    for liar in self.banned - newly:  # spot: its earlier batches may be wrong
                        for redo in self.answered_by.pop(liar, []):
                            if redo in accepted and redo != task_id:
                                del accepted[redo]
                                queue.append(by_task[redo])
                                self.redone += 1
                    if progress is not None:
                        progress("batches", len(accepted), len(specs))
                if pending and answered == 0:
                    executor.idle()
            # a redone batch is posted again under a fresh id (the board keeps ids once)
            queue = [_renamed(s, self.redone) for s in queue]
            by_task.update({s.task: s for s in queue})
        return {_original(t): p for t, p in accepted.items()}

    def _verdict(self, spec: PredictSpec, results: dict[str, bytes], *,
                 force: bool = False) -> bytes:
        from databright.compute.predict import check_predict_result, result_sha256, run_predict
        from databright.compute.spot_choice import is_checked
        from databright.compute.tmr import decide

        results = {a.lower(): p for a, p in results.items()}
        digests: dict[str, str | None] = {}
        valid = True
        for account, payload in results.items():
            digests[account] = result_sha256(payload)
            try:
                check_predict_result(payload, spec.job, spec.task, len(spec.items),
                                     len(spec.labels))
            except DataBrightError:
                valid = False  # a malformed answer is a wrong answer
        mine: dict[str, bytes] = {}

        def recompute() -> str:
            mine["payload"] = run_predict(spec, self.fetch)
            return result_sha256(mine["payload"])

        disagreed = (force or not valid or len(digests) < self.replicas
                     or len(set(digests.values())) != 1)
        spot_check = False
        if self.verification == "spot":
            label = f"{spec.job}:{spec.task}"  # a redone batch is a segment of its own
            spot_check = is_checked(self.seed, label, self.spot_ppm)
            self.decided.append(label)
            if spot_check:
                self.checked.append(label)
        verdict = decide(spec.task, digests, recompute, audit=disagreed or spot_check,
                         replicas=self.replicas)
        self.recomputed += int(disagreed)
        self.chain.append(verdict)
        self.tasks += 1
        for account, digest in digests.items():
            if digest == verdict.accepted:
                self.correct[account] = self.correct.get(account, 0) + 1
                if self.verification == "spot":
                    self.answered_by.setdefault(account, []).append(spec.task)
        for liar in verdict.liars:
            self.caught.append({"account": liar, "task": spec.task})
        self.banned.update(verdict.liars)
        if "payload" in mine:
            return mine["payload"]
        for account, payload in results.items():
            if digests[account] == verdict.accepted:
                return payload
        raise UsageError(f"task {spec.task}: no answer matches the verdict")  # unreachable

    def record(self) -> dict[str, Any]:
        """The receipt's ``verification`` record, in the format ``receipt verify`` checks (the
        same as a spot-checked training job's: the seed opens its commitment and chose exactly
        the ``checked`` batches among the ``decided`` ones)."""
        from databright.chain.wrapper import checksum

        if self.verification == "tmr":
            return {"mode": "tmr"}
        return {"mode": "spot", "ppm": self.spot_ppm, "seed_commitment": self.commitment,
                "seed": self.seed.hex(), "decided": list(self.decided),
                "checked": list(self.checked), "rollbacks": 0, "redone": self.redone,
                "caught": [{**c, "account": checksum(c["account"])} for c in self.caught]}

    def payouts(self, fees: dict[str, int]) -> dict[str, int]:
        """Per account: its fee for every batch it answered right (liars: nothing)."""
        return {a: n * fees[a] for a, n in sorted(self.correct.items())
                if a not in self.banned and n}


def _renamed(spec: PredictSpec, n: int) -> PredictSpec:
    import dataclasses

    return dataclasses.replace(spec, task=f"{_original(spec.task)}.redo{n}")


def _original(task_id: str) -> str:
    return task_id.split(".redo", 1)[0]
