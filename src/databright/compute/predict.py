"""Task kind ``predict``: class probabilities of a batch of a consumer's items under one
registered checkpoint, as safetensors bytes.

A prediction job's batch is a task: the spec (data only, canonical JSON) names the model's
program (family, config, labels), the checkpoint by CID and sha256, and the batch's items by CID
and media type. :func:`run_predict` runs the family's own prediction path
(:meth:`~databright.training.families.base.Family.probabilities`: the model server's network
and inputs) under the checkpoint's seed and threads, so within one determinism class every
honest worker returns the same bytes and replicas are compared by sha256. Specs and results
from the wire are untrusted: :meth:`PredictSpec.from_bytes` and :func:`check_predict_result`
refuse anything but exactly their shape, with one-line reasons.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from databright.compute.errors import DeterminismClassError, ResultError, TaskError
from databright.compute.grad import (
    _Lru,
    code_digest,
    determinism_class_digest,
    read_payload,
    write_payload,
)
from databright.compute.spec import (
    _CID,
    _HEX64,
    _ID,
    _MEDIA,
    MAX_CONFIG_BYTES,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_SPEC_BYTES,
    MAX_THREADS,
    _fail,
    _int,
    _keys,
    _str,
)
from databright.errors import DataBrightError, UsageError
from databright.training.checkpoint import Checkpoint, checkpoint_from_bytes, sha256_hex
from databright.training.config import TrainConfig, canonical_json, loads_untrusted
from databright.training.digest import program_digest
from databright.training.families import FAMILIES, Family, get_family
from databright.training.records import Record

__all__ = ["MAX_PREDICT_ITEMS", "PREDICT_FORMAT", "PredictItem", "PredictSpec", "batch_spec",
           "check_predict_result", "predict_program_digest", "run_predict"]

PREDICT_FORMAT = "databright-predict 1"
MAX_PREDICT_ITEMS = 1024
#: compute files whose code decides a prediction task's bits
PREDICT_CODE = ("predict.py", "spec.py")
_FIELDS = ("job", "task", "kind", "family", "config", "labels", "program_digest", "checkpoint",
           "items", "threads", "determinism_class")
Fetch = Callable[[str], bytes]


def predict_program_digest(family: Family, cfg: TrainConfig) -> str:
    """The digest of the prediction program: family, config, training code, the predict task's
    code. A worker whose code differs computes another digest and refuses the task."""
    inputs = (*family.digest_inputs(), f"predict-task:{code_digest(PREDICT_CODE)}")
    return program_digest(family.name, cfg, list(inputs))


@dataclass(frozen=True)
class PredictItem:
    """One input of a batch: its blob's CID and media type (no label: it is what is asked)."""

    cid: str
    media_type: str

    def __post_init__(self) -> None:
        _str(self.cid, "item.cid", _CID)
        _str(self.media_type, "item.media_type", _MEDIA)


@dataclass(frozen=True)
class PredictSpec:
    """One prediction task, as data; construction validates every field (TaskError)."""

    job: str
    task: str
    family: str
    config: Mapping[str, Any]
    labels: tuple[str, ...]
    program_digest: str
    checkpoint_cid: str
    checkpoint_sha256: str
    items: tuple[PredictItem, ...]
    threads: int
    determinism_class: str
    kind: str = "predict"
    _bytes: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _str(self.job, "job", _ID)
        _str(self.task, "task", _ID)
        if self.kind != "predict":
            raise _fail(f"kind must be 'predict', not {self.kind!r:.40}")
        if not isinstance(self.family, str) or self.family not in FAMILIES:
            raise _fail(f"unknown family {self.family!r:.40}; known: {', '.join(FAMILIES)}")
        if not isinstance(self.config, Mapping):
            raise _fail("config must be a JSON object")
        try:
            text = canonical_json(dict(self.config))
            if len(text) > MAX_CONFIG_BYTES:
                raise _fail(f"config of {len(text)} bytes exceeds {MAX_CONFIG_BYTES}")
            full = FAMILIES[self.family].config_type.from_dict(json.loads(text)).to_dict()
        except (TypeError, ValueError, UsageError) as exc:
            raise _fail(f"config: {exc!s:.120}") from None
        object.__setattr__(self, "config", full)
        labels = self.labels
        if (not isinstance(labels, tuple) or not 2 <= len(labels) <= MAX_LABELS
                or not all(isinstance(x, str) and 0 < len(x) <= MAX_LABEL_CHARS for x in labels)
                or len(set(labels)) != len(labels)):
            raise _fail(f"labels must be 2..{MAX_LABELS} distinct non-empty strings")
        _str(self.program_digest, "program_digest", _HEX64)
        _str(self.checkpoint_cid, "checkpoint.cid", _CID)
        _str(self.checkpoint_sha256, "checkpoint.sha256", _HEX64)
        if (not isinstance(self.items, tuple) or not 0 < len(self.items) <= MAX_PREDICT_ITEMS
                or not all(isinstance(i, PredictItem) for i in self.items)):
            raise _fail(f"a prediction task has 1..{MAX_PREDICT_ITEMS} items")
        _int(self.threads, "threads", 1, MAX_THREADS)
        if full.get("threads", 1) != self.threads:
            raise _fail("threads must be the config's")
        _str(self.determinism_class, "determinism_class", _HEX64)
        object.__setattr__(self, "_bytes", canonical_json(self.to_dict()).encode("utf-8"))
        if len(self._bytes) > MAX_SPEC_BYTES:
            raise _fail(f"{len(self._bytes)} bytes exceed the limit of {MAX_SPEC_BYTES}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job, "task": self.task, "kind": self.kind, "family": self.family,
            "config": dict(self.config), "labels": list(self.labels),
            "program_digest": self.program_digest,
            "checkpoint": {"cid": self.checkpoint_cid, "sha256": self.checkpoint_sha256},
            "items": [{"cid": i.cid, "media_type": i.media_type} for i in self.items],
            "threads": self.threads, "determinism_class": self.determinism_class,
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: one spec, one byte string."""
        return self._bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> PredictSpec:
        """Parse and validate an untrusted spec. Raises TaskError with the first problem."""
        if not isinstance(data, bytes | bytearray) or len(data) > MAX_SPEC_BYTES:
            raise _fail(f"a spec is bytes, at most {MAX_SPEC_BYTES}")
        try:
            obj = loads_untrusted(bytes(data))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _fail(f"not JSON: {exc!s:.120}") from None
        top = _keys(obj, "spec", _FIELDS)
        ck = _keys(top["checkpoint"], "checkpoint", ("cid", "sha256"))
        raw_items, raw_labels = top["items"], top["labels"]
        if not isinstance(raw_items, list) or len(raw_items) > MAX_PREDICT_ITEMS:
            raise _fail(f"items must be a list of at most {MAX_PREDICT_ITEMS}")
        if not isinstance(raw_labels, list) or len(raw_labels) > MAX_LABELS:
            raise _fail(f"labels must be a list of at most {MAX_LABELS}")
        items = tuple(PredictItem(i["cid"], i["media_type"])
                      for i in (_keys(r, "item", ("cid", "media_type")) for r in raw_items))
        return cls(job=top["job"], task=top["task"], kind=top["kind"], family=top["family"],
                   config=top["config"], labels=tuple(raw_labels),
                   program_digest=top["program_digest"], checkpoint_cid=ck["cid"],
                   checkpoint_sha256=ck["sha256"], items=items, threads=top["threads"],
                   determinism_class=top["determinism_class"])


def batch_spec(job: str, task: str, checkpoint: Checkpoint, cid: str, sha256: str,
               items: tuple[PredictItem, ...]) -> PredictSpec:
    """The spec of one batch of a prediction job over a (verified) checkpoint."""
    family = get_family(checkpoint.family)
    cfg = family.config(checkpoint.config)
    threads = int(cfg.to_dict().get("threads", 1))
    return PredictSpec(job=job, task=task, family=family.name, config=cfg.to_dict(),
                       labels=tuple(checkpoint.labels),
                       program_digest=_digest(family.name, canonical_json(cfg.to_dict())),
                       checkpoint_cid=cid, checkpoint_sha256=sha256, items=tuple(items),
                       threads=threads, determinism_class=determinism_class_digest(threads))


_LOCK = threading.Lock()
_RESTORED = _Lru(2)  # checkpoint sha256 → (checkpoint, (cfg, eval network))
_DECODED = _Lru(8192)  # (item CID, mode, size) → decoded row, filled after the CID check


def _restored(spec: PredictSpec, fetch: Fetch, family: Family) -> tuple[Checkpoint, Any]:
    hit = _RESTORED.get(spec.checkpoint_sha256)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    data = fetch(spec.checkpoint_cid)
    ckpt = checkpoint_from_bytes(data, spec.checkpoint_sha256)  # raises unless the sha256 fits
    if ckpt.family != family.name or ckpt.labels != spec.labels:
        raise TaskError(f"task {spec.task}: the checkpoint is a {ckpt.family} network over "
                        f"{len(ckpt.labels)} labels, not the task's")
    if family.config(ckpt.config).to_dict() != dict(spec.config):
        raise TaskError(f"task {spec.task}: the checkpoint was made with another config")
    hit = (ckpt, family.restore(ckpt))
    _RESTORED.put(spec.checkpoint_sha256, hit)
    return hit


def run_predict(spec: PredictSpec, fetch: Fetch) -> bytes:
    """Compute a prediction task: ``{"probabilities": float32 [items, labels]}`` as
    safetensors bytes whose metadata names the job and the task.

    Raises:
        DeterminismClassError: this machine is of another class than the spec names.
        TaskError: another program, a checkpoint that is not the spec's, unusable items.
    """
    local = determinism_class_digest(spec.threads)
    if spec.determinism_class != local:
        raise DeterminismClassError(f"task {spec.task} needs determinism class "
                                    f"{spec.determinism_class[:16]}…, this machine is "
                                    f"{local[:16]}…")
    family = get_family(spec.family)
    cfg = family.config(dict(spec.config))
    if spec.program_digest != _digest(family.name, canonical_json(cfg.to_dict())):
        raise TaskError(f"task {spec.task} names program {spec.program_digest[:16]}…, which this "
                        "worker does not hold (other training or prediction code)")
    with _LOCK:
        ckpt, restored = _restored(spec, fetch, family)
        records = [Record(i.cid, "", i.media_type, functools.partial(fetch, i.cid))
                   for i in spec.items]
        try:
            probs = family.probabilities(ckpt, records, restored=restored,
                                         extra={"decoded": _DECODED})
        except DataBrightError as exc:
            raise TaskError(f"task {spec.task}: {exc!s:.200}") from None
    return write_payload({"probabilities": probs},
                         {"format": PREDICT_FORMAT, "job": spec.job, "task": spec.task})


@functools.cache
def _digest(family_name: str, cfg_json: str) -> str:
    family = get_family(family_name)
    return predict_program_digest(family, family.config(json.loads(cfg_json)))


def check_predict_result(payload: bytes, job: str, task: str, items: int,
                         classes: int) -> torch.Tensor:
    """Validate an untrusted prediction result: exactly one float32 tensor ``probabilities``
    of shape ``[items, classes]``, finite, each value in [0, 1]; metadata naming this job and
    task. Returns the tensor. Raises ResultError with a one-line reason."""
    tensors, meta = read_payload(payload)
    if meta != {"format": PREDICT_FORMAT, "job": job, "task": task}:
        raise ResultError(f"result metadata {meta!s:.120} is not task {task}'s")
    if set(tensors) != {"probabilities"}:
        raise ResultError(f"a prediction result holds one tensor 'probabilities', not "
                          f"{sorted(tensors)!s:.120}")
    t = tensors["probabilities"]
    if tuple(t.shape) != (items, classes):
        raise ResultError(f"probabilities are {list(t.shape)}, expected [{items}, {classes}]")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or bool((t > 1).any()):
        raise ResultError("probabilities hold NaN, infinite or out-of-[0, 1] values")
    return t


def result_sha256(payload: bytes) -> str:
    """The sha256 (hex) replicas' prediction results are compared by."""
    return sha256_hex(payload)
