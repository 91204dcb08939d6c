"""The structural check of a result: what the safetensors library writes passes, with names,
dtypes and metadata; truncations, foreign names, bad offsets and pickles are refused."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from safetensors.numpy import load, save

from databright.compute.payload import MalformedPayload, check_payload


def _parts(data: bytes) -> tuple[dict, bytes]:
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]), data[8 + size:]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


GOOD = save({"grad.conv1.weight": np.ones((4, 1, 3, 3), np.float32),
             "grad.fc.bias": np.zeros(10, np.float64), "grad.steps": np.arange(3, dtype=np.int64),
             "grad.empty": np.zeros((0, 5), np.float16)}, metadata={"task": "t1"})


def test_what_safetensors_writes_passes():
    assert check_payload(GOOD) == ["grad.conv1.weight", "grad.empty", "grad.fc.bias",
                                   "grad.steps"]
    assert set(load(GOOD)) == set(check_payload(GOOD))


def test_an_empty_file_of_no_tensors_passes():
    assert check_payload(save({})) == []


@pytest.mark.parametrize("case", [
    "short", "header_past_end", "not_json", "not_object", "name", "dtype", "shape",
    "offsets_size", "gap", "overlap", "trailing", "metadata", "extra_key", "pickle"])
def test_malformed_results_are_refused(case):
    header, body = _parts(GOOD)
    first = "grad.conv1.weight"
    if case == "short":
        bad = GOOD[:5]
    elif case == "header_past_end":
        bad = (10**6).to_bytes(8, "little") + GOOD[8:]
    elif case == "not_json":
        bad = (4).to_bytes(8, "little") + b"{{{{" + body
    elif case == "not_object":
        bad = _join([1], body)  # type: ignore[arg-type]
    elif case == "pickle":
        bad = pickle.dumps({"grad.w": [1.0]})
    elif case == "trailing":
        bad = GOOD + b"\0"
    else:
        if case == "name":
            header["model.w"] = header.pop(first)
        elif case == "dtype":
            header[first]["dtype"] = "F128"
        elif case == "shape":
            header[first]["shape"] = [4, -1]
        elif case == "offsets_size":
            header[first]["data_offsets"][1] -= 4
        elif case == "gap":
            for info in header.values():
                if isinstance(info, dict) and "data_offsets" in info:
                    info["data_offsets"] = [o + 4 for o in info["data_offsets"]]
            body = body + b"\0" * 4
        elif case == "overlap":
            header["grad.fc.bias"]["data_offsets"] = list(header[first]["data_offsets"][:1]) + [
                header[first]["data_offsets"][0] + 80]
        elif case == "metadata":
            header["__metadata__"] = {"task": 1}
        elif case == "extra_key":
            header[first]["code"] = "print(1)"
        bad = _join(header, body)
    with pytest.raises(MalformedPayload):
        check_payload(bad)
