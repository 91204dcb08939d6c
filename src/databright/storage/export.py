"""Exports of a dataset's splits (any snapshot by entry count) for ML tools.

A dataset has two splits: ``train``, the items of its accepted registry entries (the seed and every
accepted batch), and ``validation``, the held-out items named by the dataset card's
``validation_manifest`` (kept aside at creation, never trained on). Each export writes both unless
one is asked for:

* :meth:`Snapshot.export_folder` — ImageFolder per split, ``OUT/<split>/<label>/<cid><ext>``;
* :meth:`Snapshot.export_parquet` — ``OUT/data/<split>-0000i-of-0000N.parquet`` shards with columns
  ``cid, label, name, media_type, size, entry, content`` (plus ``image`` when every item is an
  image), so ``datasets.load_dataset(OUT)`` returns a ``DatasetDict`` with both splits;
* :meth:`Snapshot.export_croissant` — the Parquet export plus ``croissant.json`` (Croissant 1.0
  JSON-LD with a ``cr:Split`` record set; ``mlcroissant`` validates it and reads each split);
* :class:`StoreDataset` / :class:`StoreIterableDataset` — PyTorch datasets reading the store.

Every file export writes ``databright-export.json``: dataset name, format, entry count, item
count, labels, each entry's manifest CID and Merkle root, and per split its item count and files.
A snapshot checks every entry's manifest against the chain's count and root before anything is
exported (:class:`IntegrityError` otherwise). Each blob is read once, verified against its CID as it
is read, and written from those verified bytes; an export that meets a missing or corrupted blob
removes what it wrote and raises :class:`IntegrityError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from databright.errors import IntegrityError, StorageError, UsageError
from databright.storage.cas import BlobStore
from databright.storage.manifest import Item, read_manifest_table
from databright.storage.verify import Entry, checked_manifest, root_bytes

if TYPE_CHECKING:
    from databright.storage.torchdata import StoreDataset, StoreIterableDataset  # noqa: F401

__all__ = [
    "EXPORT_INFO",
    "SPLITS",
    "Snapshot",
    "export_croissant",
    "export_folder",
    "export_parquet",
]

EXPORT_INFO = "databright-export.json"
SPLITS = ("train", "validation")
SHARD_BYTES = 256 * 2**20  # a new Parquet shard past this much item content
_BATCH = 512
_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
        "image/bmp": ".bmp", "image/tiff": ".tif", "application/json": ".json", "text/plain": ".txt",
        "text/csv": ".csv"}
_SAFE = re.compile(r"[^A-Za-z0-9._ -]")

# (entry index or None for the validation split, item)
Row = tuple[int | None, Item]


class Snapshot:
    """The ``train`` split of a dataset's first ``upto_entries`` entries (all when None) and its
    ``validation`` split (``validation_manifest``, the card's; None when the dataset has none).

    ``validation_count`` (the card's ``validation_items``) is checked against the manifest when
    given; ``labels`` (the card's label list) fixes the class order with any labels the items add.
    """

    def __init__(self, store: BlobStore, name: str, entries: Sequence[Entry],
                 upto_entries: int | None = None, *, validation_manifest: str | None = None,
                 validation_count: int | None = None, labels: Sequence[str] | None = None) -> None:
        if upto_entries is not None:
            if not 0 < upto_entries <= len(entries):
                raise UsageError(f"{name} has {len(entries)} entries; upto_entries must be 1..{len(entries)}")
            entries = entries[:upto_entries]
        if not entries:
            raise UsageError(f"{name} has no accepted entries to export")
        self.store, self.name, self.entries = store, name, list(entries)
        self.roots = [root_bytes(e.merkle_root) for e in self.entries]
        train: list[Row] = []
        for index, entry in enumerate(self.entries):
            train += [(index, it) for it in _items(checked_manifest(store, index, entry, dataset=name))]
        self.validation_manifest = validation_manifest
        validation: list[Row] | None = None
        if validation_manifest is not None:
            try:
                table = read_manifest_table(store, validation_manifest)
            except StorageError as e:
                raise IntegrityError(f"{name}: validation manifest: {e}") from None
            if validation_count is not None and table.num_rows != int(validation_count):
                raise IntegrityError(
                    f"{name}: validation manifest {validation_manifest} holds {table.num_rows} "
                    f"items, the dataset card says {validation_count}")
            validation = [(None, it) for it in _items(table)]
        self.splits: dict[str, list[Row]] = {"train": train}
        if validation is not None:
            self.splits["validation"] = validation
        self.items = train
        seen = {it.label for rows in self.splits.values() for _, it in rows}
        self.classes = sorted(seen | set(labels or ()))

    def split_names(self, split: str | None = None) -> list[str]:
        """The splits an export writes: ``split`` alone, or every split the dataset has."""
        if split is None:
            return list(self.splits)
        if split not in SPLITS:
            raise UsageError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if split not in self.splits:
            raise UsageError(f"{self.name} has no {split} split")
        return [split]

    def info(self, fmt: str, splits: Sequence[str] | None = None) -> dict[str, Any]:
        """What this export was made from (written as ``databright-export.json``)."""
        names = list(splits) if splits is not None else self.split_names()
        per_split: dict[str, dict[str, Any]] = {}
        for s in names:
            per_split[s] = {"item_count": len(self.splits[s])}
            if s == "validation":
                per_split[s]["manifest_cid"] = self.validation_manifest
        return {
            "dataset": self.name,
            "format": fmt,
            "entry_count": len(self.entries),
            "item_count": sum(len(self.splits[s]) for s in names),
            "labels": self.classes,
            "entries": [
                {"index": i, "manifest_cid": e.manifest_cid, "merkle_root": "0x" + r.hex(),
                 "item_count": int(e.item_count)}
                for i, (e, r) in enumerate(zip(self.entries, self.roots))
            ],
            "splits": per_split,
        }

    # -- exports --------------------------------------------------------------------------------

    def export_folder(self, out: str | os.PathLike[str], *, split: str | None = None) -> dict[str, Any]:
        """ImageFolder per split, ``OUT/<split>/<label>/<cid><ext>`` (labels made safe as folder
        names)."""
        names = self.split_names(split)

        def write(root: Path) -> dict[str, Any]:
            files: dict[str, dict[str, Any]] = {}
            for s in names:
                made: set[Path] = set()
                for it, data in self._blobs(self.splits[s]):
                    folder = root / s / _safe_label(it.label)
                    if folder not in made:
                        folder.mkdir(parents=True, exist_ok=True)
                        made.add(folder)
                    (folder / (it.cid + _ext(it))).write_bytes(data)
                files[s] = {"folder": s}
            return {"folders": {lab: _safe_label(lab) for lab in self.classes}, "files": files}

        return self._export(Path(out), "folder", names, write)

    def export_parquet(self, out: str | os.PathLike[str], *, split: str | None = None,
                       shard_bytes: int = SHARD_BYTES) -> dict[str, Any]:
        """``OUT/data/<split>-0000i-of-0000N.parquet`` with the items' bytes; see the module doc."""
        names = self.split_names(split)
        return self._export(Path(out), "parquet", names,
                            lambda root: {"files": self._write_parquet(root, names, shard_bytes)})

    def export_croissant(self, out: str | os.PathLike[str], *, split: str | None = None,
                         license: str | None = None, shard_bytes: int = SHARD_BYTES) -> dict[str, Any]:
        """The Parquet export plus ``croissant.json`` describing it (Croissant 1.0, splits as a
        ``cr:Split`` record set); ``license`` (a URL or SPDX id, from the card) is recorded."""
        from databright.storage.croissant import croissant_metadata

        names = self.split_names(split)

        def write(root: Path) -> dict[str, Any]:
            files = self._write_parquet(root, names, shard_bytes)
            meta = croissant_metadata(self, names, license=license)
            (root / "croissant.json").write_text(json.dumps(meta, indent=1) + "\n")
            return {"files": files, "croissant": "croissant.json"}

        return self._export(Path(out), "croissant", names, write)

    # -- shared pieces --------------------------------------------------------------------------

    def _export(self, out: Path, fmt: str, names: list[str],
                write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        existed = out.exists()
        if existed and any(out.iterdir()):
            raise UsageError(f"{out} is not empty; export into a new folder")
        missing = [it.cid for s in names for _, it in self.splits[s] if not self.store.has(it.cid)]
        if missing:
            raise IntegrityError(f"refusing to export {self.name}: {len(missing)} blobs are missing "
                                 f"from the store (first: {missing[0]})")
        out.mkdir(parents=True, exist_ok=True)
        try:
            extra = write(out)
        except StorageError as e:  # a blob vanished or is corrupted: leave nothing half-written
            _remove(out, existed)
            raise IntegrityError(f"refusing to export {self.name}: {e}") from None
        except BaseException:
            _remove(out, existed)
            raise
        files = extra.pop("files")
        info = self.info(fmt, names)
        for s in names:
            info["splits"][s].update(files[s])
        info.update(extra)
        (out / EXPORT_INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        return {**info, "out": str(out)}

    def _blobs(self, rows: Sequence[Row]) -> Iterator[tuple[Item, bytes]]:
        for _, it in rows:
            yield it, self.store.get(it.cid)  # verified against its CID as it is read: once

    def _write_parquet(self, root: Path, names: list[str], shard_bytes: int) -> dict[str, Any]:
        images = all(it.media_type.startswith("image/") for s in names for _, it in self.splits[s])
        schema = _parquet_schema(images, {"dataset": self.name, "entry_count": len(self.entries)})
        (root / "data").mkdir(parents=True, exist_ok=True)
        files: dict[str, Any] = {}
        for s in names:
            shards = self._write_shards(root / "data", s, schema, images, shard_bytes)
            paths = []
            for i, (tmp, rows) in enumerate(shards):
                rel = f"data/{s}-{i:05d}-of-{len(shards):05d}.parquet"
                tmp.rename(root / rel)
                paths.append({"path": rel, "rows": rows, "sha256": _sha256(root / rel)})
            files[s] = {"parquet": paths}
        return files

    def _write_shards(self, folder: Path, split: str, schema: pa.Schema, images: bool,
                      shard_bytes: int) -> list[tuple[Path, int]]:
        """Write ``split`` as shards of about ``shard_bytes`` of item content (at least one item
        each; an empty split gives one empty shard); returns (temporary path, rows) per shard."""
        shards: list[tuple[Path, int]] = []
        writer: pq.ParquetWriter | None = None
        pending: list[tuple[int | None, Item, bytes]] = []
        size = 0

        def flush() -> None:
            nonlocal writer
            if writer is None:
                tmp = folder / f".{split}-{len(shards):05d}.partial"
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                shards.append((tmp, 0))
            writer.write_table(_rows_table(pending, schema, images))
            shards[-1] = (shards[-1][0], shards[-1][1] + len(pending))
            pending.clear()

        try:
            for entry, it in self.splits[split]:
                pending.append((entry, it, self.store.get(it.cid)))  # verified as read: once
                size += len(pending[-1][2])
                if size >= shard_bytes:
                    flush()
                    if writer is not None:
                        writer.close()
                    writer, size = None, 0
                elif len(pending) == _BATCH:
                    flush()
            if pending or not shards:
                flush()
        finally:
            if writer is not None:
                writer.close()
        return shards


def _rows_table(rows: Sequence[tuple[int | None, Item, bytes]], schema: pa.Schema,
                images: bool) -> pa.Table:
    cols: list[Any] = [
        [it.cid for _, it, _ in rows], [it.label for _, it, _ in rows],
        [it.name for _, it, _ in rows], [it.media_type for _, it, _ in rows],
        [it.size for _, it, _ in rows], [e for e, _, _ in rows], [b for _, _, b in rows],
    ]
    if images:
        cols.append([{"bytes": b, "path": it.cid + _ext(it)} for _, it, b in rows])
    return pa.Table.from_arrays(cols, schema=schema)


def _items(table: pa.Table) -> list[Item]:
    cols = [table.column(i).to_pylist() for i in range(5)]
    return [Item(*row) for row in zip(*cols)]


def _parquet_schema(images: bool, meta: dict[str, Any]) -> pa.Schema:
    fields = [("cid", pa.string()), ("label", pa.string()), ("name", pa.string()),
              ("media_type", pa.string()), ("size", pa.int64()), ("entry", pa.int64()),
              ("content", pa.binary())]
    features: dict[str, Any] = {
        n: {"dtype": "int64" if t == pa.int64() else ("binary" if t == pa.binary() else "string"),
            "_type": "Value"} for n, t in fields
    }
    if images:
        fields.append(("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
        features["image"] = {"_type": "Image"}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode(),
                b"databright": json.dumps(meta).encode()}
    return pa.schema([pa.field(n, t) for n, t in fields], metadata=metadata)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _remove(out: Path, existed: bool) -> None:
    if existed:
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        shutil.rmtree(out, ignore_errors=True)


def _safe_label(label: str) -> str:
    if label in (".", "..") or "/" in label or "\\" in label or "\0" in label:
        return "label-" + label.encode().hex()
    return label


def _ext(it: Item) -> str:
    ext = os.path.splitext(it.name)[1].lower()
    if ext and len(ext) <= 8 and ext[1:].isalnum():
        return ext
    return _EXT.get(it.media_type, "")


def safe_name(name: str) -> str:
    """``name`` with characters outside ``[A-Za-z0-9._ -]`` replaced (Croissant names, URLs)."""
    return _SAFE.sub("_", name)


def export_folder(store: BlobStore, name: str, entries: Sequence[Entry], out: str | os.PathLike[str],
                  *, upto_entries: int | None = None, split: str | None = None,
                  validation_manifest: str | None = None, validation_count: int | None = None,
                  labels: Sequence[str] | None = None) -> dict[str, Any]:
    """ImageFolder export of ``name``'s first ``upto_entries`` entries (all by default) and its
    validation split (see :class:`Snapshot`); ``split`` exports one split only."""
    snap = Snapshot(store, name, entries, upto_entries, validation_manifest=validation_manifest,
                    validation_count=validation_count, labels=labels)
    return snap.export_folder(out, split=split)


def export_parquet(store: BlobStore, name: str, entries: Sequence[Entry], out: str | os.PathLike[str],
                   *, upto_entries: int | None = None, split: str | None = None,
                   validation_manifest: str | None = None, validation_count: int | None = None,
                   labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Parquet export (see :meth:`Snapshot.export_parquet`)."""
    snap = Snapshot(store, name, entries, upto_entries, validation_manifest=validation_manifest,
                    validation_count=validation_count, labels=labels)
    return snap.export_parquet(out, split=split)


def export_croissant(store: BlobStore, name: str, entries: Sequence[Entry], out: str | os.PathLike[str],
                     *, upto_entries: int | None = None, split: str | None = None,
                     license: str | None = None, validation_manifest: str | None = None,
                     validation_count: int | None = None,
                     labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Croissant export (see :meth:`Snapshot.export_croissant`)."""
    snap = Snapshot(store, name, entries, upto_entries, validation_manifest=validation_manifest,
                    validation_count=validation_count, labels=labels)
    return snap.export_croissant(out, split=split, license=license)


def __getattr__(name: str) -> Any:
    # torch is heavy to import: only load it when a torch dataset is asked for
    if name in ("StoreDataset", "StoreIterableDataset"):
        from databright.storage import torchdata

        return getattr(torchdata, name)
    raise AttributeError(name)
