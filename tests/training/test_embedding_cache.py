"""The in-memory embedding cache is bounded (least recently used entries go first)."""

from __future__ import annotations

import numpy as np

from databright.training import EmbeddingCache


def test_memory_cache_keeps_the_most_recently_used():
    cache = EmbeddingCache(memory=2)
    vec = {c: np.full(1280, i, dtype=np.float32) for i, c in enumerate("abc")}
    cache.put("a", vec["a"])
    cache.put("b", vec["b"])
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", vec["c"])
    assert cache.get("b") is None
    assert np.array_equal(cache.get("a"), vec["a"]) and np.array_equal(cache.get("c"), vec["c"])


def test_the_home_cache_folder_is_under_the_home(tmp_path):
    from databright.home import Home
    from databright.training import home_cache_dir

    assert home_cache_dir(Home(tmp_path)) == tmp_path.resolve() / "cache" / "embeddings"
