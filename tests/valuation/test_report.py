"""The proposal evaluation report on digits rendered as PNG bytes."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from databright.errors import ValuationError
from databright.valuation import LabeledBlob, evaluate_proposal, score_to_bps

LABELS = [str(c) for c in range(10)]


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _blob(pixels: np.ndarray, label: str) -> LabeledBlob:
    data = _png(pixels)
    return LabeledBlob("b" + hashlib.sha256(data).hexdigest()[:20], label, "image/png", data)


@pytest.fixture(scope="module")
def digits_blobs():
    d = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(d.target))
    imgs = (d.images * 255 / 16).round()
    blobs = [_blob(imgs[i], str(d.target[i])) for i in order]
    return blobs, [imgs[i] for i in order]


def _flip(blob: LabeledBlob, rng: np.random.Generator) -> LabeledBlob:
    wrong = str((int(blob.label) + int(rng.integers(1, 10))) % 10)
    return LabeledBlob(blob.cid, wrong, blob.media_type, blob.data)


def test_report_counts_values_and_suspects(digits_blobs) -> None:
    blobs, imgs = digits_blobs
    val, base, fresh = blobs[:300], blobs[300:900], blobs[900:1100]
    rng = np.random.default_rng(1)
    flipped = set(rng.choice(200, 40, replace=False).tolist())
    batch = [_flip(b, rng) if i in flipped else b for i, b in enumerate(fresh)]
    near = np.clip(imgs[905] + 3, 0, 255)  # 3 grey levels brighter: new bytes, same picture
    near_blob = _blob(near, fresh[5].label)
    extra = [
        base[0],  # duplicate of the dataset
        batch[1],  # repeated within the batch
        LabeledBlob("b-cat", "cat", "image/png", base[2].data),  # unknown label
        near_blob,  # near-duplicate of batch item 5 (new CID)
    ]
    report = evaluate_proposal(base, batch + extra, val, LABELS, k=5)
    assert (report.new, report.duplicates, report.unknown_labels) == (201, 2, 1)
    assert report.near_duplicates == 1
    assert report.items[-1]["near_duplicate_of"] == fresh[5].cid
    assert len(report.items) == 204 and report.items[200]["value"] is None
    assert report.items[202]["suspect"] and "b-cat" in report.suspects
    # Flipped labels: caught with high recall and precision.
    flipped_cids = {fresh[i].cid for i in flipped}
    caught = flipped_cids & set(report.suspects)
    assert len(caught) >= 0.9 * len(flipped_cids)
    false_alarms = set(report.suspects) - flipped_cids - {"b-cat"}
    assert len(false_alarms) <= 0.1 * 160
    # Values: flipped items are worth less than the others.
    values = {it["cid"]: it["value"] for it in report.items[:200]}
    assert np.mean([values[c] for c in flipped_cids]) < 0 < np.mean(
        [v for c, v in values.items() if c not in flipped_cids]
    )
    # Accuracy fields are consistent; the JSON document has the agreed keys.
    assert report.gain == pytest.approx(report.accuracy_after - report.accuracy_before)
    assert report.utility_gain == pytest.approx(report.utility_after - report.utility_before)
    doc = json.loads(json.dumps(report.to_dict()))
    for key in ("accuracy_before", "accuracy_after", "gain", "new", "duplicates",
                "near_duplicates", "unknown_labels", "suspects", "items", "score_bps",
                "runtime_s", "method", "params"):
        assert key in doc
    assert set(doc["items"][0]) >= {"cid", "label", "value", "suspect"}
    assert 0 <= report.score_bps <= 20000 and report.score_bps == score_to_bps(report)
    assert "201 new" in report.summary() and "bps" in report.summary()


def test_clean_batch_scores_higher_than_noisy(digits_blobs) -> None:
    blobs, _ = digits_blobs
    val, base = blobs[:300], blobs[300:400]
    clean = blobs[400:600]
    rng = np.random.default_rng(2)
    noisy = [_flip(b, rng) if i % 3 == 0 else b for i, b in enumerate(blobs[600:800])]
    good = evaluate_proposal(base, clean, val, LABELS)
    bad = evaluate_proposal(base, noisy, val, LABELS)
    assert good.gain > 0 and good.utility_gain > bad.utility_gain
    assert good.score_bps > 10000 > bad.score_bps
    # Suspects are calibrated: few of the clean batch are flagged.
    assert len(good.suspects) <= 0.1 * len(clean)


@pytest.mark.parametrize("method", ["data_oob", "loo", "tmc"])
def test_other_methods_run(digits_blobs, method: str) -> None:
    blobs, _ = digits_blobs
    report = evaluate_proposal(blobs[300:400], blobs[400:440], blobs[:100], LABELS,
                               method=method, budget_s=1.0)
    assert report.method == method and len(report.items) == 40
    assert all(isinstance(it["value"], float) for it in report.items)


def test_empty_base_and_errors(digits_blobs) -> None:
    blobs, _ = digits_blobs
    first = evaluate_proposal([], blobs[100:150], blobs[:100], LABELS)
    assert first.accuracy_before == 0.0 and first.accuracy_after > 0.5 and first.new == 50
    with pytest.raises(ValuationError, match="validation"):
        evaluate_proposal(blobs[:5], blobs[5:8], [], LABELS)
    with pytest.raises(ValuationError, match="label set"):
        evaluate_proposal(blobs[:5], blobs[5:8], blobs[8:10], [])
    with pytest.raises(ValuationError, match="no items"):
        evaluate_proposal(blobs[:5], [], blobs[8:10], LABELS)
    broken = LabeledBlob("bafy-broken", "1", "image/png", b"\x89PNG garbage")
    with pytest.raises(ValuationError, match="bafy-broken"):
        evaluate_proposal(blobs[:5], [broken], blobs[8:10], LABELS)
    with pytest.raises(ValuationError, match="data_oob"):
        evaluate_proposal([], blobs[5:6], blobs[8:10], LABELS, method="data_oob")
    with pytest.raises(ValuationError, match="method"):
        evaluate_proposal(blobs[:5], blobs[5:8], blobs[8:10], LABELS, method="magic")  # type: ignore[arg-type]


def test_tabular_proposal() -> None:
    rng = np.random.default_rng(3)

    def row(i: int, label: int) -> LabeledBlob:
        x = rng.normal(size=2) + 3 * label
        data = json.dumps({"x0": x[0], "x1": x[1], "label": str(label)}).encode()
        return LabeledBlob(f"r{i}", str(label), "application/json", data)

    rows = [row(i, i % 2) for i in range(120)]
    report = evaluate_proposal(rows[:60], rows[60:90], rows[90:], ["0", "1"])
    assert report.params["featurizer"] == "TabularFeaturizer"
    assert report.accuracy_after > 0.9


def test_pluggable_featurizer(digits_blobs) -> None:
    class Embedding:  # e.g. a pretrained network; no ``names`` argument
        def fit(self, items):
            return self

        def transform(self, items):
            from databright.valuation import ImageFeaturizer

            return ImageFeaturizer(size=4).transform(items)

    blobs, _ = digits_blobs
    report = evaluate_proposal(blobs[300:400], blobs[400:420], blobs[:100], LABELS,
                               featurizer=Embedding())
    assert report.params["featurizer"] == "Embedding" and report.new == 20


def test_report_names_its_embedding_and_finds_near_duplicates_in_pixels(digits_blobs) -> None:
    from databright.valuation import ImageFeaturizer, PrecomputedFeaturizer

    blobs, imgs = digits_blobs
    by_cid = {b.cid: b for b in blobs}
    pixels = ImageFeaturizer(size=4)

    def embed(pairs):  # a stand-in network: coarse pixels, scaled to unit rows by the featurizer
        return pixels.transform([(d, "image/png") for _, d in pairs])

    net = PrecomputedFeaturizer(embed, name="toy-net")
    near = _blob(np.clip(imgs[5] + 3, 0, 255), blobs[5].label)  # same picture, new bytes
    report = evaluate_proposal(blobs[300:400], [near, blobs[400]], blobs[:100], LABELS,
                               featurizer=net)
    assert report.embedding == "toy-net" and report.to_dict()["embedding"] == "toy-net"
    assert report.params["duplicate_featurizer"] == "ImageFeaturizer"
    assert "toy-net features" in report.summary()
    assert near.cid not in by_cid
    # blobs[5] is not in the base: add it, and the near copy is found by its pixels
    with_it = evaluate_proposal([*blobs[300:400], blobs[5]], [near], blobs[:100], LABELS,
                                featurizer=net)
    assert with_it.items[0]["near_duplicate_of"] == blobs[5].cid
    assert evaluate_proposal(blobs[300:400], blobs[400:410], blobs[:100],
                             LABELS).embedding == "pixels"
