"""Checkpoints: safetensors in the store, sha256 checked before parsing, untrusted files refused."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as st_save

from databright.errors import IntegrityError
from databright.storage.cas import LocalBlobStore
from databright.training import (
    Checkpoint,
    CheckpointIntegrityError,
    MalformedCheckpointError,
    checkpoint_from_bytes,
    get_family,
    load_checkpoint,
    save_checkpoint,
    sha256_hex,
)
from databright.training.checkpoint import META_KEY


@pytest.fixture(scope="module")
def trained(rows):
    train, val = rows
    return get_family("mlp").fit(train[:200], val[:60], {"epochs": 3, "hidden": 8}).checkpoint


def _with(ckpt: Checkpoint, **changes) -> bytes:
    """The checkpoint's bytes after replacing tensors or metadata fields."""
    tensors = dict(ckpt.tensors)
    tensors.update(changes.pop("tensors", {}))
    for name in changes.pop("drop", ()):
        tensors.pop(name)
    meta = {**ckpt.metadata(), **changes}
    return bytes(st_save(tensors, metadata={META_KEY: json.dumps(meta)}))


def test_round_trip_through_the_store(trained, tmp_path):
    store = LocalBlobStore(tmp_path / "store")
    stored = save_checkpoint(store, trained)
    data = store.get(stored.cid)
    assert stored.sha256 == sha256_hex(data) and stored.size == len(data)
    back = load_checkpoint(store, stored.cid, stored.sha256)
    assert back.family == "mlp" and back.labels == trained.labels
    assert back.config == trained.config and back.extra == trained.extra
    assert back.program_digest == trained.program_digest
    assert set(back.tensors) == set(trained.tensors)
    assert all(torch.equal(back.tensors[k], trained.tensors[k]) for k in trained.tensors)
    assert back.to_bytes() == data  # the same checkpoint always serialises to the same bytes
    assert load_checkpoint(store, stored.cid, "0x" + stored.sha256.upper()).family == "mlp"


def test_never_pickle(trained):
    data = trained.to_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    assert json.loads(header["__metadata__"][META_KEY])["family"] == "mlp"
    assert b"\x80\x04" not in data[:2] and b"pickle" not in data
    evil = pickle.dumps({"net.0.weight": [1.0]})
    with pytest.raises(CheckpointIntegrityError):
        checkpoint_from_bytes(evil, sha256_hex(data))
    with pytest.raises(MalformedCheckpointError):
        checkpoint_from_bytes(evil, sha256_hex(evil))


def test_tampered_bytes_are_refused_before_parsing(trained, tmp_path):
    store = LocalBlobStore(tmp_path / "store")
    stored = save_checkpoint(store, trained)
    data = bytearray(store.get(stored.cid))
    data[-3] ^= 0x01  # one bit of one weight
    forged = store.put_bytes(bytes(data))  # a blob with a valid CID of its own
    with pytest.raises(CheckpointIntegrityError, match="sha256") as err:
        load_checkpoint(store, forged, stored.sha256)
    assert isinstance(err.value, IntegrityError)
    with pytest.raises(CheckpointIntegrityError):
        load_checkpoint(store, stored.cid, "0" * 64)


def _deep_metadata(ckpt: Checkpoint, levels: int) -> bytes:
    """The checkpoint with a list nested ``levels`` deep in its metadata JSON (spelt out:
    ``json.dumps`` itself would recurse that deep)."""
    text = json.dumps(ckpt.metadata())[:-1] + ',"x":' + "[" * levels + "]" * levels + "}"
    return bytes(st_save(dict(ckpt.tensors), metadata={META_KEY: text}))


@pytest.mark.parametrize("case", [
    "truncated", "empty", "huge-header-length", "header-not-json", "no-metadata",
    "wrong-format", "unknown-family", "bad-labels", "metric-out-of-range", "bad-config",
    "bad-config-type", "missing-tensor", "extra-tensor", "wrong-shape", "wrong-dtype", "nan-weights", "bad-columns",
    "deep-header", "deep-metadata",
])
def test_malformed_checkpoints_are_refused(trained, case):
    w = trained.tensors["net.0.weight"]
    data = {
        "truncated": lambda: trained.to_bytes()[:-10],
        "empty": lambda: b"",
        "huge-header-length": lambda: struct.pack("<Q", 1 << 40) + b"{}",
        "header-not-json": lambda: struct.pack("<Q", 4) + b"{{{{",
        "no-metadata": lambda: bytes(st_save(dict(trained.tensors))),
        "wrong-format": lambda: _with(trained, format="other 9"),
        "unknown-family": lambda: _with(trained, family="resnet"),
        "bad-labels": lambda: _with(trained, labels=["1"]),
        "metric-out-of-range": lambda: _with(trained, metric_bps=10_001),
        "bad-config": lambda: _with(trained, config={**trained.config, "hidden": "eight"}),
        "bad-config-type": lambda: _with(trained, config={**trained.config, "lr": "fast"}),
        "missing-tensor": lambda: _with(trained, drop=["net.2.bias"]),
        "extra-tensor": lambda: _with(trained, tensors={"net.9.weight": torch.zeros(2)}),
        "wrong-shape": lambda: _with(trained, tensors={"net.0.weight": torch.zeros(9, 64)}),
        "wrong-dtype": lambda: bytes(st_save({**trained.tensors, "net.0.weight": w.double()},
                                             metadata={META_KEY: json.dumps(trained.metadata())})),
        "nan-weights": lambda: _with(trained, tensors={"net.0.weight": w * float("nan")}),
        "bad-columns": lambda: _with(trained, extra={**trained.extra, "columns": [1, 2]}),
        # nesting the recursive JSON parser would follow down to the end of the stack
        "deep-header": lambda: struct.pack("<Q", 200_000) + b"[" * 200_000,
        "deep-metadata": lambda: _deep_metadata(trained, 100_000),
    }[case]()
    with pytest.raises(MalformedCheckpointError):
        checkpoint_from_bytes(data, sha256_hex(data))


def test_validated_checkpoint_predicts_like_the_original(trained, rows):
    _, val = rows
    data = trained.to_bytes()
    back = checkpoint_from_bytes(data, sha256_hex(data))
    mlp = get_family("mlp")
    assert mlp.predict(back, val[:30]) == mlp.predict(trained, val[:30])
