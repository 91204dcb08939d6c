"""Croissant 1.0 JSON-LD metadata for a Parquet export (``croissant.json``).

The splits follow the Croissant 1.0 specification ("ML-specific features: splits"): a record set
``splits`` whose ``dataType`` is ``cr:Split`` enumerates the exported splits (``train`` as
``cr:TrainingSplit``, ``validation`` as ``cr:ValidationSplit``), and the ``items`` record set has a
``split`` field that takes its value from each Parquet file's name and references ``splits/name``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from databright.storage.export import Snapshot

__all__ = ["SPLIT_TYPES", "croissant_metadata"]

SPLIT_TYPES = {"train": "cr:TrainingSplit", "validation": "cr:ValidationSplit"}
_FILES = "parquet-files"
_COLUMNS = [
    ("cid", "sc:Text", "CIDv1 (raw, sha2-256) of the item's bytes"),
    ("label", ["sc:Text", "cr:Label"], "label of the item"),
    ("name", "sc:Text", "original file name or table row"),
    ("media_type", "sc:Text", "media type of the item's bytes"),
    ("size", "sc:Integer", "size of the item in bytes"),
    ("entry", "sc:Integer", "index of the registry entry that added the item (none in validation)"),
    ("content", "sc:Text", "the item's bytes"),
]


def croissant_metadata(snap: Snapshot, splits: Sequence[str], *, license: str | None = None) -> dict[str, Any]:
    """The ``croissant.json`` of ``snap``'s export of ``splits`` (files ``data/<split>-*.parquet``)."""
    from databright.storage.export import safe_name

    roots = ", ".join("0x" + r.hex() for r in snap.roots)
    counts = ", ".join(f"{s} {len(snap.splits[s])}" for s in splits)
    name = safe_name(snap.name)
    meta: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": name or "dataset",
        "description": (f"DataBright dataset {snap.name}: items of {len(snap.entries)} accepted "
                        f"entries (Merkle roots {roots}) and its held-out validation split; "
                        f"exported splits: {counts}."),
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "url": "https://databright.invalid/datasets/" + name,
        "version": f"{len(snap.entries)}.0.0",
        "datePublished": dt.date.today().isoformat(),
        "citeAs": (f"DataBright dataset {snap.name}, entries 0-{len(snap.entries) - 1}, "
                   f"Merkle roots {roots}"),
        "distribution": [{
            "@type": "cr:FileSet", "@id": _FILES, "name": _FILES,
            "encodingFormat": "application/x-parquet", "includes": "data/*.parquet",
        }],
        "recordSet": [_splits_record_set(splits), _items_record_set(splits)],
    }
    if license:
        meta["license"] = license
    return meta


def _splits_record_set(splits: Sequence[str]) -> dict[str, Any]:
    return {
        "@type": "cr:RecordSet", "@id": "splits", "name": "splits",
        "description": "The dataset's splits: the accepted entries (train), the held-out items "
                       "the evaluator scores proposals on (validation).",
        "dataType": "cr:Split",
        "key": {"@id": "splits/name"},
        "field": [
            {"@type": "cr:Field", "@id": "splits/name", "name": "name", "dataType": "sc:Text"},
            {"@type": "cr:Field", "@id": "splits/url", "name": "url", "dataType": "sc:URL"},
        ],
        "data": [{"splits/name": s, "splits/url": SPLIT_TYPES[s]} for s in splits],
    }


def _items_record_set(splits: Sequence[str]) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [{
        "@type": "cr:Field", "@id": f"items/{col}", "name": col, "description": desc,
        "dataType": dtype,
        "source": {"fileSet": {"@id": _FILES}, "extract": {"column": col}},
    } for col, dtype, desc in _COLUMNS]
    fields.append({
        "@type": "cr:Field", "@id": "items/split", "name": "split",
        "description": "the split the item belongs to (from its Parquet file's name)",
        "dataType": "sc:Text",
        "references": {"field": {"@id": "splits/name"}},
        "source": {
            "fileSet": {"@id": _FILES}, "extract": {"fileProperty": "filename"},
            # the optional group: mlcroissant applies the transform again to the joined value, and
            # a split filter turns this regex into the glob ``data/<split>-*.parquet``
            "transform": {"regex": "^(" + "|".join(splits) + r")(?:-.+\.parquet)?$"},
        },
    })
    return {"@type": "cr:RecordSet", "@id": "items", "name": "items",
            "key": {"@id": "items/cid"}, "field": fields}


CONTEXT = {
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
