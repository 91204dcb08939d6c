"""Spot verification's step log and bisection: a lie at step j of a segment is found at j in
⌈log₂ W⌉ link comparisons, and the coordinator recomputes exactly one task to say who lied."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databright.compute.spot import (
    GENESIS,
    StepLog,
    chain_link,
    first_difference,
    judge,
    max_probes,
)


def _h(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _segment(w: int, start: int = 0) -> list[tuple[int, str]]:
    return [(start + i, _h("weights", start + i)) for i in range(w)]


def _logs(w: int, lies: set[int]) -> tuple[list[tuple[int, str]], list[str], list[str]]:
    tasks = _segment(w)
    truth = [_h("answer", i) for i in range(w)]
    told = [_h("lie", i) if i in lies else truth[i] for i in range(w)]
    return tasks, truth, told


class _Coordinator:
    """Recomputes a task of the segment (the truth) and counts how often it was asked."""

    def __init__(self, truth: list[str]) -> None:
        self.truth, self.calls = truth, 0

    def __call__(self, index: int) -> str:
        self.calls += 1
        return self.truth[index]


def test_the_head_commits_to_every_answer_in_order():
    tasks, truth, _ = _logs(4, set())
    log = StepLog.of(tasks, truth)
    link = GENESIS
    for (step, weights), digest in zip(tasks, truth, strict=True):
        link = chain_link(link, step, weights, digest)
    assert log.head == link and StepLog().head == GENESIS
    swapped = StepLog.of(tasks, [truth[1], truth[0], *truth[2:]])
    assert swapped.head != log.head  # the same answers in another order are another log
    other_weights = StepLog.of([(s, _h("x", s)) for s, _ in tasks], truth)
    assert other_weights.head != log.head


@pytest.mark.parametrize("w", [1, 2, 4, 8, 16])
def test_a_lie_at_step_j_is_found_at_j_in_log2_w_probes(w):
    for j in range(w):
        tasks, truth, told = _logs(w, {j})
        coordinator = _Coordinator(truth)
        found = judge(StepLog.of(tasks, told), StepLog.of(tasks, truth), coordinator,
                      checker_trusted=False)
        assert found is not None
        assert (found.index, found.step) == (j, tasks[j][0])
        assert found.probes == max_probes(w) == (w - 1).bit_length()  # exactly log2 W
        assert found.worker_lied and not found.checker_lied and found.truth == truth[j]
        assert coordinator.calls == found.recomputed == 1  # ONE recomputation decides


def test_a_lying_checker_is_named_and_the_worker_is_not():
    tasks, truth, lied = _logs(8, {5})
    coordinator = _Coordinator(truth)
    found = judge(StepLog.of(tasks, truth), StepLog.of(tasks, lied), coordinator,
                  checker_trusted=False)
    assert found is not None and found.index == 5 and found.checker_lied
    assert not found.worker_lied and coordinator.calls == 1


def test_a_trusted_checker_needs_no_recomputation():
    tasks, truth, told = _logs(8, {2, 6})
    coordinator = _Coordinator(truth)
    found = judge(StepLog.of(tasks, told), StepLog.of(tasks, truth), coordinator,
                  checker_trusted=True)
    assert found is not None and found.index == 2 and found.worker_lied
    assert coordinator.calls == found.recomputed == 0


def test_equal_logs_pass_without_a_probe():
    tasks, truth, _ = _logs(8, set())
    coordinator = _Coordinator(truth)
    assert judge(StepLog.of(tasks, truth), StepLog.of(tasks, truth), coordinator,
                 checker_trusted=False) is None
    assert coordinator.calls == 0


def test_logs_of_other_tasks_are_refused():
    tasks, truth, _ = _logs(4, set())
    with pytest.raises(ValueError, match="not of the same tasks"):
        judge(StepLog.of(tasks, truth), StepLog.of(_segment(4, start=1), truth),
              _Coordinator(truth), checker_trusted=True)
    with pytest.raises(ValueError, match="sha256"):
        StepLog().append(0, "not-hex", truth[0])
    with pytest.raises(ValueError, match="answers for"):
        StepLog.of(tasks, truth[:3])


@given(w=st.integers(1, 64), data=st.data())
def test_bisection_finds_the_first_lie_whatever_follows(w, data):
    """The first lie is located whatever the lies after it, in at most ⌈log₂ W⌉ probes (exactly
    for powers of two) and with one recomputation."""
    j = data.draw(st.integers(0, w - 1), label="first lie")
    later = data.draw(st.sets(st.integers(0, w - 1)), label="later lies")
    tasks, truth, told = _logs(w, {j} | {i for i in later if i > j})
    coordinator = _Coordinator(truth)
    found = judge(StepLog.of(tasks, told), StepLog.of(tasks, truth), coordinator,
                  checker_trusted=False)
    assert found is not None and found.index == j and found.worker_lied
    assert (w - 1).bit_length() - 1 <= found.probes <= max_probes(w)
    if w & (w - 1) == 0:
        assert found.probes == max_probes(w)
    assert coordinator.calls == 1


@given(n=st.integers(1, 200), first=st.data())
def test_first_difference_on_any_monotone_predicate(n, first):
    j = first.draw(st.integers(0, n - 1))
    asked: list[int] = []

    def differs(i: int) -> bool:
        asked.append(i)
        return i >= j

    index, probes = first_difference(n, differs)
    assert index == j and probes == len(asked) <= max_probes(n)
    assert n - 1 not in asked  # the head is known to differ: it is never probed
