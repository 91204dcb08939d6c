"""A worker's result on the wire: a safetensors file, checked structurally without any library.

safetensors is an 8-byte little-endian header length, a JSON header mapping each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an optional ``"__metadata__"`` of
strings), then the tensors' bytes. Nothing in it is code, so nothing is ever unpickled; this
check refuses anything that a safetensors reader would not load the same way, before the bytes
are kept.
"""

from __future__ import annotations

import json
import math
import re

from databright.errors import DataBrightError

__all__ = ["DTYPE_BYTES", "GRAD_PREFIX", "PREDICT_TENSOR", "MalformedPayload", "check_payload"]

GRAD_PREFIX = "grad."
PREDICT_TENSOR = "probabilities"  # the one tensor of a ``predict`` task's result
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_MAX_HEADER = 16 * 1024 * 1024
_NAME = re.compile(r"grad\.[A-Za-z0-9_.]{1,200}|probabilities")


class MalformedPayload(DataBrightError):
    """A result that is not a well-formed safetensors file of ``grad.*`` tensors (or a
    prediction's ``probabilities``)."""

    http_status = 422
    code = "malformed_payload"


def check_payload(data: bytes) -> list[str]:
    """The tensor names of a well-formed result, sorted.

    Raises:
        MalformedPayload: a truncated file, a header that is not the JSON described above, a
            name outside ``grad.<param>`` and ``probabilities``, a tensor whose bytes do not match its dtype and
            shape, or data not tiled exactly by the tensors. The kind's own checker then
            judges the tensors against the task (``grad`` or ``predict``).
    """
    if len(data) < 8:
        raise MalformedPayload("a safetensors file starts with an 8-byte header length")
    size = int.from_bytes(data[:8], "little")
    if size > _MAX_HEADER or 8 + size > len(data):
        raise MalformedPayload("the safetensors header length runs past the payload")
    try:
        header = json.loads(data[8:8 + size])
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("the safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise MalformedPayload("the safetensors header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise MalformedPayload("__metadata__ maps strings to strings")
    spans = []
    for name, info in header.items():
        if not _NAME.fullmatch(name):
            raise MalformedPayload(f"tensor {name[:80]!r} is not named {GRAD_PREFIX}<param> "
                                   f"or {PREDICT_TENSOR}")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise MalformedPayload(f"tensor {name!r} needs exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise MalformedPayload(f"tensor {name!r} has an unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
                type(d) is int and d >= 0 for d in shape) or len(shape) > 8:
            raise MalformedPayload(f"tensor {name!r} has a malformed shape")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise MalformedPayload(f"tensor {name!r} has malformed data offsets")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise MalformedPayload(f"tensor {name!r}: its bytes do not match dtype and shape")
        spans.append((offsets[0], offsets[1]))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise MalformedPayload("the tensors overlap or leave gaps in the data")
        end = stop
    if end != len(data) - 8 - size:
        raise MalformedPayload("the data is not exactly the tensors' bytes")
    return sorted(header)
