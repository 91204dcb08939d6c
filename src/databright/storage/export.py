"""Exports of a dataset's accepted items (any snapshot by entry count) for ML tools.

* :meth:`Snapshot.export_folder` — ImageFolder layout ``OUT/<label>/<cid><ext>``;
* :meth:`Snapshot.export_parquet` — ``OUT/data/train-00000-of-00001.parquet`` with columns
  ``cid, label, name, media_type, size, entry, content`` (plus ``image`` when every item is an
  image), loadable with ``datasets.load_dataset("parquet", data_files=...)``;
* :meth:`Snapshot.export_croissant` — the Parquet export plus ``croissant.json`` (Croissant 1.0
  JSON-LD metadata that ``mlcroissant`` validates and reads records from);
* :class:`StoreDataset` / :class:`StoreIterableDataset` — PyTorch datasets reading the store.

Every file export writes ``databright-export.json``: dataset name, entry count, item count, and
each entry's manifest CID and Merkle root. A snapshot checks every entry's manifest against the
chain's count and root before anything is exported (:class:`IntegrityError` otherwise).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from databright.errors import IntegrityError, UsageError
from databright.storage.cas import BlobStore
from databright.storage.manifest import Item, manifest_tree, read_manifest_table
from databright.storage.verify import Entry, root_bytes

if TYPE_CHECKING:
    from databright.storage.torchdata import StoreDataset, StoreIterableDataset  # noqa: F401

__all__ = [
    "EXPORT_INFO",
    "Snapshot",
    "export_croissant",
    "export_folder",
    "export_parquet",
]

EXPORT_INFO = "databright-export.json"
PARQUET_PATH = "data/train-00000-of-00001.parquet"
_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
        "image/bmp": ".bmp", "image/tiff": ".tif", "application/json": ".json", "text/plain": ".txt",
        "text/csv": ".csv"}
_SAFE = re.compile(r"[^A-Za-z0-9._ -]")


class Snapshot:
    """The accepted items of a dataset's first ``upto_entries`` entries (all when None)."""

    def __init__(self, store: BlobStore, name: str, entries: Sequence[Entry],
                 upto_entries: int | None = None) -> None:
        if upto_entries is not None:
            if not 0 < upto_entries <= len(entries):
                raise UsageError(f"{name} has {len(entries)} entries; upto_entries must be 1..{len(entries)}")
            entries = entries[:upto_entries]
        if not entries:
            raise UsageError(f"{name} has no accepted entries to export")
        self.store, self.name, self.entries = store, name, list(entries)
        self.items: list[tuple[int, Item]] = []
        self.roots: list[bytes] = []
        for index, entry in enumerate(self.entries):
            table = read_manifest_table(store, entry.manifest_cid)
            root = manifest_tree(table).root
            if root != root_bytes(entry.merkle_root) or table.num_rows != int(entry.item_count):
                raise IntegrityError(
                    f"{name} entry {index}: manifest {entry.manifest_cid} does not match the chain "
                    f"(root 0x{root.hex()}, {table.num_rows} items)"
                )
            self.roots.append(root)
            cols = [table.column(i).to_pylist() for i in range(5)]
            self.items += [(index, Item(*row)) for row in zip(*cols)]
        self.classes = sorted({it.label for _, it in self.items})

    def info(self, fmt: str) -> dict[str, Any]:
        """What this export was made from (written as ``databright-export.json``)."""
        return {
            "dataset": self.name,
            "format": fmt,
            "entry_count": len(self.entries),
            "item_count": len(self.items),
            "labels": self.classes,
            "entries": [
                {"index": i, "manifest_cid": e.manifest_cid, "merkle_root": "0x" + r.hex(),
                 "item_count": int(e.item_count)}
                for i, (e, r) in enumerate(zip(self.entries, self.roots))
            ],
        }

    def _prepare(self, out: Path) -> Path:
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            raise UsageError(f"{out} is not empty; export into a new folder")
        out.mkdir(parents=True, exist_ok=True)
        return out

    def _finish(self, out: Path, fmt: str, **extra: Any) -> dict[str, Any]:
        info = {**self.info(fmt), **extra}
        (out / EXPORT_INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        return {**info, "out": str(out)}

    def export_folder(self, out: str | os.PathLike[str]) -> dict[str, Any]:
        """ImageFolder layout ``OUT/<label>/<cid><ext>`` (labels made safe as folder names)."""
        root = self._prepare(Path(out))
        made: set[str] = set()
        for _, it in self.items:
            folder = _safe_label(it.label)
            if folder not in made:
                (root / folder).mkdir(exist_ok=True)
                made.add(folder)
            (root / folder / (it.cid + _ext(it))).write_bytes(self.store.get(it.cid))
        return self._finish(root, "folder", folders={lab: _safe_label(lab) for lab in self.classes})

    def export_parquet(self, out: str | os.PathLike[str]) -> dict[str, Any]:
        """``OUT/data/train-00000-of-00001.parquet`` with the items' bytes; see the module doc."""
        root = self._prepare(Path(out))
        path = root / PARQUET_PATH
        self._write_parquet(path)
        return self._finish(root, "parquet", parquet=PARQUET_PATH)

    def _write_parquet(self, path: Path) -> None:
        images = all(it.media_type.startswith("image/") for _, it in self.items)
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
        meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode(),
                b"databright": json.dumps(self.info("parquet")).encode()}
        schema = pa.schema([pa.field(n, t) for n, t in fields], metadata=meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for start in range(0, len(self.items), 512):
                rows = self.items[start:start + 512]
                blobs = [self.store.get(it.cid) for _, it in rows]
                cols: list[Any] = [
                    [it.cid for _, it in rows], [it.label for _, it in rows],
                    [it.name for _, it in rows], [it.media_type for _, it in rows],
                    [it.size for _, it in rows], [e for e, _ in rows], blobs,
                ]
                if images:
                    cols.append([{"bytes": b, "path": it.cid + _ext(it)} for b, (_, it) in zip(blobs, rows)])
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))

    def export_croissant(self, out: str | os.PathLike[str], *, license: str | None = None) -> dict[str, Any]:
        """The Parquet export plus ``croissant.json`` describing it (Croissant 1.0); ``license``
        (a URL or SPDX id, from the dataset card) is recorded when given."""
        root = self._prepare(Path(out))
        path = root / PARQUET_PATH
        self._write_parquet(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        meta = self._croissant(sha)
        if license:
            meta["license"] = license
        (root / "croissant.json").write_text(json.dumps(meta, indent=1) + "\n")
        return self._finish(root, "croissant", parquet=PARQUET_PATH, croissant="croissant.json")

    def _croissant(self, sha256: str) -> dict[str, Any]:
        roots = ", ".join("0x" + r.hex() for r in self.roots)
        columns = [("cid", "sc:Text", "CIDv1 (raw, sha2-256) of the item's bytes"),
                   ("label", "sc:Text", "label of the item"),
                   ("name", "sc:Text", "original file name or table row"),
                   ("media_type", "sc:Text", "media type of the item's bytes"),
                   ("size", "sc:Integer", "size of the item in bytes"),
                   ("entry", "sc:Integer", "index of the registry entry that added the item"),
                   ("content", "sc:Text", "the item's bytes")]
        return {
            "@context": _CROISSANT_CONTEXT,
            "@type": "sc:Dataset",
            "name": _SAFE.sub("_", self.name) or "dataset",
            "description": (f"DataBright dataset {self.name}: {len(self.items)} items from "
                            f"{len(self.entries)} accepted entries (Merkle roots {roots})."),
            "conformsTo": "http://mlcommons.org/croissant/1.0",
            "url": "https://databright.invalid/datasets/" + _SAFE.sub("_", self.name),
            "version": f"{len(self.entries)}.0.0",
            "datePublished": dt.date.today().isoformat(),
            "citeAs": f"DataBright dataset {self.name}, entries 0-{len(self.entries) - 1}, Merkle roots {roots}",
            "distribution": [{
                "@type": "cr:FileObject", "@id": "parquet-file", "name": "parquet-file",
                "contentUrl": PARQUET_PATH, "encodingFormat": "application/x-parquet",
                "sha256": sha256,
            }],
            "recordSet": [{
                "@type": "cr:RecordSet", "@id": "items", "name": "items",
                "key": {"@id": "items/cid"},
                "field": [{
                    "@type": "cr:Field", "@id": f"items/{col}", "name": col, "description": desc,
                    "dataType": dtype,
                    "source": {"fileObject": {"@id": "parquet-file"}, "extract": {"column": col}},
                } for col, dtype, desc in columns],
            }],
        }


def _safe_label(label: str) -> str:
    if label in (".", "..") or "/" in label or "\\" in label or "\0" in label:
        return "label-" + label.encode().hex()
    return label


def _ext(it: Item) -> str:
    ext = os.path.splitext(it.name)[1].lower()
    if ext and len(ext) <= 8 and ext[1:].isalnum():
        return ext
    return _EXT.get(it.media_type, "")


def export_folder(store: BlobStore, name: str, entries: Sequence[Entry], out: str | os.PathLike[str],
                  *, upto_entries: int | None = None) -> dict[str, Any]:
    """ImageFolder export of ``name``'s first ``upto_entries`` entries (all by default)."""
    return Snapshot(store, name, entries, upto_entries).export_folder(out)


def export_parquet(store: BlobStore, name: str, entries: Sequence[Entry], out: str | os.PathLike[str],
                   *, upto_entries: int | None = None) -> dict[str, Any]:
    """Parquet export (see :meth:`Snapshot.export_parquet`)."""
    return Snapshot(store, name, entries, upto_entries).export_parquet(out)


def export_croissant(store: BlobStore, name: str, entries: Sequence[Entry], out: str | os.PathLike[str],
                     *, upto_entries: int | None = None, license: str | None = None) -> dict[str, Any]:
    """Croissant export (see :meth:`Snapshot.export_croissant`)."""
    return Snapshot(store, name, entries, upto_entries).export_croissant(out, license=license)


_CROISSANT_CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def __getattr__(name: str) -> Any:
    # torch is heavy to import: only load it when a torch dataset is asked for
    if name in ("StoreDataset", "StoreIterableDataset"):
        from databright.storage import torchdata

        return getattr(torchdata, name)
    raise AttributeError(name)
