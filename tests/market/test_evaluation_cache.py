"""The key a stored evaluation report is found by: every parameter and input is part of it."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databright.errors import UsageError
from databright.market.evaluation import METHODS, EvaluationParams, cache_key, featurizer_name

params = st.builds(
    EvaluationParams,
    method=st.sampled_from(METHODS),
    k=st.integers(1, 50),
    seed=st.integers(0, 2**32),
    budget_s=st.floats(0.01, 1e4),
    alpha=st.floats(0.001, 0.999),
    near_duplicate_threshold=st.floats(0.0, 1.0),
    featurizer=st.sampled_from(["auto", "ImageFeaturizer(mode='L', size=8)",
                                "ImageFeaturizer(mode='L', size=4)"]),
)
cid = st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=4, max_size=12).map(lambda s: "bafk" + s)
inputs = st.fixed_dictionaries({"validation_manifest": cid, "base_manifests": st.lists(cid),
                                "batch_manifest": cid})


@given(params, inputs, params, inputs)
def test_keys_are_equal_exactly_when_parameters_and_inputs_are(p1, i1, p2, i2):
    same = p1 == p2 and i1 == i2
    assert (cache_key(p1, **i1) == cache_key(p2, **i2)) is same


@given(params, inputs)
def test_every_single_change_gives_another_key(p, i):
    key = cache_key(p, **i)
    for field in dataclasses.fields(p):
        value = getattr(p, field.name)
        if field.name == "method":
            other = "tmc" if value != "tmc" else "knn"
        elif isinstance(value, str):
            other = value + "x"
        elif isinstance(value, int):
            other = value + 1
        else:
            other = value / 2 if value else 0.5  # never the same float
        assert cache_key(dataclasses.replace(p, **{field.name: other}), **i) != key, field.name
    assert cache_key(p, **{**i, "base_manifests": [*i["base_manifests"], "bafknew"]}) != key
    assert cache_key(p, **{**i, "batch_manifest": i["batch_manifest"] + "x"}) != key
    assert cache_key(p, **{**i, "validation_manifest": i["validation_manifest"] + "x"}) != key


def test_featurizer_settings_are_named():
    from databright.valuation.features import ImageFeaturizer

    assert featurizer_name(None) == "auto"
    assert featurizer_name(ImageFeaturizer(size=4)) != featurizer_name(ImageFeaturizer(size=8))
    assert featurizer_name(ImageFeaturizer(size=4, mode="RGB")) == (
        "ImageFeaturizer(mode='RGB', size=4)")


@pytest.mark.parametrize("bad", [{"method": "magic"}, {"k": 0}, {"budget_s": 0}, {"alpha": 1.0}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(UsageError):
        EvaluationParams(**bad)
