"""Data-parallel training under TMR: the coordinator's checkpoint is the bits of the same
program run in one process, whatever process computed the tasks."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from databright.compute.grad import read_payload, write_payload
from databright.compute.reference import fit_decomposed
from databright.compute.trainer import Trainer
from databright.errors import UsageError
from databright.storage.cas import LocalBlobStore
from databright.training import (
    checkpoint_from_bytes,
    get_family,
    pretrained_available,
    sha256_hex,
)
from tests.compute.conftest import CNN, MLP, three_shards
from tests.training.conftest import digit_images

ROOT = Path(__file__).resolve().parents[2]

# A worker in another process: one spec (base64 JSON) a line on stdin, the result on stdout;
# blobs are read from the store folder, as a worker fetches what its lease names.
_WORKER = """
import base64, sys
from databright.compute.grad import run_task
from databright.compute.spec import TaskSpec
from databright.storage.cas import LocalBlobStore
store = LocalBlobStore(sys.argv[1])
for line in sys.stdin:
    spec = TaskSpec.from_bytes(base64.b64decode(line))
    sys.stdout.write(base64.b64encode(run_task(spec, store.get)).decode() + "\\n")
    sys.stdout.flush()
"""


class _Worker:
    def __init__(self, store_root: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(store_root)], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def run(self, spec_bytes: bytes) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(base64.b64encode(spec_bytes).decode() + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the worker process died"
        return base64.b64decode(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


def _distributed(family, cfg, train, val, shards, store, worker, tamper=None):
    """The trainer driven with every task's result computed by ``worker``; ``tamper(step,
    shard, payload)`` may replace a result."""
    trainer = Trainer(family, cfg, train, val, shards, job="job-1")
    for step in trainer.steps():
        cid = store.put_bytes(step.weights)
        results = {}
        for shard, spec in step.tasks(cid).items():
            payload = worker.run(spec.to_bytes())
            results[shard] = tamper(step, shard, payload) if tamper else payload
        trainer.apply(step, results)
    return trainer.finish()


@pytest.fixture(scope="module")
def worker_store(tmp_path_factory, cnn_data):
    store = LocalBlobStore(tmp_path_factory.mktemp("worker") / "store")
    for r in cnn_data[0]:  # the items the worker may fetch
        store.put_bytes(r.load())
    worker = _Worker(store.root)
    yield store, worker
    worker.close()


def test_tasks_in_another_process_give_the_reference_checkpoint(cnn_data, store, worker_store):
    train, val = cnn_data
    shards = three_shards(train)
    reference = fit_decomposed("small-cnn", CNN, train, val, shards, store=store, job="job-1")
    wstore, worker = worker_store
    remote = _distributed("small-cnn", CNN, train, val, shards, wstore, worker)
    data = remote.checkpoint.to_bytes()
    assert sha256_hex(data) == sha256_hex(reference.checkpoint.to_bytes())
    assert remote.history == reference.history and len(remote.history) == CNN["epochs"]
    # an ordinary checkpoint: parsed, validated and usable by the family
    ckpt = checkpoint_from_bytes(data, sha256_hex(data))
    assert ckpt.extra["decomposition"]["shards"] == 3
    assert get_family("small-cnn").evaluate(ckpt, val) == remote.evaluation
    assert ckpt.metric_bps == remote.evaluation.accuracy_bps


def _flip_bit(payload: bytes, name: str, bit: int) -> bytes:
    """``payload`` with mantissa bit ``bit`` of ``name``'s largest element flipped."""
    tensors, meta = read_payload(payload)
    flat = tensors[name].view(-1)
    flat.view(torch.int32)[int(flat.abs().argmax())] ^= 1 << bit
    return write_payload(tensors, meta)


def test_one_flipped_gradient_bit_changes_the_checkpoint(cnn_data, store, worker_store):
    train, val = cnn_data
    shards = three_shards(train)
    wstore, worker = worker_store
    honest = _distributed("small-cnn", CNN, train, val, shards, wstore, worker)

    def one_bit_in_step_2(step, shard, payload):
        # bit 10 of the mantissa: a relative change of about 1e-4 in one element of one shard
        hit = (step.index, shard) == (2, 1)
        return _flip_bit(payload, "grad.7.weight", 10) if hit else payload

    lied = _distributed("small-cnn", CNN, train, val, shards, wstore, worker, one_bit_in_step_2)
    assert sha256_hex(lied.checkpoint.to_bytes()) != sha256_hex(honest.checkpoint.to_bytes())


def test_seed_threads_and_shard_map_are_part_of_the_program(cnn_data, store):
    train, val = cnn_data
    shards = three_shards(train)
    base = fit_decomposed("small-cnn", CNN, train, val, shards, store=store).checkpoint
    seed = fit_decomposed("small-cnn", {**CNN, "seed": 1}, train, val, shards, store=store)
    assert any(not torch.equal(base.tensors[k], seed.checkpoint.tensors[k]) for k in base.tensors)
    threads = fit_decomposed("small-cnn", {**CNN, "threads": 2}, train, val, shards,
                             store=store).checkpoint
    assert threads.extra["determinism"]["threads"] == 2
    assert threads.program_digest != base.program_digest
    assert sha256_hex(threads.to_bytes()) != sha256_hex(base.to_bytes())
    regrouped = {cid: (k + 1) % 3 for cid, k in shards.items()}
    other = fit_decomposed("small-cnn", CNN, train, val, regrouped, store=store).checkpoint
    assert other.program_digest != base.program_digest
    assert other.extra["decomposition"]["shard_map"] != base.extra["decomposition"]["shard_map"]


@pytest.mark.parametrize("family", ["small-cnn", "mlp"])
def test_one_shard_is_family_fit_bit_for_bit(family, cnn_data, row_data, store):
    # sum-of-CE / batch size at one shard is the loop's mean CE: the decomposition adds nothing
    train, val = cnn_data if family == "small-cnn" else row_data
    cfg = CNN if family == "small-cnn" else MLP
    one = fit_decomposed(family, cfg, train, val, lambda r: 0, store=store).checkpoint
    fit = get_family(family).fit(train, val, cfg).checkpoint
    assert set(one.tensors) == set(fit.tensors)
    for name in fit.tensors:
        assert torch.equal(one.tensors[name], fit.tensors[name]), name
    assert one.metric_bps == fit.metric_bps


def test_tabular_prep_travels_in_the_weights(row_data, store):
    train, val = row_data
    shards = three_shards(train)
    trainer = Trainer("mlp", MLP, train, val, shards)
    step = next(trainer.steps())
    weights = checkpoint_from_bytes(step.weights, step.weights_sha256)
    fit = get_family("mlp").fit(train, val, MLP).checkpoint
    assert torch.equal(weights.tensors["prep.mean"], fit.tensors["prep.mean"])
    assert weights.extra["columns"] == fit.extra["columns"]
    again = fit_decomposed("mlp", MLP, train, val, shards, store=store)
    first = fit_decomposed("mlp", MLP, train, val, shards, store=store)
    assert again.checkpoint.to_bytes() == first.checkpoint.to_bytes()
    assert again.accuracy_bps == get_family("mlp").evaluate(again.checkpoint, val).accuracy_bps


def test_every_item_is_trained_once_an_epoch_in_its_own_shard(cnn_data):
    train, val = cnn_data
    shards = three_shards(train)
    trainer = Trainer("small-cnn", CNN, train, val, shards)
    seen: dict[int, list[str]] = {}
    for step in trainer.steps():
        cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # any CID will do
        specs = step.tasks(cid)
        assert sorted(specs) == list(step.shards) and step.divisor == sum(
            len(s.items) for s in specs.values())
        for shard, spec in specs.items():
            assert all(shards[i.cid] == shard for i in spec.items)
            seen.setdefault(step.epoch, []).extend(i.cid for i in spec.items)
        trainer.apply(step, {k: _zeros(trainer, step.task_id(k)) for k in step.shards})
    assert sorted(seen) == list(range(CNN["epochs"]))
    for cids in seen.values():
        assert sorted(cids) == sorted(r.cid for r in train)


def _zeros(trainer: Trainer, task: str) -> bytes:
    meta = {"format": "databright-grad 1", "job": "job", "task": task}
    return write_payload({k: torch.zeros(s) for k, s in trainer.grad_shapes.items()}, meta)


def test_apply_refuses_missing_shards_foreign_results_and_skipped_steps(cnn_data, store):
    train, val = cnn_data
    trainer = Trainer("small-cnn", CNN, train, val, three_shards(train), job="job-1")
    steps = trainer.steps()
    step = next(steps)
    cid = store.put_bytes(step.weights)
    from databright.compute.errors import ResultError
    from databright.compute.grad import run_task

    def fetch(c):
        return store.get(c) if c == cid else {r.cid: r for r in train}[c].load()

    results = {k: run_task(s, fetch) for k, s in step.tasks(cid).items()}
    with pytest.raises(UsageError, match="needs results for shards"):
        trainer.apply(step, {k: v for k, v in results.items() if k != 0})
    swapped = {**results, 0: results[1]}  # shard 1's answer offered for shard 0
    with pytest.raises(ResultError, match="not task step-0.shard-0's"):
        trainer.apply(step, swapped)
    with pytest.raises(UsageError, match="not applied"):
        next(steps)
    with pytest.raises(UsageError, match="not applied yet"):
        trainer.finish()
    tensors, meta = read_payload(results[0])
    assert meta == {"format": "databright-grad 1", "job": "job-1", "task": "step-0.shard-0"}
    assert set(tensors) == set(trainer.grad_shapes)


def test_the_progress_callback_sees_every_step_and_epoch(cnn_data, store):
    train, val = cnn_data
    calls: list[tuple[str, int, int]] = []
    fit_decomposed("small-cnn", {**CNN, "epochs": 1}, train, val, three_shards(train),
                   store=store, progress=lambda *a: calls.append(a))
    assert calls == [("step", 1, 3), ("step", 2, 3), ("epoch", 1, 1), ("step", 3, 3)]


def test_json_of_a_spec_is_what_the_worker_reads(cnn_data, store):
    train, val = cnn_data
    trainer = Trainer("small-cnn", CNN, train, val, three_shards(train), job="job-1")
    step = next(trainer.steps())
    spec = step.tasks(store.put_bytes(step.weights))[0]
    obj = json.loads(spec.to_bytes())
    assert obj["divisor"] == CNN["batch_size"] and obj["threads"] == 1 and obj["kind"] == "grad"
    assert obj["program_digest"] == trainer.task_digest != trainer.program_digest


@pytest.mark.skipif(not pretrained_available(), reason="EfficientNet-Lite0 not installed")
def test_efficientnet_head_workers_embed_their_own_items(store):
    # the coordinator embeds only the validation items; each task embeds its shard's
    train, val = digit_images(0, 12), digit_images(100, 4)
    cfg = {"epochs": 2, "batch_size": 6}
    one = fit_decomposed("efficientnet-head", cfg, train, val, lambda r: 0, store=store)
    fit = get_family("efficientnet-head").fit(train, val, cfg).checkpoint
    assert all(torch.equal(one.checkpoint.tensors[k], fit.tensors[k]) for k in fit.tensors)
    shards = three_shards(train)
    a = fit_decomposed("efficientnet-head", cfg, train, val, shards, store=store).checkpoint
    b = fit_decomposed("efficientnet-head", cfg, train, val, shards, store=store).checkpoint
    assert a.to_bytes() == b.to_bytes()
    assert a.extra["weights_sha256"] == fit.extra["weights_sha256"]
    assert a.program_digest != fit.program_digest


def test_a_fine_tune_starts_from_the_checkpoint_as_family_fit_does(row_data, store):
    train, val = row_data
    mlp = get_family("mlp")
    base = mlp.fit(train[:30], val, MLP).checkpoint
    tuned = fit_decomposed("mlp", {"epochs": 1, "seed": 3}, train[30:], val, lambda r: 0,
                           store=store, init=base).checkpoint
    fit = mlp.fit(train[30:], val, {"epochs": 1, "seed": 3}, init=base).checkpoint
    assert all(torch.equal(tuned.tensors[k], fit.tensors[k]) for k in fit.tensors)
    assert torch.equal(tuned.tensors["prep.sd"], base.tensors["prep.sd"])  # kept, not refit
    assert tuned.config["hidden"] == base.config["hidden"]
    with pytest.raises(UsageError, match="keeps the architecture"):
        Trainer("mlp", {"hidden": 9}, train[30:], val, lambda r: 0, init=base)


def test_every_item_needs_a_shard(cnn_data):
    train, val = cnn_data
    partial = dict(list(three_shards(train).items())[1:])
    with pytest.raises(UsageError, match="is in no shard"):
        Trainer("small-cnn", CNN, train, val, partial)
    with pytest.raises(UsageError, match="not an integer"):
        Trainer("small-cnn", CNN, train, val, lambda r: -1)
    with pytest.raises(UsageError, match="both training and validation"):
        Trainer("small-cnn", CNN, train, train[:3], three_shards(train))
