"""What a worker runs for a task spec, by its ``kind``: one entry point for every task kind.

A spec on the wire is untrusted bytes. :func:`run_spec` reads only its ``kind`` field here and
hands the bytes to that kind's runner, which parses and validates the whole spec itself
(``grad``: :class:`~databright.compute.spec.TaskSpec`; ``predict``:
:class:`~databright.compute.predict.PredictSpec`). An unknown kind is refused with a
one-line reason, so an old worker never guesses at a task it does not know.
"""

from __future__ import annotations

from collections.abc import Callable

from databright.compute.errors import TaskError
from databright.training.config import loads_untrusted

__all__ = ["KINDS", "Fetch", "run_spec", "spec_kind"]

Fetch = Callable[[str], bytes]
Runner = Callable[[bytes, Fetch], bytes]
MAX_SPEC_BYTES = 4 * 1024 * 1024


def _grad(spec: bytes, fetch: Fetch) -> bytes:
    from databright.compute.grad import run_task
    from databright.compute.spec import TaskSpec

    return run_task(TaskSpec.from_bytes(spec), fetch)


def _predict(spec: bytes, fetch: Fetch) -> bytes:
    from databright.compute.predict import PredictSpec, run_predict

    return run_predict(PredictSpec.from_bytes(spec), fetch)


#: task kind → its runner (imported when first used: a worker loads only what it runs)
KINDS: dict[str, Runner] = {"grad": _grad, "predict": _predict}


def spec_kind(spec: bytes) -> str:
    """The ``kind`` of an untrusted spec. Raises TaskError for anything but a JSON object
    naming a known kind."""
    if not isinstance(spec, bytes | bytearray) or len(spec) > MAX_SPEC_BYTES:
        raise TaskError(f"bad task spec: a spec is at most {MAX_SPEC_BYTES} bytes")
    try:
        obj = loads_untrusted(bytes(spec))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TaskError(f"bad task spec: not JSON: {exc!s:.120}") from None
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if not isinstance(kind, str) or kind not in KINDS:
        raise TaskError(f"bad task spec: kind must be one of {sorted(KINDS)}, not {kind!r:.40}")
    return kind


def run_spec(spec: bytes, fetch: Fetch) -> bytes:
    """Run an untrusted spec with its kind's runner; the result payload (safetensors bytes)."""
    return KINDS[spec_kind(spec)](bytes(spec), fetch)
