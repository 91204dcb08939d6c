"""Checkpoints: safetensors files in the blob store, verified by sha256 before they are parsed.

File layout (the safetensors format, never pickle): 8-byte little-endian header length, a JSON
header naming each tensor's dtype, shape and byte range, then the raw little-endian tensor bytes.
The header's ``__metadata__`` holds one key, ``databright.checkpoint``, whose value is the
canonical JSON of :class:`Checkpoint`'s fields other than the tensors (one key, so the header's
bytes never depend on a hash-map order). A checkpoint read back is untrusted: the header is
checked before the tensors are touched, and the tensors are checked against the family's network
(see :func:`databright.training.families.get_family`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from databright.training.config import canonical_json, loads_untrusted
from databright.training.errors import CheckpointIntegrityError, MalformedCheckpointError

__all__ = [
    "FORMAT",
    "MAX_CHECKPOINT_BYTES",
    "Checkpoint",
    "CheckpointStore",
    "StoredCheckpoint",
    "checkpoint_from_bytes",
    "load_checkpoint",
    "save_checkpoint",
    "sha256_hex",
]

FORMAT = "databright-checkpoint 1"
META_KEY = "databright.checkpoint"
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024
_DTYPES = {"F32": torch.float32, "I64": torch.int64}
_FIELDS = ("family", "config", "labels", "program_digest", "snapshot", "metric_bps", "extra")


class CheckpointStore(Protocol):
    """What a checkpoint needs of a blob store (:class:`databright.storage.cas.BlobStore`)."""

    def put_bytes(self, data: bytes) -> str: ...

    def get(self, cid: str) -> bytes: ...


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256: the hash the chain records for a checkpoint."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A trained model: its tensors and what is needed to trust and reuse them.

    Attributes:
        family: registered family name (``logreg``, ``efficientnet-head``, ...).
        config: the family config as JSON fields.
        labels: class labels, in the order of the network's outputs.
        program_digest: sha256 of the family, config and training code (:mod:`.digest`).
        snapshot: number of dataset entries trained on.
        metric_bps: validation accuracy in basis points (0..10000).
        extra: family-specific JSON (e.g. tabular columns) and the determinism class.
        tensors: ``net.*`` network parameters, ``prep.*`` input preprocessing.
    """

    family: str
    config: dict[str, Any]
    labels: tuple[str, ...]
    program_digest: str
    snapshot: int
    metric_bps: int
    extra: dict[str, Any] = field(default_factory=dict)
    tensors: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, as stored in the header."""
        return {
            "format": FORMAT,
            "family": self.family,
            "config": self.config,
            "labels": list(self.labels),
            "program_digest": self.program_digest,
            "snapshot": self.snapshot,
            "metric_bps": self.metric_bps,
            "extra": self.extra,
        }

    def to_bytes(self) -> bytes:
        """The safetensors file; the same checkpoint always gives the same bytes."""
        tensors = {k: v.detach().contiguous().clone() for k, v in sorted(self.tensors.items())}
        return bytes(st_save(tensors, metadata={META_KEY: canonical_json(self.metadata())}))


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint written to the store: its CID, sha256 and size in bytes."""

    cid: str
    sha256: str
    size: int


def save_checkpoint(store: CheckpointStore, checkpoint: Checkpoint) -> StoredCheckpoint:
    """Write ``checkpoint`` to ``store``; returns the CID and the sha256 to record."""
    data = checkpoint.to_bytes()
    return StoredCheckpoint(store.put_bytes(data), sha256_hex(data), len(data))


def load_checkpoint(store: CheckpointStore, cid: str, expected_sha256: str) -> Checkpoint:
    """Read, verify and parse a checkpoint.

    Raises:
        CheckpointIntegrityError: the bytes do not hash to ``expected_sha256`` (checked before
            anything is parsed).
        MalformedCheckpointError: not a valid checkpoint of a known family.
    """
    return checkpoint_from_bytes(store.get(cid), expected_sha256)


def checkpoint_from_bytes(data: bytes, expected_sha256: str) -> Checkpoint:
    """Verify ``data`` against ``expected_sha256``, then parse and validate it (see
    :func:`load_checkpoint`)."""
    expected = expected_sha256.lower().removeprefix("0x")
    actual = sha256_hex(data)
    if actual != expected:
        raise CheckpointIntegrityError(
            f"checkpoint sha256 is {actual}, expected {expected}: refusing to load it"
        )
    return parse_checkpoint(data)


def parse_checkpoint(data: bytes) -> Checkpoint:
    """Parse bytes already trusted for integrity; validates the header, then the tensors
    against the family's network. Raises MalformedCheckpointError."""
    header = _header(data)
    meta = _metadata(header)
    tensors = _tensors(data)
    if set(tensors) != set(header) - {"__metadata__"}:
        raise MalformedCheckpointError("checkpoint header and tensors disagree")
    ckpt = Checkpoint(tensors=tensors, **{k: meta[k] for k in _FIELDS})
    from databright.training.families import get_family  # families import this module

    try:
        family = get_family(ckpt.family)
    except Exception as exc:
        raise MalformedCheckpointError(f"checkpoint of unknown family {ckpt.family!r}") from exc
    family.validate(ckpt)
    return ckpt


def _header(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise MalformedCheckpointError(f"checkpoint of {len(data)} bytes exceeds the limit")
    if len(data) < 8:
        raise MalformedCheckpointError("not a safetensors file: shorter than its header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise MalformedCheckpointError(f"not a safetensors file: header length {n} is invalid")
    try:
        header = loads_untrusted(data[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedCheckpointError(f"safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise MalformedCheckpointError("safetensors header is not a JSON object")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
            raise MalformedCheckpointError(f"tensor {name!r} has an unsupported dtype")
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise MalformedCheckpointError(f"tensor {name!r} has an invalid shape")
    return header


def _metadata(header: dict[str, Any]) -> dict[str, Any]:
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or not isinstance(raw.get(META_KEY), str):
        raise MalformedCheckpointError(f"checkpoint has no {META_KEY} metadata")
    try:
        meta = loads_untrusted(raw[META_KEY].encode("utf-8"))
    except ValueError as exc:
        raise MalformedCheckpointError(f"checkpoint metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MalformedCheckpointError(f"checkpoint metadata is not {FORMAT!r}")
    kinds: dict[str, type | tuple[type, ...]] = {
        "family": str, "config": dict, "labels": list, "program_digest": str,
        "snapshot": int, "metric_bps": int, "extra": dict,
    }
    for key, kind in kinds.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise MalformedCheckpointError(f"checkpoint metadata field {key!r} is missing or bad")
    labels = meta["labels"]
    if len(labels) < 2 or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(
        labels
    ):
        raise MalformedCheckpointError("checkpoint labels must be two or more distinct strings")
    if not 0 <= meta["metric_bps"] <= 10_000 or meta["snapshot"] < 0:
        raise MalformedCheckpointError("checkpoint metric or snapshot out of range")
    if len(meta["program_digest"]) != 64:
        raise MalformedCheckpointError("checkpoint program digest is not a sha256")
    meta["labels"] = tuple(labels)
    return meta


def _tensors(data: bytes) -> dict[str, torch.Tensor]:
    try:
        return dict(st_load(data))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise MalformedCheckpointError(f"not a valid safetensors file: {exc}") from exc
