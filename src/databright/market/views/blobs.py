"""Dataset cards and proposal manifests as pages read them: parsed once per CID and cached.

A blob never changes under its CID (every read is verified against it), so a parsed card or
manifest stays valid for the life of the process. Failures (missing or corrupt blobs) are not
cached: the blob may be restored later.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from databright.errors import StorageError
from databright.storage.cas import BlobStore

T = TypeVar("T")

#: parsed blobs kept per process (cards are tiny; a manifest of 100k items is ~20 MB)
MAX_CARDS = 4096
MAX_MANIFESTS = 64


@dataclass(frozen=True)
class Card:
    """What a dataset card says: its ``description`` and ``labels`` (``ok`` False when the card
    blob could not be read or is not a JSON object: the page says so)."""

    description: str
    labels: tuple[str, ...]
    validation_items: int | None
    media_types: tuple[str, ...]
    ok: bool


@dataclass(frozen=True, slots=True)
class ManifestItem:
    """One item of a manifest (untrusted text: label and name are shown escaped)."""

    cid: str
    label: str
    name: str
    media_type: str
    size: int


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str], make: Callable[[], T]) -> T:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]  # type: ignore[no-any-return]
        value = make()  # outside the lock: a slow read must not stall other pages
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


_cards = _Lru(MAX_CARDS)
_manifests = _Lru(MAX_MANIFESTS)
_labels = _Lru(MAX_MANIFESTS)


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _parse_card(data: bytes) -> Card:
    try:
        card = json.loads(data)
    except ValueError:
        card = None
    if not isinstance(card, dict):
        return Card("", (), None, (), False)
    labels = card.get("labels")
    media = card.get("media_types")
    val = card.get("validation_items")
    return Card(
        description=_text(card.get("description"), 10_000),
        labels=tuple(str(x) for x in labels) if isinstance(labels, list) else (),
        validation_items=val if isinstance(val, int) and not isinstance(val, bool) else None,
        media_types=tuple(str(x) for x in media) if isinstance(media, list) else (),
        ok=True,
    )


def card_of(store: BlobStore, card_cid: str) -> Card:
    """The dataset card stored as ``card_cid`` (an empty, ``ok=False`` card if unreadable)."""
    try:
        return _cards.get((store.url, card_cid), lambda: _parse_card(store.get(card_cid)))
    except StorageError:
        return Card("", (), None, (), False)


def manifest_items(store: BlobStore, manifest_cid: str) -> tuple[ManifestItem, ...]:
    """The validated items of a manifest, in canonical (CID) order.

    Raises:
        StorageError: the manifest is missing, corrupt or invalid (not cached).
    """
    def read() -> tuple[ManifestItem, ...]:
        from databright.storage.manifest import read_manifest_table

        table = read_manifest_table(store, manifest_cid)
        cols = [table.column(n).to_pylist() for n in ("cid", "label", "name", "media_type",
                                                       "size")]
        return tuple(ManifestItem(*row) for row in zip(*cols, strict=True))

    return _manifests.get((store.url, manifest_cid), read)


def manifest_labels(store: BlobStore, manifest_cid: str) -> dict[str, int]:
    """Items per label of a manifest, sorted by label (cached beside the items).

    Raises:
        StorageError: as :func:`manifest_items`.
    """
    def count() -> dict[str, int]:
        labels: dict[str, int] = {}
        for it in manifest_items(store, manifest_cid):
            labels[it.label] = labels.get(it.label, 0) + 1
        return dict(sorted(labels.items()))

    return dict(_labels.get((store.url, manifest_cid), count))
