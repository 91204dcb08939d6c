"""Task specs: what a worker is asked to compute, as data only (canonical JSON, validated).

A task is one (step, shard) of a data-parallel training job: the gradient of the summed
cross-entropy of the shard's items in the step's batch, divided by ``divisor`` (the number of
items in the whole batch), at the weights the spec names by CID and sha256. A spec read from the
wire is untrusted: :meth:`TaskSpec.from_bytes` checks every field's type, size and spelling and
raises :class:`~databright.compute.errors.TaskError` with a one-line reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from databright.compute.errors import TaskError
from databright.errors import UsageError
from databright.training.config import canonical_json, loads_untrusted
from databright.training.families import FAMILIES

__all__ = [
    "KINDS",
    "MAX_ITEMS",
    "MAX_LABELS",
    "MAX_SPEC_BYTES",
    "TaskItem",
    "TaskSpec",
    "WeightsRef",
]

KINDS = ("grad",)
MAX_ITEMS = 4096
MAX_LABELS = 4096
MAX_LABEL_CHARS = 256
MAX_SPEC_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 16 * 1024
MAX_SEED = 2**63 - 1
MAX_THREADS = 256
# The spelling databright.storage.cid gives every blob: CIDv1, raw, sha2-256, base32, 59 chars.
_CID = re.compile(r"bafkrei[a-h][a-z2-7]{50}[aeimquy4]")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_MEDIA = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}/[a-z0-9][a-z0-9.+-]{0,63}")
_FIELDS = ("job", "task", "kind", "family", "config", "labels", "program_digest", "weights",
           "items", "divisor", "seed", "threads", "determinism_class")


def _fail(reason: str) -> TaskError:
    return TaskError(f"bad task spec: {reason}")


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _fail(f"{name} must be an integer in [{lo}, {hi}], not {value!r:.40}")
    return value


def _str(value: Any, name: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(f"{name} is not a valid {name.split('.')[-1]}: {value!r:.80}")
    return value


def _keys(obj: Any, name: str, keys: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(f"{name} must be a JSON object")
    if set(obj) != set(keys):
        missing, unexpected = sorted(set(keys) - set(obj)), sorted(set(obj) - set(keys))
        raise _fail(f"{name} fields missing {missing}, unexpected {unexpected!s:.200}")
    return obj


@dataclass(frozen=True)
class WeightsRef:
    """The network state a task starts from: a checkpoint-format safetensors blob."""

    cid: str
    sha256: str

    def __post_init__(self) -> None:
        _str(self.cid, "weights.cid", _CID)
        _str(self.sha256, "weights.sha256", _HEX64)


@dataclass(frozen=True)
class TaskItem:
    """One training item of a task: its blob's CID, its label and media type."""

    cid: str
    label: str
    media_type: str

    def __post_init__(self) -> None:
        _str(self.cid, "item.cid", _CID)
        if not isinstance(self.label, str) or not 0 < len(self.label) <= MAX_LABEL_CHARS:
            raise _fail(f"item {self.cid} has no valid label")
        _str(self.media_type, "item.media_type", _MEDIA)


@dataclass(frozen=True)
class TaskSpec:
    """One task, as data. Construction validates every field (TaskError on the first bad one).

    Attributes:
        job: the job's id; task: the task's id within it; kind: ``"grad"``.
        family, config: the model-market program (family name and its config's JSON fields).
        labels: the classes, in the order of the network's outputs.
        program_digest: the digest of the task program (:func:`~databright.compute.grad.
            task_program_digest`); a worker runs only a program it holds.
        weights: the current network state; items: the shard's items of this step's batch.
        divisor: the number of items in the step's whole batch (the loss is their mean).
        seed, threads: as in ``config``; threads are pinned by the worker.
        determinism_class: hex digest of the determinism class the result's bits belong to.
    """

    job: str
    task: str
    family: str
    config: Mapping[str, Any]
    labels: tuple[str, ...]
    program_digest: str
    weights: WeightsRef
    items: tuple[TaskItem, ...]
    divisor: int
    seed: int
    threads: int
    determinism_class: str
    kind: str = "grad"
    _bytes: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _str(self.job, "job", _ID)
        _str(self.task, "task", _ID)
        if self.kind not in KINDS:
            raise _fail(f"kind must be one of {list(KINDS)}, not {self.kind!r:.40}")
        if not isinstance(self.family, str) or self.family not in FAMILIES:
            raise _fail(f"unknown family {self.family!r:.40}; known: {', '.join(FAMILIES)}")
        self._check_config()
        self._check_labels()
        _str(self.program_digest, "program_digest", _HEX64)
        if not isinstance(self.weights, WeightsRef):
            raise _fail("weights must be a WeightsRef")
        self._check_items()
        _int(self.divisor, "divisor", len(self.items), 2**31 - 1)
        _int(self.seed, "seed", 0, MAX_SEED)
        _int(self.threads, "threads", 1, MAX_THREADS)
        _str(self.determinism_class, "determinism_class", _HEX64)
        cfg = self.config
        if cfg.get("seed", 0) != self.seed or cfg.get("threads", 1) != self.threads:
            raise _fail("seed and threads must be the config's")
        object.__setattr__(self, "_bytes", canonical_json(self.to_dict()).encode("utf-8"))
        if len(self._bytes) > MAX_SPEC_BYTES:
            raise _fail(f"{len(self._bytes)} bytes exceed the limit of {MAX_SPEC_BYTES}")

    def _check_config(self) -> None:
        if not isinstance(self.config, Mapping):
            raise _fail("config must be a JSON object")
        try:
            text = canonical_json(dict(self.config))
        except (TypeError, ValueError) as exc:
            raise _fail(f"config is not plain JSON: {exc}") from None
        if len(text) > MAX_CONFIG_BYTES:
            raise _fail(f"config of {len(text)} bytes exceeds {MAX_CONFIG_BYTES}")
        try:  # every field checked by the family's own config type; defaults made explicit
            full = FAMILIES[self.family].config_type.from_dict(json.loads(text)).to_dict()
        except UsageError as exc:
            raise _fail(f"config: {exc}") from None
        object.__setattr__(self, "config", full)

    def _check_labels(self) -> None:
        labels = self.labels
        if (not isinstance(labels, tuple) or not 2 <= len(labels) <= MAX_LABELS
                or not all(isinstance(x, str) and 0 < len(x) <= MAX_LABEL_CHARS for x in labels)
                or len(set(labels)) != len(labels)):
            raise _fail(f"labels must be 2..{MAX_LABELS} distinct non-empty strings of at most "
                        f"{MAX_LABEL_CHARS} characters")

    def _check_items(self) -> None:
        items = self.items
        if not isinstance(items, tuple) or not 0 < len(items) <= MAX_ITEMS:
            raise _fail(f"a task has 1..{MAX_ITEMS} items")
        if not all(isinstance(i, TaskItem) for i in items):
            raise _fail("items must be TaskItems")
        if len({i.cid for i in items}) != len(items):
            raise _fail("an item appears twice")
        known = set(self.labels)
        for item in items:
            if item.label not in known:
                raise _fail(f"item {item.cid} has label {item.label!r:.40}, not one of the labels")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON fields."""
        return {
            "job": self.job, "task": self.task, "kind": self.kind, "family": self.family,
            "config": dict(self.config), "labels": list(self.labels),
            "program_digest": self.program_digest,
            "weights": {"cid": self.weights.cid, "sha256": self.weights.sha256},
            "items": [{"cid": i.cid, "label": i.label, "media_type": i.media_type}
                      for i in self.items],
            "divisor": self.divisor, "seed": self.seed, "threads": self.threads,
            "determinism_class": self.determinism_class,
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): one spec, one byte string."""
        return self._bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> TaskSpec:
        """Parse and validate an untrusted spec. Raises TaskError with the first problem."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _fail("a spec is bytes")
        if len(data) > MAX_SPEC_BYTES:
            raise _fail(f"{len(data)} bytes exceed the limit of {MAX_SPEC_BYTES}")
        try:
            obj = loads_untrusted(bytes(data))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _fail(f"not JSON: {exc!s:.120}") from None
        top = _keys(obj, "spec", _FIELDS)
        w = _keys(top["weights"], "weights", ("cid", "sha256"))
        raw_items, raw_labels = top["items"], top["labels"]
        if not isinstance(raw_items, list) or len(raw_items) > MAX_ITEMS:
            raise _fail(f"items must be a list of at most {MAX_ITEMS}")
        if not isinstance(raw_labels, list) or len(raw_labels) > MAX_LABELS:
            raise _fail(f"labels must be a list of at most {MAX_LABELS}")
        items = []
        for raw in raw_items:
            i = _keys(raw, "item", ("cid", "label", "media_type"))
            items.append(TaskItem(i["cid"], i["label"], i["media_type"]))
        return cls(
            job=top["job"], task=top["task"], kind=top["kind"], family=top["family"],
            config=top["config"], labels=tuple(raw_labels),
            program_digest=top["program_digest"], weights=WeightsRef(w["cid"], w["sha256"]),
            items=tuple(items), divisor=top["divisor"], seed=top["seed"],
            threads=top["threads"], determinism_class=top["determinism_class"],
        )
