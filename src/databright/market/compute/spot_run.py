"""One job's tasks under spot verification: one worker per task, a secret fraction re-checked.

:class:`SpotRun` is the coordinator's bookkeeping for a ``verification = "spot"`` job (the
plan has one worker per shard). Each answer is validated (a malformed one names its worker a
liar at once), applied optimistically and logged in its shard's segment (:mod:`compute.spot`).
When a window of :data:`SEGMENT_STEPS` steps ends, every segment of it is decided with the
secret seed, committed before any task was offered (:func:`compute.spot_choice.is_checked`);
a checked segment is re-run by the checker (the coordinator, or a second worker of the class)
and the two logs are compared, bisected to the first wrong answer on a mismatch, and the liar
banned (slashed at settlement) and replaced by a spare.

A lie poisons every later step, so the job then rolls back: :meth:`SpotRun.train` replays the
deterministic program from its first step with a cache of the accepted answers, keyed by
(task, weights sha256), of accounts not banned. The liar's answers are recomputed by its
replacement: where they agree the weights are the same and the cache serves every other shard;
from the first disagreement on the weights differ and new tasks are posted. A job whose liar
is caught thus ends with the honest program's bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.compute.spot import SEGMENT_STEPS, StepLog, judge
from databright.compute.spot_choice import commitment, draw_seed, is_checked
from databright.errors import DataBrightError, UsageError
from databright.market.compute.run import LEASE_SECONDS, _Run

if TYPE_CHECKING:
    from databright.compute.spec import TaskSpec
    from databright.compute.trainer import Trainer
    from databright.market.compute.executor import Executor

__all__ = ["CHECKERS", "SpotRun"]

CHECKERS = ("coordinator", "worker")
_COORDINATOR = ""  # the account of an answer the coordinator computed (trusted, never checked)


class _Rollback(Exception):
    """A liar was banned: the job replays from its first step."""


@dataclass(frozen=True)
class _Answer:
    step: int
    shard: int
    spec: TaskSpec
    account: str
    digest: str
    cid: str  # where the payload is stored


class SpotRun(_Run):
    """The spot-verification bookkeeping of one job (see the module docstring).

    Args beyond :class:`_Run`'s: ``job`` the trainer's job id (labels segments), ``ppm`` the
    checked fraction in parts per million, ``checker`` who re-runs a checked segment
    (:data:`CHECKERS`), ``window`` the steps per segment, ``seed`` the secret (tests only;
    default a fresh one).
    """

    def __init__(self, *args: Any, job: str, ppm: int, checker: str = "coordinator",
                 window: int = SEGMENT_STEPS, seed: bytes | None = None) -> None:
        super().__init__(*args)
        if checker not in CHECKERS:
            raise UsageError(f"the spot checker is one of {', '.join(CHECKERS)}, not "
                             f"{checker!r:.40}")
        if not isinstance(window, int) or window < 1:
            raise UsageError(f"a segment is at least one step, not {window!r:.40}")
        self.job, self.ppm, self.checker, self.window = job, ppm, checker, window
        self.seed = draw_seed() if seed is None else bytes(seed)
        self.seed_commitment = commitment(self.seed)
        # published before any task is offered: the choice cannot move after the answers
        self.board.published.clear()
        self.board.published.update({"job": job, "verification": "spot",
                                     "seed_commitment": self.seed_commitment})
        self.generation = 0  # how many times the job rolled back
        self.total_steps = 0
        self.decided: list[str] = []  # every segment label, in decision order
        self.checked: list[str] = []  # those the seed chose
        self.caught: list[dict[str, Any]] = []
        self.probes = 0
        self.answers = 0  # tasks answered by the job's workers
        self.checker_answers = 0  # tasks re-run by checker workers
        self.coordinator_runs = 0  # tasks the coordinator computed (checks, decisions, stand-ins)
        self._cache: dict[tuple[str, str], tuple[str, str]] = {}  # (task, weights) → (who, cid)
        self._open: dict[int, list[_Answer]] = {}  # shard → this window's answers

    # -- the job ---------------------------------------------------------------------------
    def train(self, make_trainer: Callable[[], Trainer], executor: Executor) -> Trainer:
        """Run every step (replaying after each caught liar); the trainer, ready to finish."""
        while True:  # bounded: every rollback bans at least one more account of the pool
            trainer = make_trainer()
            self.total_steps = trainer.total_steps
            try:
                for step in trainer.steps():
                    cid = self.dep.store.put_bytes(step.weights)
                    trainer.apply(step, self.spot_step(step.index, step.tasks(cid), executor))
                return trainer
            except _Rollback:
                self.generation += 1
                self._open.clear()

    def spot_step(self, index: int, specs: Mapping[int, TaskSpec],
                  executor: Executor) -> dict[int, bytes]:
        """One step's accepted payload per shard: from the cache, else answered now."""
        accepted: dict[int, bytes] = {}
        todo: dict[int, TaskSpec] = {}
        for shard, spec in specs.items():
            hit = self._cache.get((spec.task, spec.weights.sha256))
            if hit is not None:
                accepted[shard] = self.dep.store.get(hit[1])
            else:
                todo[shard] = spec
        answered, liar = self._answer(index, todo, executor)
        accepted.update(answered)
        if liar or (index + 1) % self.window == 0 or index + 1 == self.total_steps:
            # a malformed answer ends its window early: nothing undecided is kept for a replay
            liar = self._close(index // self.window, executor) or liar
        if liar:
            self._rollback()
        return accepted

    # -- answers ---------------------------------------------------------------------------
    def _answer(self, index: int, todo: Mapping[int, TaskSpec],
                executor: Executor) -> tuple[dict[int, bytes], bool]:
        """Post the tasks to their shards' workers; the payloads and whether one was malformed."""
        from databright.compute.grad import check_result, result_digest
        from databright.compute.tmr import Verdict

        out: dict[int, bytes] = {}
        posted = {shard: spec for shard, spec in todo.items() if self.replicas[shard]}
        for shard in set(todo) - set(posted):  # no worker left under the cap: the coordinator
            out[shard] = self._mine(todo[shard], cache=True)
        self._send_all([(self.replicas[s][0], s) for s in posted])  # before anything is offered
        results = self._run_on([(s, self.replicas[s][0], spec) for s, spec in posted.items()],
                               "", executor)
        liar = False
        for shard, spec in posted.items():
            got = results[spec.task]
            if not got:  # silent, and no spare could take its lease: the coordinator stands in
                out[shard] = self._mine(spec, cache=True)
                continue
            (account, payload), = got.items()
            self.answers += 1
            digest = result_digest(payload)
            try:
                check_result(payload, spec.job, spec.task, self._shapes(spec))
            except DataBrightError:  # a malformed answer is a lie: no check needed
                payload = self._mine(spec, cache=True)
                truth = result_digest(payload)
                self.chain.append(Verdict(spec.task, {account: digest}, truth, (account,), True))
                self.caught.append({"account": account, "task": spec.task, "step": index,
                                    "how": "malformed", "probes": 0})
                self._ban(account)
                liar = True
                continue
            cid = self.dep.store.put_bytes(payload)
            self._cache[(spec.task, spec.weights.sha256)] = (account, cid)
            self._open.setdefault(shard, []).append(_Answer(index, shard, spec, account, digest,
                                                            cid))
            self.chain.append(Verdict(spec.task, {account: digest}, digest, (), False))
            self.correct[account] = self.correct.get(account, 0) + 1
            self.tasks += 1
            out[shard] = payload
        return out, liar

    def _run_on(self, jobs: list[tuple[int, str, TaskSpec]], suffix: str,
                executor: Executor) -> dict[str, dict[str, bytes]]:
        """Post each ``(shard, account, spec)`` on the board; ``{task: {account: payload}}``
        once all are answered or dropped (an empty dict: nobody answered)."""
        ids = {}
        for shard, account, spec in jobs:
            board_id = spec.task + suffix
            ids[board_id] = spec.task
            self._shard_of_task[board_id] = shard
            cids = frozenset({spec.weights.cid, *(i.cid for i in spec.items)})
            self.board.post(board_id, spec.to_bytes(), cids, (account,), LEASE_SECONDS)
        out: dict[str, dict[str, bytes]] = {}
        while len(out) < len(ids):
            moved = executor.pump(self.board)
            for board_id, task in ids.items():
                if task in out or (got := self.board.results(board_id)) is None:
                    continue
                out[task] = {a.lower(): p for a, p in got.items()}
                self.board.remove(board_id)
            if len(out) < len(ids) and moved == 0:
                executor.idle()
        return out

    def _mine(self, spec: TaskSpec, *, cache: bool) -> bytes:
        """The coordinator computes ``spec`` itself (trusted: cached as such when asked)."""
        from databright.compute.grad import run_task

        payload = run_task(spec, self.dep.store.get)
        self.coordinator_runs += 1
        if cache:
            cid = self.dep.store.put_bytes(payload)
            self._cache[(spec.task, spec.weights.sha256)] = (_COORDINATOR, cid)
        return payload

    # -- checks ----------------------------------------------------------------------------
    def _label(self, shard: int, window: int) -> str:
        base = f"{self.job}:{shard}:{window}"
        return base if self.generation == 0 else f"{base}:r{self.generation}"

    def _close(self, window: int, executor: Executor) -> bool:
        """Decide every segment of the window that just ended; whether one lied."""
        liar = False
        for shard in sorted(self._open):
            label = self._label(shard, window)
            self.decided.append(label)
            if is_checked(self.seed, label, self.ppm):
                self.checked.append(label)
                liar = self._check(label, self._open[shard], executor) or liar
        self._open.clear()
        return liar

    def _check(self, label: str, entries: list[_Answer], executor: Executor) -> bool:
        """Re-run a checked segment; whether its worker lied (it is then banned)."""
        from databright.compute.grad import check_result, result_digest

        shard = entries[0].shard
        checker = None
        if self.checker == "worker":
            busy = {e.account for e in entries} | set(self.replicas[shard])
            checker = self.plan.spare(shard, exclude=self.banned | busy)
        if checker is None:
            return self._check_here(label, entries)
        self._send(checker, shard)  # its exposure is recorded before any task is offered
        got = self._run_on([(shard, checker, e.spec) for e in entries],
                           f"/check-{self.generation}", executor)
        digests, who = [], []
        for e in entries:
            if not got[e.spec.task]:  # a silent checker, no spare: the coordinator checks
                return self._check_here(label, entries)
            (account, payload), = got[e.spec.task].items()  # a spare may have taken a lease
            self.checker_answers += 1
            try:
                check_result(payload, e.spec.job, e.spec.task, self._shapes(e.spec))
            except DataBrightError:
                self._ban(account)
                return self._check_here(label, entries)
            digests.append(result_digest(payload))
            who.append(account)

        def recompute(i: int) -> str:
            return result_digest(self._mine(entries[i].spec, cache=True))

        finding = judge(self._log(entries), StepLog.of(self._tasks(entries), digests),
                        recompute, checker_trusted=False)
        if finding is None:
            for account in who:  # paid for the re-runs it answered right
                self.correct[account] = self.correct.get(account, 0) + 1
            return False
        self.probes += finding.probes
        if finding.checker_lied:
            self._ban(who[finding.index])
        if not finding.worker_lied:  # the worker's answers after the checker's lie are unchecked
            return self._check_here(label, entries)
        self._caught(label, entries, finding, {who[finding.index]: digests[finding.index]})
        return True

    def _check_here(self, label: str, entries: list[_Answer]) -> bool:
        """The coordinator re-runs the segment; its own log is the truth."""
        from databright.compute.grad import result_digest

        mine = [result_digest(self._mine(e.spec, cache=True)) for e in entries]
        finding = judge(self._log(entries), StepLog.of(self._tasks(entries), mine),
                        lambda i: mine[i], checker_trusted=True)
        if finding is None:
            return False
        self.probes += finding.probes
        self._caught(label, entries, finding, {})
        return True

    def _caught(self, label: str, entries: list[_Answer], finding: Any,
                others: dict[str, str]) -> None:
        from databright.compute.tmr import Verdict

        lie = entries[finding.index]
        digests = {lie.account: lie.digest, **others}
        liars = tuple(sorted(a for a, d in digests.items() if d != finding.truth))
        self.chain.append(Verdict(lie.spec.task, digests, finding.truth, liars, True))
        self.caught.append({"account": lie.account, "segment": label, "task": lie.spec.task,
                            "step": lie.step, "how": "checked", "probes": finding.probes})
        self._ban(lie.account)

    @staticmethod
    def _tasks(entries: list[_Answer]) -> list[tuple[int, str]]:
        return [(e.step, e.spec.weights.sha256) for e in entries]

    def _log(self, entries: list[_Answer]) -> StepLog:
        return StepLog.of(self._tasks(entries), [e.digest for e in entries])

    def _rollback(self) -> None:
        """Forget every answer of a banned account and replay the job from its first step."""
        self._cache = {k: v for k, v in self._cache.items() if v[0] not in self.banned}
        raise _Rollback

    # -- the receipt ---------------------------------------------------------------------------
    def body(self, **kwargs: Any) -> dict[str, Any]:
        from databright.chain.wrapper import checksum

        body = super().body(**kwargs)
        body["recomputed"] = self.coordinator_runs
        body["verification"] = {
            "mode": "spot", "ppm": self.ppm, "segment_steps": self.window,
            "checker": self.checker, "seed_commitment": self.seed_commitment,
            "seed": self.seed.hex(), "decided": list(self.decided),
            "checked": list(self.checked), "rollbacks": self.generation,
            "bisection_probes": self.probes, "answers": self.answers,
            "checker_answers": self.checker_answers,
            "coordinator_computations": self.coordinator_runs,
            "caught": [{**c, "account": checksum(c["account"])} for c in self.caught],
        }
        return body
