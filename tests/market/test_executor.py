"""The embedded executor on a real lease board: what each fault mode answers, and the time it
says its identities spent computing (what benchmarks/compute_overhead.py subtracts)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import torch

from databright.compute.board import TaskBoard
from databright.compute.grad import read_payload, write_payload
from databright.market.compute.executor import LocalExecutor

ACCOUNTS = ["0x" + f"{i:040x}" for i in (1, 2, 3)]
BLOB = "bafy-weights"


def _honest(spec: bytes, fetch: Callable[[str], bytes]) -> bytes:
    """A worker's answer that depends on its task (so tasks' answers differ)."""
    fetch(BLOB)
    step = json.loads(spec)["step"]
    return write_payload({"grad.w": torch.full((2, 3), float(step + 1))},
                         {"format": "databright-grad 1", "job": "j", "task": f"t{step}"})


def _run(executor: LocalExecutor, steps: int) -> list[dict[str, bytes]]:
    """Post one task a step for the three accounts; every step's results once all revealed."""
    board = TaskBoard(lambda: 0.0)
    out = []
    for step in range(steps):
        task = f"t{step}"
        board.post(task, json.dumps({"step": step}).encode(), frozenset({BLOB}),
                   tuple(ACCOUNTS), 60.0)
        while (results := board.results(task)) is None:
            assert executor.pump(board) > 0
        out.append(results)
        board.remove(task)
    return out


def _value(payload: bytes) -> float:
    return float(read_payload(payload)[0]["grad.w"][0, 0])


def test_stale_answers_its_previous_result_after_an_honest_first_one():
    executor = LocalExecutor(ACCOUNTS, _honest, lambda cid: b"w", {ACCOUNTS[0]: "stale"})
    results = _run(executor, 3)
    honest = [r[ACCOUNTS[1]] for r in results]
    liar = [r[ACCOUNTS[0]] for r in results]
    assert liar[0] == honest[0]  # nothing older to replay yet
    for step in (1, 2):  # then the gradient of the step before, never this one's
        assert liar[step] != honest[step]
        assert _value(liar[step]) == _value(honest[step - 1])


def test_copy_answers_its_previous_answer_without_computing():
    calls: list[bytes] = []

    def counted(spec: bytes, fetch: Callable[[str], bytes]) -> bytes:
        calls.append(spec)
        return _honest(spec, fetch)

    executor = LocalExecutor(ACCOUNTS, counted, lambda cid: b"w", {ACCOUNTS[0]: "copy"})
    results = _run(executor, 3)
    liar = [r[ACCOUNTS[0]] for r in results]
    assert liar[0] == results[0][ACCOUNTS[1]]
    assert liar[1] == liar[2] == liar[0] != results[1][ACCOUNTS[1]]
    assert len(calls) == 3 * 3 - 2  # the copier computed once


def test_the_timers_count_the_identities_work_and_the_fetches_within_it():
    def slow(spec: bytes, fetch: Callable[[str], bytes]) -> bytes:
        time.sleep(0.02)
        return _honest(spec, fetch)

    reads: list[str] = []

    def slow_fetch(cid: str) -> bytes:
        reads.append(cid)
        time.sleep(0.01)
        return b"w"

    executor = LocalExecutor(ACCOUNTS, slow, slow_fetch)
    t0 = time.perf_counter()
    _run(executor, 2)
    wall = time.perf_counter() - t0
    # 6 answers of ≥ 20 ms; the blob is read from the store once (≥ 10 ms) and served from
    # memory to the other 5 leases; the board's work is outside
    assert reads == [BLOB]
    assert 0.01 <= executor.fetch_seconds < executor.compute_seconds <= wall
    assert executor.compute_seconds >= 0.13
