"""Training records: what the market layer hands to training, and their canonical order.

A record is plain data (CID, label, media type) and a loader for its bytes, so training needs
neither the store nor the manifest types. The order every family trains in is fixed by
construction: ascending CID (content order, independent of names and folders), then one seeded
permutation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from databright.errors import DataBrightError
from databright.training.errors import TrainingError

__all__ = ["Record", "canonical_order", "label_list", "load_all", "records_from"]


@dataclass(frozen=True, slots=True)
class Record:
    """One item to train on or to predict: its blob's CID, label ("" when unknown), media type,
    and a loader returning its bytes (e.g. ``lambda: store.get(cid)``, which verifies them)."""

    cid: str
    label: str
    media_type: str
    load: Callable[[], bytes]


class _ItemLike(Protocol):
    @property
    def cid(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def media_type(self) -> str: ...


def records_from(items: Iterable[_ItemLike], get: Callable[[str], bytes]) -> list[Record]:
    """Records for manifest items (anything with ``cid``, ``label``, ``media_type``), their bytes
    read through ``get`` (a blob store's ``get``)."""

    def loader(cid: str) -> Callable[[], bytes]:
        return lambda: get(cid)

    return [Record(i.cid, i.label, i.media_type, loader(i.cid)) for i in items]


def canonical_order(records: Sequence[Record], seed: int) -> list[Record]:
    """Records sorted by CID, then shuffled by a permutation that depends only on ``seed``.

    Raises:
        TrainingError: the same CID appears twice (an item would weigh double).
    """
    ordered = sorted(records, key=lambda r: r.cid)
    for a, b in itertools.pairwise(ordered):
        if a.cid == b.cid:
            raise TrainingError(f"item {a.cid} appears twice in the training records")
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0x7261696E])).permutation(
        len(ordered)
    )
    return [ordered[int(i)] for i in perm]


def label_list(records: Iterable[Record]) -> tuple[str, ...]:
    """The sorted distinct labels of ``records``; at least two are needed to train a classifier."""
    labels = tuple(sorted({r.label for r in records}))
    if len(labels) < 2:
        raise TrainingError(f"training needs at least two labels, found {list(labels)}")
    return labels


def load_all(records: Sequence[Record], what: str = "item") -> list[bytes]:
    """Every record's bytes, in order. A DataBrightError of the loader (a corrupt or missing
    blob) propagates unchanged; any other failure becomes a TrainingError naming the record."""
    out: list[bytes] = []
    for r in records:
        try:
            out.append(r.load())
        except DataBrightError:
            raise
        except Exception as exc:  # a loader is caller code: any failure is about this item
            raise TrainingError(f"cannot read {what} {r.cid}: {exc}") from exc
    return out


