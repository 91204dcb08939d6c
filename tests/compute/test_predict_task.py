"""Task kind ``predict``: the model server's predictions as class probabilities, the same bytes
in another process, and untrusted specs and results refused with a reason."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from databright.compute.errors import ResultError, TaskError
from databright.compute.grad import write_payload
from databright.compute.predict import (
    MAX_PREDICT_ITEMS,
    PredictItem,
    PredictSpec,
    batch_spec,
    check_predict_result,
)
from databright.compute.tasks import KINDS, run_spec
from databright.storage.cas import LocalBlobStore
from databright.training import CheckpointIntegrityError, checkpoint_from_bytes
from databright.training.api import train_dataset
from databright.training.families import get_family
from tests.training.conftest import digit_images, digit_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A small CNN checkpoint in a store, and 12 unseen digit images stored beside it."""
    store = LocalBlobStore(tmp_path_factory.mktemp("predict") / "store")
    result = train_dataset(digit_images(0, 40), digit_images(40, 10), "small-cnn",
                           {"epochs": 1, "size": 16, "width": 4}, store=store)
    items = digit_images(300, 12)
    for r in items:
        store.put_bytes(r.load())
    ckpt = checkpoint_from_bytes(store.get(result.cid), result.sha256)
    spec = batch_spec("job-7", "batch-0", ckpt, result.cid, result.sha256,
                      tuple(PredictItem(r.cid, r.media_type) for r in items))
    return spec, store, ckpt, items


def test_predict_is_a_registered_kind_and_gives_the_model_servers_labels(cnn):
    spec, store, ckpt, items = cnn
    assert "predict" in KINDS
    payload = run_spec(spec.to_bytes(), store.get)
    probs = check_predict_result(payload, "job-7", "batch-0", len(items), len(ckpt.labels))
    assert probs.dtype == torch.float32
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(items)), atol=1e-5)
    served = get_family("small-cnn").predict(ckpt, items)  # the model server's path
    assert [ckpt.labels[int(i)] for i in probs.argmax(dim=1)] == served


def test_the_same_bytes_in_another_process(cnn):
    spec, store, _, _ = cnn
    here = run_spec(spec.to_bytes(), store.get)
    script = ("import sys; from databright.compute.tasks import run_spec; "
              "from databright.storage.cas import LocalBlobStore; "
              "s = LocalBlobStore(sys.argv[1]); "
              "sys.stdout.buffer.write(run_spec(sys.stdin.buffer.read(), s.get))")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    there = subprocess.run([sys.executable, "-c", script, str(store.root)],
                           input=spec.to_bytes(), capture_output=True, check=True, env=env,
                           timeout=300).stdout
    assert there == here


def test_a_table_model_predicts_rows(tmp_path):
    store = LocalBlobStore(tmp_path / "store")
    result = train_dataset(digit_rows(0, 80), digit_rows(80, 20), "logreg", {"epochs": 5},
                           store=store)
    rows = []
    for r in digit_rows(500, 6):
        row = json.loads(r.load())
        del row["label"]
        rows.append(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())
    cids = [store.put_bytes(data) for data in rows]
    ckpt = checkpoint_from_bytes(store.get(result.cid), result.sha256)
    spec = batch_spec("j", "t", ckpt, result.cid, result.sha256,
                      tuple(PredictItem(c, "application/json") for c in cids))
    probs = check_predict_result(run_spec(spec.to_bytes(), store.get), "j", "t", 6, 10)
    assert probs.shape == (6, 10)


def _with(spec: PredictSpec, **changes) -> bytes:
    obj = spec.to_dict()
    obj.update(changes)
    return json.dumps(obj).encode()


def test_untrusted_specs_are_refused_with_a_reason(cnn):
    spec = cnn[0]
    assert PredictSpec.from_bytes(spec.to_bytes()) == spec
    bad = {
        "fields missing": json.dumps({"kind": "predict"}).encode(),
        "kind must be 'predict'": _with(spec, kind="grad"),
        "unknown family": _with(spec, family="gpt"),
        "checkpoint.cid": _with(spec, checkpoint={"cid": "x", "sha256": spec.checkpoint_sha256}),
        "item.cid": _with(spec, items=[{"cid": "bafkreinope", "media_type": "image/png"}]),
        "1..1024 items": _with(spec, items=[]),
        "at most 1024": _with(spec, items=[spec.to_dict()["items"][0]] * (MAX_PREDICT_ITEMS + 1)),
        "threads must be the config's": _with(spec, threads=spec.threads + 1),
        "labels must be": _with(spec, labels=["a"]),
        "not JSON": b"{",
    }
    for reason, data in bad.items():
        with pytest.raises(TaskError, match=reason):
            PredictSpec.from_bytes(data)


def test_a_task_that_is_not_what_it_claims_is_refused(cnn):
    spec, store, _, _ = cnn
    with pytest.raises(TaskError, match="does not hold"):
        run_spec(dataclasses.replace(spec, program_digest="ab" * 32).to_bytes(), store.get)
    other = dataclasses.replace(spec, checkpoint_sha256="cd" * 32)
    with pytest.raises(CheckpointIntegrityError):
        run_spec(other.to_bytes(), store.get)


def test_the_checker_accepts_exactly_the_shape(cnn):
    meta = {"format": "databright-predict 1", "job": "j", "task": "t"}
    good = torch.full((3, 4), 0.25)
    assert check_predict_result(write_payload({"probabilities": good}, meta), "j", "t", 3, 4) \
        .shape == (3, 4)
    cases = {
        "expected \\[3, 4\\]": write_payload({"probabilities": torch.full((3, 5), 0.2)}, meta),
        "NaN": write_payload({"probabilities": torch.full((3, 4), float("nan"))}, meta),
        "out-of-\\[0, 1\\]": write_payload({"probabilities": torch.full((3, 4), 2.0)}, meta),
        "one tensor": write_payload({"probabilities": good, "x": good.clone()}, meta),
        "not task t's": write_payload({"probabilities": good}, {**meta, "task": "u"}),
        "float32": write_payload({"probabilities": good.double()}, meta),
    }
    for reason, payload in cases.items():
        with pytest.raises(ResultError, match=reason):
            check_predict_result(payload, "j", "t", 3, 4)
