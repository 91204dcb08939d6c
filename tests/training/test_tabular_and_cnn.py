"""The tabular families and the small CNN learn digits; predictions and fine-tunes behave."""

from __future__ import annotations

import pytest

from databright.errors import UsageError
from databright.training import (
    LogRegConfig,
    MlpConfig,
    SmallCnnConfig,
    TrainingError,
    get_family,
    train_dataset,
)
from tests.training.conftest import digit_images, digit_rows


@pytest.fixture(scope="module")
def small_images():
    return digit_images(0, 300), digit_images(1000, 120)


@pytest.mark.parametrize(("family", "cfg", "threshold"), [
    ("logreg", LogRegConfig(epochs=40), 0.90),
    ("mlp", MlpConfig(epochs=30), 0.90),
])
def test_tabular_families_learn_digit_rows(rows, family, cfg, threshold):
    train, val = rows
    result = get_family(family).fit(train, val, cfg)
    assert result.accuracy >= threshold, result.history
    assert result.accuracy_bps == result.evaluation.correct * 10_000 // len(val)
    assert result.checkpoint.metric_bps == result.accuracy_bps
    assert result.checkpoint.labels == tuple(str(d) for d in range(10))
    assert result.checkpoint.extra["columns"] == [f"p{j:02d}" for j in range(64)]
    assert result.epochs == cfg.epochs and len(result.history) == cfg.epochs
    assert result.checkpoint.snapshot == len(train)
    # predict/evaluate on the stored checkpoint reproduce the training-time figure
    again = get_family(family).evaluate(result.checkpoint, val)
    assert again == result.evaluation
    predicted = get_family(family).predict(result.checkpoint, val[:20])
    assert sum(p == r.label for p, r in zip(predicted, val[:20])) >= 15


def test_small_cnn_learns_digit_images(small_images):
    train, val = small_images
    result = get_family("small-cnn").fit(train, val, SmallCnnConfig(epochs=15))
    assert result.accuracy >= 0.85, result.history
    assert set(result.checkpoint.tensors) == {
        "net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias", "net.7.weight", "net.7.bias"}
    assert get_family("small-cnn").evaluate(result.checkpoint, val) == result.evaluation


def test_small_cnn_rgb_and_other_size(small_images):
    train, val = small_images
    cfg = SmallCnnConfig(epochs=2, size=16, mode="RGB", width=4)
    ckpt = get_family("small-cnn").fit(train[:60], val[:20], cfg).checkpoint
    assert tuple(ckpt.tensors["net.0.weight"].shape) == (4, 3, 3, 3)
    assert tuple(ckpt.tensors["net.7.weight"].shape) == (10, 8 * 4 * 4)


def test_fine_tune_changes_the_checkpoint_and_keeps_family_and_labels(rows):
    train, val = rows
    mlp = get_family("mlp")
    base = mlp.fit(train[:300], val, MlpConfig(epochs=10)).checkpoint
    tuned = mlp.fit(train[300:], val, MlpConfig(epochs=5, seed=1), init=base)
    t = tuned.checkpoint
    assert t.family == base.family == "mlp" and t.labels == base.labels
    assert t.extra["columns"] == base.extra["columns"]
    assert t.to_bytes() != base.to_bytes()
    assert any(not bool((t.tensors[k] == base.tensors[k]).all()) for k in base.tensors
               if k.startswith("net."))
    # the standardisation learnt on the first rows is kept, not refit on the new ones
    assert bool((t.tensors["prep.mean"] == base.tensors["prep.mean"]).all())
    # starting from the checkpoint is better than five epochs from scratch on the same rows
    scratch = mlp.fit(train[300:], val, MlpConfig(epochs=5, seed=1))
    assert tuned.accuracy >= scratch.accuracy


def test_fine_tune_refuses_another_architecture_or_unknown_labels(rows):
    train, val = rows
    mlp = get_family("mlp")
    base = mlp.fit(train[:200], val[:50], MlpConfig(epochs=2, hidden=16)).checkpoint
    with pytest.raises(UsageError, match="architecture"):
        mlp.fit(train, val, MlpConfig(hidden=32), init=base)
    odd = [r.__class__(r.cid, "eleven", r.media_type, r.load) for r in train[:5]]
    with pytest.raises(TrainingError, match="eleven"):
        mlp.fit(odd + train[200:220], val[:50], init=base)
    with pytest.raises(Exception, match="logreg"):
        get_family("logreg").fit(train, val, init=base)


def test_train_dataset_stores_the_checkpoint_and_reports_progress(rows, tmp_path):
    from databright.storage.cas import LocalBlobStore
    from databright.training import load_checkpoint

    store = LocalBlobStore(tmp_path / "store")
    train, val = rows
    seen: list[tuple[str, int, int]] = []
    result = train_dataset(train[:200], val[:60], "logreg", {"epochs": 3}, store=store,
                           snapshot=250, progress=lambda *a: seen.append(a))
    assert seen == [("epoch", i, 3) for i in (1, 2, 3)]
    assert result.cid is not None and result.sha256 is not None
    loaded = load_checkpoint(store, result.cid, result.sha256)
    assert loaded.snapshot == 250 and loaded.metric_bps == result.accuracy_bps
    assert loaded.to_bytes() == result.checkpoint.to_bytes()
    assert result.to_dict()["checkpoint"] == {"cid": result.cid, "sha256": result.sha256}


def test_bad_input_is_refused_with_a_reason(rows):
    train, val = rows
    with pytest.raises(UsageError, match="unknown model family"):
        train_dataset(train, val, "resnet-900")
    with pytest.raises(UsageError, match="unknown LogRegConfig field"):
        train_dataset(train, val, "logreg", {"epochz": 3})
    with pytest.raises(UsageError, match="epochs"):
        LogRegConfig(epochs=0)
    with pytest.raises(TrainingError, match="two labels"):
        get_family("logreg").fit([r for r in train if r.label == "3"], val)
    with pytest.raises(TrainingError, match="both training and validation"):
        get_family("logreg").fit(train[:50], val[:20] + train[:1])
    with pytest.raises(TrainingError, match="twice"):
        get_family("logreg").fit(train[:50] + train[:1], val)
    broken = [train[0].__class__("bafyx", "1", "application/json", lambda: b"{not json")]
    with pytest.raises(TrainingError, match="table row"):
        get_family("logreg").fit(train[:50] + broken, val)
    not_png = [train[0].__class__("bafyy", "1", "image/png", lambda: b"\x89PNG broken")]
    with pytest.raises(TrainingError, match="decode"):
        get_family("small-cnn").fit(digit_images(0, 20) + not_png, digit_images(20, 5))


def test_csv_rows_train_like_json_rows():
    import json

    from databright.storage.cid import cid_of_bytes
    from databright.training import Record

    def as_csv(r):
        row = json.loads(r.load())
        keys = sorted(row)
        data = (",".join(keys) + "\n" + ",".join(str(row[k]) for k in keys) + "\n").encode()
        return Record(cid_of_bytes(data), r.label, "text/csv", lambda: data)

    train, val = [as_csv(r) for r in digit_rows(0, 300)], [as_csv(r) for r in digit_rows(1200, 100)]
    assert get_family("logreg").fit(train, val, {"epochs": 20}).accuracy >= 0.9


def test_fine_tune_gain_is_positive_for_a_clean_batch_and_negative_for_random_labels(rows):
    import numpy as np

    from databright.training import Record, fine_tune_gain

    train, val = rows
    best = get_family("logreg").fit(train[:60], val, LogRegConfig(epochs=10)).checkpoint
    clean = train[60:360]
    rng = np.random.default_rng(5)
    noisy = [Record(r.cid, str(rng.integers(10)), r.media_type, r.load) for r in clean]
    good = fine_tune_gain(best, clean, val, {"epochs": 10})
    bad = fine_tune_gain(best, noisy, val, {"epochs": 10})
    assert good.before == bad.before and good.before.accuracy_bps == best.metric_bps
    assert good.gain_bps > 0 > bad.gain_bps, (good.to_dict(), bad.to_dict())
    assert good.after.checkpoint.snapshot == best.snapshot + len(clean)
    assert good.after.checkpoint.config["epochs"] == 10
    assert good.after.checkpoint.config["lr"] == best.config["lr"]


def test_records_from_store_items_and_a_corrupt_blob_is_an_integrity_error(tmp_path):
    from databright.errors import CorruptBlobError
    from databright.storage.cas import LocalBlobStore
    from databright.storage.manifest import Item
    from databright.training import records_from

    store = LocalBlobStore(tmp_path / "store")
    source = digit_rows(0, 120)
    items = [Item(store.put_bytes(r.load()), r.label, len(r.load()), r.media_type, f"row{i}")
             for i, r in enumerate(source)]
    records = records_from(items, store.get)
    assert [r.cid for r in records] == [r.cid for r in source]
    result = get_family("logreg").fit(records[:90], records[90:], {"epochs": 5})
    assert result.accuracy >= 0.7
    store.path_of(items[3].cid).write_bytes(b'{"p00": 1}')  # damaged on disk
    with pytest.raises(CorruptBlobError):
        get_family("logreg").fit(records[:90], records[90:], {"epochs": 1})
