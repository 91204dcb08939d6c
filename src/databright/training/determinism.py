"""Determinism by construction: seed, thread count and deterministic kernels for one block.

The same configuration and data give bit-identical tensors across processes within one
*determinism class*: torch build, CPU capability (the SIMD level torch dispatches to), thread
count and dtype (float32). :func:`determinism_class` names it; every checkpoint records it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["DTYPE", "determinism_class", "deterministic", "pinned"]

DTYPE = torch.float32


def determinism_class(threads: int) -> dict[str, Any]:
    """What must match for two runs of one configuration to give the same bits."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": int(threads),
        "dtype": "float32",
    }


@contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded by ``seed``, ``threads`` intra-op threads and
    deterministic algorithms; the caller's RNG state, thread count and flags are restored.

    Only the CPU generator is seeded and restored (what ``torch.manual_seed`` gives the CPU,
    without its per-accelerator seeding, ~0.4 ms a call): every determinism class is a CPU one."""
    gen = torch.default_generator
    state = gen.get_state()
    try:
        with pinned(threads):
            gen.manual_seed(seed)
            yield
    finally:
        gen.set_state(state)


@contextmanager
def pinned(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads and deterministic algorithms, without
    touching the RNG (for blocks that draw no random numbers, e.g. an optimiser step); the
    caller's thread count and flags are restored."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
