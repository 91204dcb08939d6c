"""Featurizers: turn stored items (bytes + media type) into feature rows for the valuation model.

A featurizer is anything with ``fit(items)`` and ``transform(items) -> ndarray`` over a list of
``(bytes, media_type)``; a pretrained embedding drops in by implementing the same two methods.
An item that cannot be read raises :class:`~databright.errors.ValuationError` naming it.

This package never imports torch: a pretrained network's embeddings are computed by the caller
(the market layer uses ``databright.training``) and handed in as a :class:`PrecomputedFeaturizer`,
which looks them up by CID. A featurizer's ``name`` (``pixels``, ``tabular``,
``efficientnet-lite0``, ...) is the embedding an evaluation report states.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from databright import rows
from databright.errors import ValuationError
from databright.valuation._neighbours import sq_dists

__all__ = [
    "NEAR_DUPLICATE_THRESHOLD",
    "Featurizer",
    "ImageFeaturizer",
    "Item",
    "PrecomputedFeaturizer",
    "TabularFeaturizer",
    "embedding_name",
    "featurizer_for",
    "near_duplicates",
]

Item = tuple[bytes, str]  # (bytes, media type)

#: Near-duplicate threshold: root-mean-square difference per feature (features in [0, 1]).
#: 0.02 is about 5 grey levels of 255 on every pixel: re-encodes, tiny crops and resizes fall
#: under it, a different picture does not.
NEAR_DUPLICATE_THRESHOLD = 0.02


@runtime_checkable
class Featurizer(Protocol):
    """Maps items to a fixed-width float matrix, one row per item."""

    def fit(self, items: Sequence[Item]) -> Featurizer: ...

    def transform(self, items: Sequence[Item]) -> NDArray[np.float64]: ...


def _name(i: int, names: Sequence[str] | None) -> str:
    return names[i] if names is not None and i < len(names) else f"item #{i}"


class ImageFeaturizer:
    """Decode with Pillow, convert to grayscale or RGB, resize to ``size × size`` (area
    averaging), scale to [0, 1].

    Args:
        size: side of the square the image is resized to (8 suits digits, 16–32 photos).
        mode: ``"L"`` (grayscale) or ``"RGB"``.
    """

    name = "pixels"

    def __init__(self, size: int = 8, mode: Literal["L", "RGB"] = "L") -> None:
        if size < 1 or mode not in ("L", "RGB"):
            raise ValueError("size must be positive and mode 'L' or 'RGB'")
        self.size, self.mode = int(size), mode

    def fit(self, items: Sequence[Item], names: Sequence[str] | None = None) -> ImageFeaturizer:
        """Nothing to learn; returns self."""
        return self

    def transform(
        self, items: Sequence[Item], names: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """One row of ``size² · channels`` values in [0, 1] per image."""
        width = self.size * self.size * (3 if self.mode == "RGB" else 1)
        out = np.zeros((len(items), width))
        for i, (data, media_type) in enumerate(items):
            if not media_type.startswith("image/"):
                raise ValuationError(f"{_name(i, names)} is {media_type!r}, not an image")
            try:
                with Image.open(io.BytesIO(data)) as img:
                    small = img.convert(self.mode).resize(
                        (self.size, self.size), Image.Resampling.BOX
                    )
                    out[i] = np.asarray(small, dtype=np.float64).reshape(-1) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise ValuationError(f"cannot decode {_name(i, names)} as an image: {exc}") from exc
        return out


class TabularFeaturizer:
    """Numeric columns of JSON-object rows, one-line CSV rows (with a header) or one-row Parquet.

    Learns its columns at ``fit``: numeric columns are kept and standardised (mean 0, sd 1
    on the fit data); string columns with at most ``max_categories`` values are one-hot
    encoded, other non-numeric columns are dropped. Missing or unparsable cells become the
    column's fit mean (0 after standardising).
    """

    name = "tabular"

    def __init__(self, max_categories: int = 20, exclude: Sequence[str] = ("label",)) -> None:
        self.max_categories, self.exclude = int(max_categories), set(exclude)
        self.numeric: list[str] = []
        self.categories: dict[str, list[str]] = {}
        self._mean: NDArray[np.float64] | None = None
        self._sd: NDArray[np.float64] | None = None

    @staticmethod
    def parse(data: bytes, media_type: str, name: str = "item") -> dict[str, Any]:
        """One row as a dict from JSON (an object), CSV (header + one line) or Parquet (one row)."""
        try:
            return rows.parse_row(data, media_type)
        except rows.RowFormatError as exc:
            raise ValuationError(f"cannot read {name} as a table row: {exc}") from exc

    @staticmethod
    def _number(value: Any) -> float | None:
        if isinstance(value, bool) or value is None:
            return None
        try:
            x = float(value)
        except (TypeError, ValueError):
            return None
        return x if np.isfinite(x) else None

    def fit(self, items: Sequence[Item], names: Sequence[str] | None = None) -> TabularFeaturizer:
        """Choose the numeric and one-hot columns from ``items``."""
        rows = [self.parse(d, mt, _name(i, names)) for i, (d, mt) in enumerate(items)]
        keys = sorted({k for r in rows for k in r} - self.exclude)
        self.numeric, self.categories = [], {}
        for key in keys:
            present = [r[key] for r in rows if key in r and r[key] not in (None, "")]
            if present and all(self._number(v) is not None for v in present):
                self.numeric.append(key)
            else:
                values = sorted({str(v) for v in present})
                if 0 < len(values) <= self.max_categories:
                    self.categories[key] = values
        raw = self._raw(rows)
        self._mean = np.nanmean(raw, axis=0) if raw.shape[0] else np.zeros(raw.shape[1])
        self._mean = np.nan_to_num(self._mean)
        filled = np.where(np.isnan(raw), self._mean, raw)
        sd = filled.std(axis=0) if raw.shape[0] else np.ones(raw.shape[1])
        self._sd = np.where(sd > 0, sd, 1.0)
        return self

    def _raw(self, rows: list[dict[str, Any]]) -> NDArray[np.float64]:
        out = np.full((len(rows), len(self.numeric)), np.nan)
        for i, r in enumerate(rows):
            for j, key in enumerate(self.numeric):
                x = self._number(r.get(key))
                if x is not None:
                    out[i, j] = x
        return out

    def transform(
        self, items: Sequence[Item], names: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """Standardised numeric columns followed by one-hot columns."""
        if self._mean is None or self._sd is None:
            raise ValuationError("TabularFeaturizer: call fit() before transform()")
        rows = [self.parse(d, mt, _name(i, names)) for i, (d, mt) in enumerate(items)]
        raw = self._raw(rows)
        num = (np.where(np.isnan(raw), self._mean, raw) - self._mean) / self._sd
        hots = [
            np.array([[float(str(r.get(k)) == v) for v in vals] for r in rows]).reshape(len(rows), -1)
            for k, vals in self.categories.items()
        ]
        return np.concatenate([num, *hots], axis=1) if hots else num


#: ``embed(pairs)`` of a :class:`PrecomputedFeaturizer`: one row per ``(cid, bytes)`` pair.
Embed = Callable[[Sequence[tuple[str, bytes]]], Any]


class PrecomputedFeaturizer:
    """Features computed outside this package (a pretrained network), looked up by CID.

    ``embed`` receives ``(cid, bytes)`` pairs and returns one row per pair (any array-like);
    the caller typically caches rows by CID, so an item is embedded once.

    Two optional steps shape the rows for KNN distances. ``whiten=c`` learns, at ``fit``, the
    first ``c`` principal axes of the fit items' rows (the dataset) and rescales each to unit
    variance: a few high-variance directions of an ImageNet embedding otherwise dominate every
    distance (PCA-whitening, the usual step before nearest-neighbour search over CNN features).
    ``normalize`` then scales every row to unit length, so distances compare directions (cosine
    geometry) and not how bright or busy an image is overall.

    Args:
        embed: computes the rows.
        name: the embedding's name, stated in reports (e.g. ``efficientnet-lite0``).
        identity: what else identifies the rows (e.g. the weight file's sha256), for cache keys.
        whiten: principal axes to keep and whiten (0: none); at most the fit items' rank.
        normalize: scale every row to unit Euclidean length.
    """

    def __init__(self, embed: Embed, name: str, identity: str = "", whiten: int = 0,
                 normalize: bool = True) -> None:
        if whiten < 0:
            raise ValueError("whiten must be ≥ 0")
        self._embed = embed
        self.name, self.identity = str(name), str(identity)
        self.whiten, self.normalize = int(whiten), bool(normalize)
        self._mean: NDArray[np.float64] | None = None
        self._axes: NDArray[np.float64] | None = None  # (c, d), rows scaled by 1 / sd

    def _rows(self, items: Sequence[Item], names: Sequence[str] | None) -> NDArray[np.float64]:
        if names is None or len(names) != len(items):
            raise ValuationError(f"{self.name}: features are looked up by CID; pass names=")
        try:
            out = np.asarray(self._embed(list(zip(names, (d for d, _ in items), strict=True))),
                             dtype=np.float64)
        except ValuationError:
            raise
        except (TypeError, ValueError) as exc:
            raise ValuationError(f"{self.name} returned no feature matrix: {exc}") from exc
        if out.ndim != 2 or out.shape[0] != len(items) or not np.isfinite(out).all():
            raise ValuationError(f"{self.name} returned no finite matrix of one row per item")
        return out

    def fit(self, items: Sequence[Item], names: Sequence[str] | None = None
            ) -> PrecomputedFeaturizer:
        """Learn the whitening axes from ``items`` (nothing to learn without ``whiten``)."""
        self._mean = self._axes = None
        if not self.whiten or not items:
            return self
        rows = self._rows(items, names)
        mean = rows.mean(axis=0)
        _, sv, vt = np.linalg.svd(rows - mean, full_matrices=False)
        sd = sv / np.sqrt(max(len(rows) - 1, 1))
        keep = min(self.whiten, int((sd > 1e-9 * max(float(sd[0]), 1e-300)).sum()))
        if keep:
            self._mean, self._axes = mean, vt[:keep] / sd[:keep, None]
        return self

    def transform(
        self, items: Sequence[Item], names: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """The rows of ``items`` (whitened, then unit length, as configured); ``names`` (their
        CIDs) are required."""
        if not items:
            return np.zeros((0, 0))
        out = self._rows(items, names)
        if self._axes is not None and self._mean is not None:
            out = (out - self._mean) @ self._axes.T
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.where(norms > 0, norms, 1.0)
        return out


def embedding_name(featurizer: object) -> str:
    """The embedding a featurizer computes, as a report states it (its ``name``, else its
    class name)."""
    name = getattr(featurizer, "name", None)
    return name if isinstance(name, str) and name else type(featurizer).__name__


def featurizer_for(media_types: Sequence[str]) -> ImageFeaturizer | TabularFeaturizer:
    """A default featurizer for items of these media types (all images, or all rows)."""
    kinds = {"image" if mt.startswith("image/") else "table" for mt in media_types}
    if kinds <= {"image"}:
        return ImageFeaturizer()
    tabular = ("json", "csv", "parquet")
    if kinds == {"table"} and all(any(t in mt for t in tabular) for mt in media_types):
        return TabularFeaturizer()
    raise ValuationError(f"no default featurizer for media types {sorted(set(media_types))}")


def near_duplicates(
    x_new: NDArray[np.float64],
    x_ref: NDArray[np.float64],
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> NDArray[np.intp]:
    """For each new row, the index of a reference row within ``threshold`` RMS distance, else −1.

    RMS distance is ``sqrt(mean((a − b)²))``, i.e. Euclidean distance over ``sqrt(d)``, so the
    threshold does not depend on the feature width.
    """
    out = np.full(x_new.shape[0], -1, dtype=np.intp)
    if x_new.shape[0] == 0 or x_ref.shape[0] == 0:
        return out
    d = x_new.shape[1]
    step = max(1, (4 * 1024 * 1024) // (8 * x_ref.shape[0]))
    for start in range(0, x_new.shape[0], step):
        block = sq_dists(x_new[start : start + step], x_ref) / max(d, 1)
        nearest = block.argmin(axis=1)
        close = block[np.arange(block.shape[0]), nearest] <= threshold**2
        out[start : start + step] = np.where(close, nearest, -1)
    return out
