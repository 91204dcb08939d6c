"""A worker's task: the gradient of a shard's share of one step's loss, as safetensors bytes.

:func:`run_task` is deterministic by construction: within one determinism class (torch build,
CPU capability, threads, dtype) every process computes the same bytes for the same spec, so
three honest replicas agree on the sha256 (:func:`result_digest`) and a coordinator compares
digests, never values. A result read from a worker is untrusted: :func:`parse_result` accepts
exactly the tensors the task's network has, float32 and finite.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch.nn import functional as F

from databright.compute.errors import DeterminismClassError, ResultError, TaskError
from databright.compute.spec import TaskSpec
from databright.errors import DataBrightError
from databright.training.checkpoint import Checkpoint, checkpoint_from_bytes, sha256_hex
from databright.training.config import TrainConfig, canonical_json, loads_untrusted
from databright.training.determinism import determinism_class, deterministic
from databright.training.digest import program_digest
from databright.training.embed import EmbeddingCache
from databright.training.families import Family, get_family
from databright.training.families.base import context, init_prep
from databright.training.records import Record

__all__ = [
    "MAX_RESULT_BYTES",
    "RESULT_FORMAT",
    "all_finite",
    "check_result",
    "clear_caches",
    "code_digest",
    "determinism_class_digest",
    "grad_shapes",
    "parse_result",
    "read_payload",
    "result_digest",
    "run_task",
    "task_program_digest",
    "write_payload",
]

RESULT_FORMAT = "databright-grad 1"
META_KEY = "databright.result"
MAX_RESULT_BYTES = 256 * 1024 * 1024
_MAX_HEADER = 1024 * 1024
_PACKAGE = Path(__file__).resolve().parent
#: compute files whose code decides a task's bits (the training package is in every digest)
TASK_CODE = ("grad.py", "spec.py")

Fetch = Callable[[str], bytes]


@functools.cache
def determinism_class_digest(threads: int) -> str:
    """Hex sha256 of this machine's determinism class at ``threads`` threads (fixed for the
    life of a process: torch build and CPU capability do not change under it)."""
    return sha256_hex(canonical_json(determinism_class(threads)).encode("utf-8"))


@functools.cache
def code_digest(names: tuple[str, ...]) -> str:
    """sha256 over the named compute code files (relative path and bytes, in order)."""
    h = hashlib.sha256(b"databright-compute-code 1")
    for name in names:
        data = (_PACKAGE / name).read_bytes()
        h.update(b"\0" + name.encode("utf-8") + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


_PROGRAMS: dict[tuple[str, str, tuple[str, ...]], str] = {}


def task_program_digest(family: Family, cfg: TrainConfig) -> str:
    """The digest of the gradient program a task runs: the family, its config, the training
    code and the task code. A worker whose code differs computes another digest and refuses.

    Computed once per (family, config) a process: the code it hashes is the code the process
    has imported, which does not change under it."""
    inputs = (*family.digest_inputs(), f"grad-task:{code_digest(TASK_CODE)}")
    key = (family.name, canonical_json(cfg.to_dict()), inputs)
    digest = _PROGRAMS.get(key)
    if digest is None:
        digest = _PROGRAMS[key] = program_digest(family.name, cfg, list(inputs))
    return digest


def result_digest(payload: bytes) -> str:
    """The sha256 (hex) replicas' results are compared by."""
    return sha256_hex(payload)


class _Lru:
    """A small least-recently-used map (a worker sees one weights blob a step and one network
    per job, so a handful of entries is enough)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def clear(self) -> None:
        self._items.clear()


@dataclass
class _Net:
    """A network built once under a task's seed, reused with each task's weights loaded.

    ``before`` is the CPU RNG state the network was built from and ``after`` the state its
    construction left: a task that starts from ``before`` continues from ``after``, exactly as
    if it had built the network itself."""

    module: torch.nn.Module
    before: torch.Tensor
    after: torch.Tensor


_LOCK = threading.Lock()  # one task at a time uses the cached networks
_WEIGHTS = _Lru(4)  # verified sha256 → parsed, validated checkpoint
_NETS = _Lru(8)  # (family, config, extra, labels, seed) → _Net
_DECODED = _Lru(8192)  # (item CID, mode, size) → decoded input row, filled after the CID check


def clear_caches() -> None:
    """Forget the parsed weights and built networks this process keeps."""
    with _LOCK:
        _WEIGHTS.clear()
        _NETS.clear()
        _DECODED.clear()


def run_task(spec: TaskSpec, fetch: Fetch, *, cache: EmbeddingCache | None = None) -> bytes:
    """Compute a task: ``d(Σ cross-entropy of spec.items) / spec.divisor`` for each parameter.

    Args:
        spec: the (validated) task.
        fetch: ``fetch(cid) -> bytes`` for the weights and the items (the caller verifies CIDs;
            the weights' sha256 is verified here, before they are parsed).
        cache: embedding cache for ``efficientnet-head`` (default: the process's).

    Returns:
        safetensors bytes: ``grad.<parameter>`` float32 tensors; metadata names job and task.

    Raises:
        DeterminismClassError: this machine is of another class than the spec names.
        TaskError: unknown program, weights that are not the task's, unusable items.

    The fixed costs of a task are paid once per process: a weights blob is parsed and
    validated once per verified sha256, an image item is decoded once per CID (small-cnn,
    after its loader verified it), and the network is built once per (family, config, labels,
    seed) and given each task's weights, with the RNG state its construction left; the bytes
    are those of building everything afresh.
    """
    local = determinism_class_digest(spec.threads)
    if spec.determinism_class != local:
        raise DeterminismClassError(
            f"task {spec.task} needs determinism class {spec.determinism_class[:16]}…, this "
            f"machine is {local[:16]}… ({canonical_json(determinism_class(spec.threads))})")
    family = get_family(spec.family)
    cfg = family.config(dict(spec.config))
    if spec.program_digest != task_program_digest(family, cfg):
        raise TaskError(f"task {spec.task} names program {spec.program_digest[:16]}…, which this "
                        "worker does not hold (other training or task code)")
    with _LOCK:
        weights = _weights(spec, fetch, family, cfg)
        prep, extra = init_prep(weights)
        records = [Record(i.cid, i.label, i.media_type, functools.partial(fetch, i.cid))
                   for i in spec.items]
        index = {label: k for k, label in enumerate(spec.labels)}
        with deterministic(spec.seed, spec.threads):
            ctx = context(cache)
            ctx.extra["decoded"] = _DECODED
            try:
                x = family.inputs(cfg, records, prep, extra, ctx)
            except DataBrightError as exc:
                raise TaskError(f"task {spec.task}: {exc}") from exc
            y = torch.tensor([index[i.label] for i in spec.items], dtype=torch.int64)
            net = _network(spec, family, cfg, extra, weights)
            net.train()
            loss = F.cross_entropy(net(x), y, reduction="sum") / spec.divisor
            loss.backward()  # type: ignore[no-untyped-call]
            grads = {}
            for name, p in net.named_parameters():
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                grads[f"grad.{name}"] = g.detach().contiguous()
                p.grad = None  # the next task's gradient starts from nothing
    return write_payload(grads, {"format": RESULT_FORMAT, "job": spec.job, "task": spec.task})


def _network(spec: TaskSpec, family: Family, cfg: TrainConfig, extra: dict[str, Any],
             weights: Checkpoint) -> torch.nn.Module:
    """``family.initial_network(cfg, extra, spec.labels, weights)`` under the current RNG,
    from the cache when the RNG is where the cached network was built from."""
    gen = torch.default_generator
    key = (family.name, canonical_json(cfg.to_dict()), canonical_json(extra), spec.labels,
           spec.seed)
    cached: _Net | None = _NETS.get(key)
    if cached is not None and torch.equal(gen.get_state(), cached.before):
        gen.set_state(cached.after)
        for p in cached.module.parameters():
            p.grad = None
        cached.module.load_state_dict({k[4:]: v for k, v in weights.tensors.items()
                                       if k.startswith("net.")})
        return cached.module
    before = gen.get_state()
    net = family.initial_network(cfg, extra, spec.labels, weights)
    _NETS.put(key, _Net(net, before, gen.get_state()))
    return net


def _weights(spec: TaskSpec, fetch: Fetch, family: Family, cfg: TrainConfig) -> Checkpoint:
    data = fetch(spec.weights.cid)
    digest = sha256_hex(data)  # hashed before anything is parsed or reused
    weights: Checkpoint | None = _WEIGHTS.get(digest)
    if weights is None:
        weights = checkpoint_from_bytes(data, spec.weights.sha256)
        _WEIGHTS.put(digest, weights)
    elif digest != spec.weights.sha256.lower().removeprefix("0x"):
        weights = checkpoint_from_bytes(data, spec.weights.sha256)  # raises: not the task's
    if weights.family != family.name or weights.labels != spec.labels:
        raise TaskError(f"task {spec.task}: the weights are a {weights.family} network over "
                        f"{len(weights.labels)} labels, not the task's")
    if family.config(weights.config).to_dict() != cfg.to_dict():
        raise TaskError(f"task {spec.task}: the weights were made for another config")
    return weights


def grad_shapes(weights: Checkpoint) -> dict[str, tuple[int, ...]]:
    """The names and shapes of a task's result tensors for a network state."""
    return {f"grad.{k[4:]}": tuple(v.shape) for k, v in sorted(weights.tensors.items())
            if k.startswith("net.")}


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of a CPU float tensor is finite. numpy's single-threaded check: a
    coordinator validates many results, and torch's intra-op threads contend with the workers'
    on a shared machine (≈ 40 ms vs 0.1 ms for 400k values measured on 2 busy cores)."""
    return bool(np.isfinite(t.detach().contiguous().numpy()).all())


def write_payload(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> bytes:
    """safetensors bytes of ``tensors`` with ``meta`` as the one metadata key (so the bytes
    depend only on the contents)."""
    ordered = {k: v.detach().contiguous() for k, v in sorted(tensors.items())}
    return bytes(st_save(ordered, metadata={META_KEY: canonical_json(dict(meta))}))


def read_payload(payload: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (in name order) and metadata of a result, checked as a safetensors file of
    float32 tensors. Raises ResultError."""
    if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_RESULT_BYTES:
        raise ResultError(f"a result is at most {MAX_RESULT_BYTES} bytes")
    if len(payload) < 8:
        raise ResultError("not a safetensors file: shorter than its header length")
    (n,) = struct.unpack("<Q", payload[:8])
    if n > _MAX_HEADER or 8 + n > len(payload):
        raise ResultError(f"not a safetensors file: header length {n} is invalid")
    try:
        header = loads_untrusted(bytes(payload[8 : 8 + n]))
        meta = loads_untrusted(header["__metadata__"][META_KEY].encode("utf-8"))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ResultError(f"result header or metadata is not valid: {exc!s:.80}") from None
    if not isinstance(header, dict) or not isinstance(meta, dict):
        raise ResultError("result header is not a JSON object")
    for name, info in header.items():
        if name != "__metadata__" and (not isinstance(info, dict) or info.get("dtype") != "F32"):
            raise ResultError(f"result tensor {name!r:.80} is not float32")
    try:
        loaded = st_load(bytes(payload))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ResultError(f"not a valid safetensors file: {exc!s:.120}") from None
    return {k: loaded[k] for k in sorted(loaded)}, meta  # the loader's order is a hash map's


def parse_result(
    payload: bytes, spec: TaskSpec, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """Validate an untrusted worker result for ``spec`` before it is used.

    Args:
        payload: the revealed bytes.
        spec: the task they answer (the metadata must name its job and task).
        shapes: the expected tensors (:func:`grad_shapes` of the task's weights).

    Raises:
        ResultError: other names, shapes or dtypes, non-finite values, another task's metadata.
    """
    return check_result(payload, spec.job, spec.task, shapes)


def check_result(
    payload: bytes, job: str, task: str, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """:func:`parse_result` for a task named by its job and task ids."""
    tensors, meta = read_payload(payload)
    want = {"format": RESULT_FORMAT, "job": job, "task": task}
    if meta != want:
        raise ResultError(f"result metadata {meta!s:.120} is not task {task}'s")
    if set(tensors) != set(shapes):
        missing, unexpected = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
        raise ResultError(f"result tensors do not fit the network: missing {missing}, "
                          f"unexpected {unexpected!s:.120}")
    for name, shape in shapes.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise ResultError(f"result tensor {name} is {list(t.shape)}, expected {list(shape)}")
        if not all_finite(t):
            raise ResultError(f"result tensor {name} holds NaN or infinite values")
    return tensors
