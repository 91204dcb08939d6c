"""Task specs are data: canonical bytes, and untrusted bytes are refused with a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databright.compute.errors import TaskError
from databright.compute.spec import MAX_ITEMS, MAX_SPEC_BYTES, TaskItem, TaskSpec, WeightsRef
from databright.errors import DataBrightError
from databright.storage.cid import cid_of_bytes

CIDS = [cid_of_bytes(bytes([i])) for i in range(3)]
HEX = "ab" * 32


def _spec(**changes: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "job": "job-1", "task": "step-0.shard-2", "family": "small-cnn",
        "config": {"epochs": 2, "batch_size": 16, "size": 16, "width": 4},
        "labels": ("0", "1"), "program_digest": HEX, "weights": WeightsRef(CIDS[0], HEX),
        "items": (TaskItem(CIDS[1], "1", "image/png"), TaskItem(CIDS[2], "0", "image/png")),
        "divisor": 16, "seed": 0, "threads": 1, "determinism_class": "cd" * 32,
    }
    return TaskSpec(**{**fields, **changes})


def _json() -> dict[str, Any]:
    return json.loads(_spec().to_bytes())


def test_canonical_bytes_round_trip():
    spec = _spec()
    data = spec.to_bytes()
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
    back = TaskSpec.from_bytes(data)
    assert back == spec and back.to_bytes() == data
    # the config is the family's, every default explicit: one program, one spelling
    assert back.config["lr"] == 0.01 and back.config["mode"] == "L"
    assert back.items[0] == TaskItem(CIDS[1], "1", "image/png")


def _mutated(path: tuple[Any, ...], value: Any) -> bytes:
    obj = _json()
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(obj).encode()


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "reason"), [
    (("kind",), "eval", "kind must be one of"),
    (("family",), "resnet", "unknown family"),
    (("extra",), 1, "unexpected \\['extra'\\]"),
    (("seed",), _DELETE, "missing \\['seed'\\]"),
    (("program_digest",), "AB" * 32, "not a valid program_digest"),
    (("determinism_class",), "cd" * 31, "not a valid determinism_class"),
    (("weights", "cid"), "Qm" + "a" * 44, "not a valid cid"),
    (("weights", "sha256"), 7, "not a valid sha256"),
    (("weights", "size"), 7, "weights fields"),
    (("items", 0, "cid"), CIDS[2], "appears twice"),
    (("items", 0, "label"), "7", "not one of the labels"),
    (("items", 0, "media_type"), "png", "not a valid media_type"),
    (("items",), [], "1..4096 items"),
    (("labels",), ["0", "0"], "distinct"),
    (("labels",), "01", "labels must be a list"),
    (("divisor",), 1, "divisor must be an integer in \\[2,"),
    (("threads",), True, "threads must be an integer"),
    (("threads",), 0, "threads must be an integer"),
    (("seed",), 2**64, "seed must be an integer"),
    (("seed",), 3, "seed and threads must be the config's"),
    (("config", "width"), 0, "config: .*width"),
    (("config", "colour"), 1, "config: unknown"),
    (("job",), "job 1", "not a valid job"),
    (("task",), "x" * 200, "not a valid task"),
])
def test_a_bad_field_is_refused_with_its_reason(path, value, reason):
    with pytest.raises(TaskError, match=reason):
        TaskSpec.from_bytes(_mutated(path, value))


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "spec must be a JSON object"),
    (b'{"seed": NaN}', "not JSON"),
    (b"[" * 100_000, "nested deeper than"),  # refused before the recursive parser sees it
    (b" " * (MAX_SPEC_BYTES + 1), "exceed the limit"),
])
def test_bytes_that_are_no_spec_are_refused(data, reason):
    with pytest.raises(TaskError, match=reason):
        TaskSpec.from_bytes(data)


def test_size_limits():
    items = tuple(TaskItem(cid_of_bytes(i.to_bytes(4, "big")), "0", "image/png")
                  for i in range(MAX_ITEMS + 1))
    with pytest.raises(TaskError, match="1..4096 items"):
        _spec(items=items, divisor=MAX_ITEMS + 1)
    assert len(_spec(items=items[:MAX_ITEMS], divisor=MAX_ITEMS).items) == MAX_ITEMS
    with pytest.raises(TaskError, match="labels must be"):
        _spec(labels=tuple(str(i) for i in range(4097)))
    with pytest.raises(TaskError, match="labels must be"):
        _spec(labels=("0", "1" * 257))


def test_the_cid_pattern_is_the_stores():
    for i in range(200):
        _spec(weights=WeightsRef(cid_of_bytes(str(i).encode()), HEX))  # every real CID passes
    with pytest.raises(TaskError):
        _spec(weights=WeightsRef(CIDS[0][:-1] + "b", HEX))  # a non-canonical last character


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                   max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(_json())), value=_json_values)
def test_any_replaced_field_parses_or_is_refused_as_a_task_error(field, value):
    data = _mutated((field,), value)
    try:
        spec = TaskSpec.from_bytes(data)
    except TaskError as exc:
        assert str(exc).startswith("bad task spec: ") and "\n" not in str(exc)
    except DataBrightError as exc:  # pragma: no cover - the assertion names the leak
        pytest.fail(f"{type(exc).__name__} instead of a TaskError: {exc}")
    else:
        assert TaskSpec.from_bytes(spec.to_bytes()) == spec


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_as_a_task_error(data):
    with pytest.raises(TaskError):
        TaskSpec.from_bytes(data)
