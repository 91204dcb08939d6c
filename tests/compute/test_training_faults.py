"""Fault modes: each one changes a result's digest (so TMR's digest comparison sees it), keeps
the payload a well-formed result of its task, and does what its name says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from databright.compute.errors import TaskError
from databright.compute.faults import FAULTS, SCALE, perturb
from databright.compute.grad import check_result, read_payload, result_digest, write_payload

META = {"format": "databright-grad 1", "job": "job-1", "task": "step-3.shard-1"}
SHAPES = {"grad.0.weight": (3, 4), "grad.0.bias": (3,)}

_values = st.one_of(
    st.just(0.0), st.just(-0.0),
    st.floats(min_value=-2.0**100, max_value=2.0**100, allow_nan=False, width=32),
)


def _payloads():
    return st.tuples(*(arrays(np.float32, shape, elements=_values) for shape in SHAPES.values()))


def _payload(arrs) -> bytes:
    return write_payload({k: torch.from_numpy(a.copy()) for k, a in zip(SHAPES, arrs)}, META)


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from(FAULTS), seed=st.integers(0, 2**32), honest=_payloads(),
       previous=_payloads())
def test_every_fault_changes_the_digest_and_still_parses(mode, seed, honest, previous):
    payload = _payload(honest)
    old = write_payload({k: torch.from_numpy(a.copy()) for k, a in zip(SHAPES, previous)},
                        {**META, "task": "step-2.shard-1"})
    lied = perturb(payload, mode, rng_seed=seed, previous=old)
    assert result_digest(lied) != result_digest(payload)
    check_result(lied, META["job"], META["task"], SHAPES)  # names, shapes, finite, metadata
    assert perturb(payload, mode, rng_seed=seed, previous=old) == lied  # pure


@pytest.fixture
def honest() -> tuple[bytes, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(s, generator=gen) for k, s in SHAPES.items()}
    return write_payload(tensors, META), tensors


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> int:
    return sum(int((a[k].view(torch.int32) != b[k].view(torch.int32)).sum()) for k in a)


def test_1ulp_moves_one_element_to_the_next_float(honest):
    payload, tensors = honest
    out, meta = read_payload(perturb(payload, "1ulp", rng_seed=3))
    assert meta == META and _changed(out, tensors) == 1
    for k in tensors:
        diff = (out[k].view(torch.int32).long() - tensors[k].view(torch.int32).long()).abs()
        assert int(diff.max()) <= 1  # adjacent bit patterns: one unit in the last place


def test_scale_noise_signflip_zeros_and_stale(honest):
    payload, tensors = honest
    scaled, _ = read_payload(perturb(payload, "scale", rng_seed=0))
    for k in tensors:
        assert torch.equal(scaled[k], tensors[k] * SCALE)
    noisy, _ = read_payload(perturb(payload, "noise", rng_seed=0))
    for k in tensors:
        err = float((noisy[k] - tensors[k]).std())
        assert 0 < err < 5e-3 * float(tensors[k].std())
    flipped, _ = read_payload(perturb(payload, "signflip", rng_seed=0))
    negated = [k for k in tensors if torch.equal(flipped[k], -tensors[k])]
    kept = [k for k in tensors if torch.equal(flipped[k], tensors[k])]
    assert len(negated) == 1 and len(kept) == len(tensors) - 1
    zeros, _ = read_payload(perturb(payload, "zeros", rng_seed=0))
    assert all(not bool(v.any()) for v in zeros.values())
    old = write_payload({k: v + 1 for k, v in tensors.items()}, {**META, "task": "step-2.shard-1"})
    stale, meta = read_payload(perturb(payload, "stale", rng_seed=0, previous=old))
    assert meta == META and all(torch.equal(stale[k], tensors[k] + 1) for k in tensors)


def test_a_fault_that_would_be_the_truth_still_lies():
    zero = write_payload({k: torch.zeros(s) for k, s in SHAPES.items()}, META)
    for mode in FAULTS:
        out = perturb(zero, mode, rng_seed=1, previous=zero)
        assert result_digest(out) != result_digest(zero), mode


def test_unknown_modes_and_a_stale_fault_without_history_are_refused(honest):
    payload, _ = honest
    with pytest.raises(TaskError, match="unknown fault mode"):
        perturb(payload, "copy", rng_seed=0)
    with pytest.raises(TaskError, match="needs the previous"):
        perturb(payload, "stale", rng_seed=0)
    other = write_payload({"grad.x": torch.zeros(2)}, META)
    with pytest.raises(TaskError, match="not of the same network"):
        perturb(payload, "stale", rng_seed=0, previous=other)
