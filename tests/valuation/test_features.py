"""Featurizers on PNG bytes and table rows; near-duplicates; unreadable items."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from databright.errors import ValuationError
from databright.valuation import (
    Featurizer,
    ImageFeaturizer,
    TabularFeaturizer,
    featurizer_for,
    near_duplicates,
)


def png(pixels: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_image_featurizer_grayscale_and_rgb() -> None:
    img = np.zeros((16, 16), dtype=np.uint8)
    img[:, 8:] = 255
    items = [(png(img), "image/png")]
    f = ImageFeaturizer(size=8)
    assert isinstance(f, Featurizer)
    x = f.fit(items).transform(items)
    assert x.shape == (1, 64) and x.min() == 0.0 and x.max() == 1.0
    assert x.reshape(8, 8)[:, :4].max() == 0.0 and x.reshape(8, 8)[:, 4:].min() == 1.0
    rgb = np.stack([img, np.zeros_like(img), np.zeros_like(img)], axis=-1)
    x3 = ImageFeaturizer(size=4, mode="RGB").transform([(png(rgb, "RGB"), "image/png")])
    assert x3.shape == (1, 48)


def test_unreadable_image_names_the_item() -> None:
    with pytest.raises(ValuationError, match="bafy-broken"):
        ImageFeaturizer().transform([(b"not a png", "image/png")], names=["bafy-broken"])
    with pytest.raises(ValuationError, match="not an image"):
        ImageFeaturizer().transform([(b"{}", "application/json")])


def test_tabular_featurizer_json_and_csv() -> None:
    rows = [
        {"a": 1, "b": 2.5, "color": "red", "note": f"free text {i}", "label": "x"}
        for i in range(3)
    ]
    rows[1].update(a=3, color="blue")
    rows[2].update(a=5, b=None)
    items = [(json.dumps(r).encode(), "application/json") for r in rows]
    f = TabularFeaturizer(max_categories=2).fit(items)
    assert f.numeric == ["a", "b"] and f.categories == {"color": ["blue", "red"]}
    x = f.transform(items)
    assert x.shape == (3, 4)
    assert x[:, 0] == pytest.approx(np.array([-1.0, 0.0, 1.0]) * np.sqrt(1.5))
    assert x[2, 1] == 0.0  # missing -> mean -> 0 after standardising
    csv_items = [(b"a,b,label\n1,2,x\n", "text/csv"), (b"a,b,label\n3,oops,y\n", "text/csv")]
    xc = TabularFeaturizer().fit(csv_items).transform(csv_items)
    assert xc.shape[0] == 2
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"a": [3.0], "b": [1.0], "color": ["red"]}), buf)
    xp = f.transform([(buf.getvalue(), "application/vnd.apache.parquet")])
    assert xp.shape == (1, 4) and xp[0, 0] == 0.0 and xp[0, 3] == 1.0
    with pytest.raises(ValuationError, match="row-7"):
        TabularFeaturizer().fit([(b"[1, 2]", "application/json")], names=["row-7"])
    with pytest.raises(ValuationError, match="fit"):
        TabularFeaturizer().transform(items)


def test_featurizer_for_and_near_duplicates() -> None:
    assert isinstance(featurizer_for(["image/png", "image/jpeg"]), ImageFeaturizer)
    assert isinstance(featurizer_for(["application/json"]), TabularFeaturizer)
    with pytest.raises(ValuationError):
        featurizer_for(["image/png", "text/csv"])
    ref = np.random.default_rng(0).random((5, 64))
    new = np.vstack([ref[3] + 0.01, 1 - ref[0]])
    assert near_duplicates(new, ref).tolist() == [3, -1]
    assert near_duplicates(new, ref[:0]).tolist() == [-1, -1]


def test_precomputed_featurizer_looks_rows_up_by_cid_and_scales_them() -> None:
    from databright.valuation import PrecomputedFeaturizer, embedding_name

    table = {"bafk-a": [3.0, 4.0], "bafk-b": [0.0, 2.0], "bafk-zero": [0.0, 0.0]}
    seen: list[list[str]] = []

    def embed(pairs):
        seen.append([cid for cid, _ in pairs])
        return [table[cid] for cid, _ in pairs]

    f = PrecomputedFeaturizer(embed, name="toy-net", identity="v1")
    assert isinstance(f, Featurizer) and embedding_name(f) == "toy-net"
    items = [(b"a", "image/png"), (b"b", "image/png"), (b"z", "image/png")]
    x = f.fit(items).transform(items, names=["bafk-a", "bafk-b", "bafk-zero"])
    assert seen == [["bafk-a", "bafk-b", "bafk-zero"]]
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 1.0], [0.0, 0.0]])  # unit rows; 0 stays 0
    raw = PrecomputedFeaturizer(embed, name="toy-net", normalize=False)
    np.testing.assert_allclose(raw.transform(items[:1], names=["bafk-a"]), [[3.0, 4.0]])
    with pytest.raises(ValuationError, match="by CID"):
        f.transform(items)  # no names: nothing to look up
    bad = PrecomputedFeaturizer(lambda pairs: [[1.0]], name="short")
    with pytest.raises(ValuationError, match="one row per item"):
        bad.transform(items[:2], names=["bafk-a", "bafk-b"])
    nan = PrecomputedFeaturizer(lambda pairs: [[float("nan")]], name="nan")
    with pytest.raises(ValuationError, match="finite"):
        nan.transform(items[:1], names=["bafk-a"])
    assert embedding_name(ImageFeaturizer()) == "pixels"
    assert embedding_name(TabularFeaturizer()) == "tabular"


def test_precomputed_featurizer_whitens_along_the_fit_items_axes() -> None:
    from databright.valuation import PrecomputedFeaturizer

    rng = np.random.default_rng(0)
    # 3 informative directions, one of them 100× louder, embedded in 8 dimensions
    table = {f"c{i}": row for i, row in enumerate(
        (rng.normal(size=(200, 3)) * [100.0, 1.0, 1.0]) @ rng.normal(size=(3, 8)))}
    names = list(table)
    items = [(b"", "image/png")] * len(names)
    f = PrecomputedFeaturizer(lambda pairs: [table[c] for c, _ in pairs], name="toy",
                              whiten=5, normalize=False).fit(items, names=names)
    x = f.transform(items, names=names)
    assert x.shape == (200, 3)  # the rank caps the axes kept
    np.testing.assert_allclose(np.cov(x, rowvar=False), np.eye(3), atol=1e-9)
    with pytest.raises(ValuationError, match="by CID"):
        f.fit(items)  # whitening embeds the fit items: it needs their CIDs too
