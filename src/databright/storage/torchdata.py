"""PyTorch datasets that read a dataset snapshot straight from the blob store.

``StoreDataset[i]`` is ``(sample, target)``: ``sample`` is the item's verified bytes (or a PIL
image with ``decode="image"``, or whatever ``transform`` makes of either), ``target`` the index of
its label in ``classes`` (sorted labels of both splits, so the indices agree between them), as
torchvision's ImageFolder does. ``split="train"`` (the default) reads the accepted entries,
``split="validation"`` the held-out items of ``validation_manifest`` (the dataset card's).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch.utils.data

from databright.storage.cas import BlobStore, open_store

if TYPE_CHECKING:
    from databright.storage.verify import Entry

__all__ = ["StoreDataset", "StoreIterableDataset"]


class _Base:
    def __init__(self, store: BlobStore | str, entries: Sequence[Entry], *, name: str = "dataset",
                 split: Literal["train", "validation"] = "train",
                 validation_manifest: str | None = None, validation_count: int | None = None,
                 labels: Sequence[str] | None = None, upto_entries: int | None = None,
                 decode: Literal["bytes", "image"] = "bytes",
                 transform: Callable[[Any], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        from databright.storage.export import Snapshot

        snap = Snapshot(open_store(store), name, entries, upto_entries,
                        validation_manifest=validation_manifest, validation_count=validation_count,
                        labels=labels)
        (self.split,) = snap.split_names(split)
        rows = snap.splits[self.split]
        self.store = snap.store
        self.info = snap.info("torch", [self.split])
        # the same class indices in both splits: every label of the dataset, sorted
        self.classes: list[str] = snap.classes
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.cids = [it.cid for _, it in rows]
        self.targets = [self.class_to_idx[it.label] for _, it in rows]
        self.decode, self.transform, self.target_transform = decode, transform, target_transform

    def _load(self, i: int) -> tuple[Any, Any]:
        data: Any = self.store.get(self.cids[i])
        if self.decode == "image":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                data = im.convert("RGB")
        target: Any = self.targets[i]
        if self.transform is not None:
            data = self.transform(data)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return data, target

    def __len__(self) -> int:
        return len(self.cids)


class StoreDataset(_Base, torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Map-style dataset over a snapshot's items (reads each blob on access, verified)."""

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        return self._load(i)


class StoreIterableDataset(_Base, torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Streams a snapshot's items in order; DataLoader workers each take every n-th item."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        info = torch.utils.data.get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        for i in range(start, len(self.cids), step):
            yield self._load(i)
