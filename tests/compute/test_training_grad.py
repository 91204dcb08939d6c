"""A worker's task: deterministic bytes across processes, refused when it is not the task it
claims to be, and results validated before a coordinator uses them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from databright.compute.errors import DeterminismClassError, ResultError, TaskError
from databright.compute.grad import (
    determinism_class_digest,
    parse_result,
    read_payload,
    result_digest,
    run_task,
    write_payload,
)
from databright.compute.spec import TaskSpec, WeightsRef
from databright.compute.trainer import Trainer
from databright.errors import IntegrityError, NotFoundError
from databright.storage.cas import LocalBlobStore
from databright.training import (
    Checkpoint,
    CheckpointIntegrityError,
    MalformedCheckpointError,
    checkpoint_from_bytes,
    sha256_hex,
)
from databright.training.determinism import determinism_class
from tests.compute.conftest import CNN, three_shards

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def task(cnn_data, tmp_path_factory):
    """The first step's task of shard 0, with its store (items and weights in it)."""
    train, val = cnn_data
    store = LocalBlobStore(tmp_path_factory.mktemp("grad") / "store")
    for r in train:
        store.put_bytes(r.load())
    trainer = Trainer("small-cnn", CNN, train, val, three_shards(train), job="job-1")
    step = next(trainer.steps())
    spec = step.tasks(store.put_bytes(step.weights))[0]
    return spec, store, trainer


def test_the_same_bytes_in_another_process(task):
    spec, store, trainer = task
    here = run_task(spec, store.get)
    script = ("import sys; from databright.compute.grad import run_task; "
              "from databright.compute.spec import TaskSpec; "
              "from databright.storage.cas import LocalBlobStore; "
              "spec = TaskSpec.from_bytes(open(sys.argv[2], 'rb').read()); "
              "sys.stdout.buffer.write(run_task(spec, LocalBlobStore(sys.argv[1]).get))")
    spec_file = Path(store.root).parent / "spec.json"
    spec_file.write_bytes(spec.to_bytes())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    there = subprocess.run([sys.executable, "-c", script, str(store.root), str(spec_file)],
                           env=env, capture_output=True, check=True, timeout=300).stdout
    assert result_digest(there) == result_digest(here) == sha256_hex(here)
    grads = parse_result(here, spec, trainer.grad_shapes)
    assert set(grads) == {f"grad.{k[4:]}" for k in checkpoint_from_bytes(
        store.get(spec.weights.cid), spec.weights.sha256).tensors}
    assert any(bool(g.abs().sum() > 0) for g in grads.values())


def test_the_gradient_is_the_items_share_of_the_batch_mean(task):
    spec, store, _ = task
    half = dataclasses.replace(spec, divisor=2 * spec.divisor)
    a, _ = read_payload(run_task(spec, store.get))
    b, _ = read_payload(run_task(half, store.get))
    for name in a:
        assert torch.allclose(a[name], 2 * b[name], rtol=1e-6, atol=0), name


def test_another_determinism_class_is_refused(task):
    spec, store, _ = task
    assert determinism_class_digest(2) != determinism_class_digest(1)
    assert spec.determinism_class == sha256_hex(
        b'{"cpu_capability":"%s","dtype":"float32","threads":1,"torch":"%s"}'
        % (determinism_class(1)["cpu_capability"].encode(), torch.__version__.encode()))
    other = dataclasses.replace(spec, determinism_class="0" * 64)
    with pytest.raises(DeterminismClassError, match="needs determinism class 0000"):
        run_task(other, store.get)


def test_a_program_this_worker_does_not_hold_is_refused(task):
    spec, store, _ = task
    with pytest.raises(TaskError, match="does not hold"):
        run_task(dataclasses.replace(spec, program_digest="1" * 64), store.get)
    # the same code under another config is another program
    with pytest.raises(TaskError, match="does not hold"):
        run_task(dataclasses.replace(spec, config={**spec.config, "lr": 0.02}), store.get)


def test_weights_that_are_not_the_tasks_are_refused(task, cnn_data):
    spec, store, _ = task
    data = store.get(spec.weights.cid)
    with pytest.raises(CheckpointIntegrityError):  # the sha256 the spec names is checked first
        run_task(dataclasses.replace(spec, weights=WeightsRef(spec.weights.cid, "2" * 64)),
                 store.get)
    ckpt = checkpoint_from_bytes(data, sha256_hex(data))

    def stored(c: Checkpoint) -> TaskSpec:
        blob = c.to_bytes()
        return dataclasses.replace(spec, weights=WeightsRef(store.put_bytes(blob),
                                                            sha256_hex(blob)))

    wider = Trainer("small-cnn", {**CNN, "width": 5}, *cnn_data, three_shards(cnn_data[0]))
    blob = next(wider.steps()).weights
    other = checkpoint_from_bytes(blob, sha256_hex(blob))
    with pytest.raises(TaskError, match="another config"):
        run_task(stored(other), store.get)
    relabelled = dataclasses.replace(ckpt, labels=tuple(f"c{x}" for x in ckpt.labels))
    with pytest.raises(TaskError, match="not the task's"):
        run_task(stored(relabelled), store.get)
    extra = dataclasses.replace(ckpt, tensors={**ckpt.tensors, "net.9.weight": torch.zeros(1)})
    with pytest.raises(MalformedCheckpointError, match="do not fit the network"):
        run_task(stored(extra), store.get)
    with pytest.raises(IntegrityError):  # not safetensors at all
        run_task(dataclasses.replace(spec, weights=WeightsRef(store.put_bytes(b"\x80\x04"),
                                                              sha256_hex(b"\x80\x04"))), store.get)


def test_a_missing_item_fails_the_task_with_the_stores_error(task):
    spec, store, _ = task

    def fetch(cid: str) -> bytes:
        if cid == spec.items[-1].cid:
            raise NotFoundError(f"no blob {cid}")
        return store.get(cid)

    with pytest.raises(TaskError, match="no blob"):
        run_task(spec, fetch)


def _tamper(payload: bytes, **changes) -> bytes:
    tensors, meta = read_payload(payload)
    tensors.update(changes.pop("tensors", {}))
    for name in changes.pop("drop", ()):
        del tensors[name]
    return write_payload(tensors, {**meta, **changes})


@pytest.mark.parametrize(("case", "reason"), [
    ("other-task", "not task step-0.shard-0's"),
    ("other-job", "not task step-0.shard-0's"),
    ("missing", "missing \\['grad.0.bias'\\]"),
    ("unexpected", "unexpected \\['grad.9.weight'\\]"),
    ("shape", "is \\[5\\], expected \\[4\\]"),
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
    ("float64", "not float32"),
    ("int64", "not float32"),
    ("no-metadata", "metadata is not valid"),
    ("truncated", "not a valid safetensors file|header length"),
    ("garbage", "header length"),
    ("deep-header", "metadata is not valid"),
])
def test_a_bad_result_is_refused_before_use(task, case, reason):
    spec, store, trainer = task
    good = run_task(spec, store.get)
    bias = read_payload(good)[0]["grad.0.bias"]
    bad = {
        "other-task": lambda: _tamper(good, task="step-0.shard-1"),
        "other-job": lambda: _tamper(good, job="job-2"),
        "missing": lambda: _tamper(good, drop=["grad.0.bias"]),
        "unexpected": lambda: _tamper(good, tensors={"grad.9.weight": torch.zeros(2)}),
        "shape": lambda: _tamper(good, tensors={"grad.0.bias": torch.zeros(5)}),
        "nan": lambda: _tamper(good, tensors={"grad.0.bias": bias * float("nan")}),
        "inf": lambda: _tamper(good, tensors={"grad.0.bias": bias + float("inf")}),
        "float64": lambda: _tamper(good, tensors={"grad.0.bias": bias.double()}),
        "int64": lambda: _tamper(good, tensors={"grad.0.bias": bias.long()}),
        "no-metadata": lambda: bytes(st_save(read_payload(good)[0])),
        "truncated": lambda: good[:-7],
        "garbage": lambda: b"\xff" * 64,
        "deep-header": lambda: (200_000).to_bytes(8, "little") + b"[" * 200_000,
    }[case]()
    assert parse_result(good, spec, trainer.grad_shapes)  # the honest one passes
    with pytest.raises(ResultError, match=reason):
        parse_result(bad, spec, trainer.grad_shapes)
