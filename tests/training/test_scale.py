"""At scale (marker ``slow``; CI runs it): the pretrained head on 500 digits.

Embedding 600 images costs about 40 s on 2 idle cores (2–3 minutes on busy ones).
"""

from __future__ import annotations

import pytest

from databright.training import EmbeddingCache, get_family, pretrained_available
from tests.training.conftest import digit_images

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not pretrained_available(), reason="EfficientNet-Lite0 not installed"),
]


def test_pretrained_head_and_small_cnn_learn_500_digits():
    train, val = digit_images(0, 500), digit_images(1000, 100)
    head = get_family("efficientnet-head").fit(train, val, cache=EmbeddingCache())
    cnn = get_family("small-cnn").fit(train, val, {"epochs": 15})
    # measured: 0.91 (head) and 0.89 (CNN)
    assert head.accuracy >= 0.85, head.history
    assert cnn.accuracy >= 0.85, cnn.history
