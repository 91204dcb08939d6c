"""Fault modes of a lying worker, as pure perturbations of an honest result payload.

For tests and benchmarks only: they let a job prove that TMR catches each kind of lie. Each
mode keeps the payload a well-formed result of its task (same names, shapes, metadata), so the
lie is caught by comparing digests and recomputing, not by a parse error. ``copy`` (another
worker's commit) and ``silent`` (no answer) are worker behaviours, not perturbations.
"""

from __future__ import annotations

import numpy as np
import torch

from databright.compute.errors import TaskError
from databright.compute.grad import read_payload, write_payload

__all__ = ["FAULTS", "perturb"]

FAULTS = ("1ulp", "scale", "noise", "signflip", "stale", "zeros")
SCALE = 1 + 1e-6
NOISE = 1e-3  # × each tensor's standard deviation


def perturb(payload: bytes, mode: str, *, rng_seed: int, previous: bytes | None = None) -> bytes:
    """``payload`` with fault ``mode`` applied; the result always has another digest.

    Args:
        payload: an honest result (safetensors of float32 ``grad.*`` tensors).
        mode: one of :data:`FAULTS`: ``1ulp`` moves one element (chosen by ``rng_seed``) to the
            next float32; ``scale`` multiplies everything by 1 + 1e-6; ``noise`` adds gaussian
            noise of 1e-3 × each tensor's standard deviation; ``signflip`` negates one tensor;
            ``stale`` answers with ``previous`` (this shard's result of the previous step);
            ``zeros`` answers zeros. When a mode would leave every element unchanged (zero
            gradients, a repeated result), the largest element moves by one ULP instead, so
            the lie is never an accidental truth.
        rng_seed: chooses elements, tensors and noise.
        previous: the payload ``stale`` answers with.
    """
    if mode not in FAULTS:
        raise TaskError(f"unknown fault mode {mode!r}; known: {', '.join(FAULTS)}")
    tensors, meta = read_payload(payload)
    names = sorted(tensors)
    rng = np.random.default_rng(rng_seed)
    out = {k: tensors[k].clone() for k in names}  # name order: the noise is drawn in it
    if mode == "1ulp":
        _nudge(out[names[int(rng.integers(len(names)))]], rng)
    elif mode == "scale":
        out = {k: out[k] * SCALE for k in names}
    elif mode == "noise":
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        out = {k: out[k] + torch.randn(out[k].shape, generator=gen) * (NOISE * _std(out[k]))
               for k in names}
    elif mode == "signflip":
        name = names[int(rng.integers(len(names)))]
        out[name] = -out[name]
    elif mode == "stale":
        if previous is None:
            raise TaskError("the stale fault needs the previous step's result")
        old, _ = read_payload(previous)
        if set(old) != set(out) or any(old[k].shape != out[k].shape for k in out):
            raise TaskError("the previous result is not of the same network")
        out = {k: old[k].clone() for k in names}
    else:  # zeros
        out = {k: torch.zeros_like(out[k]) for k in names}
    if all(torch.equal(out[k].view(torch.int32), tensors[k].view(torch.int32)) for k in names):
        name = max(names, key=lambda k: float(tensors[k].abs().max()) if tensors[k].numel() else 0)
        _nudge(out[name], rng, largest=True)
    return write_payload(out, meta)


def _std(t: torch.Tensor) -> float:
    s = float(t.std()) if t.numel() > 1 else 0.0
    return s if s > 0 else float(t.abs().max()) if t.numel() else 0.0


def _nudge(t: torch.Tensor, rng: np.random.Generator, *, largest: bool = False) -> None:
    """Move one element of ``t`` (in place; a random one, or the largest in magnitude) to the
    next float32 up (down from the largest finite value)."""
    flat = t.view(-1)
    i = int(flat.abs().argmax()) if largest else int(rng.integers(flat.numel()))
    x = flat[i : i + 1]
    up = torch.nextafter(x, torch.full_like(x, float("inf")))
    flat[i] = up[0] if bool(torch.isfinite(up).all()) else torch.nextafter(x, -x.abs())[0]
