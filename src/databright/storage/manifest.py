"""Manifests: the Parquet table of a proposal's items, stored in the blob store by CID.

Schema (all columns non-null): ``cid`` string, ``label`` string, ``size`` int64,
``media_type`` string, ``name`` string; rows in canonical order (ascending ``cid``, each CID once).
Writer settings are fixed, so the same items always give the same bytes, hence the same manifest
CID (with the same pyarrow version; the Merkle root is the version-free commitment).
A manifest read back is untrusted input: its schema and every row are validated.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from databright.errors import StorageError
from databright.storage.cas import BlobStore
from databright.storage.cid import CID_LENGTH, CID_PATTERN, digests_of
from databright.storage.merkle import MAX_LABEL_BYTES, MerkleTree, leaves_of

__all__ = [
    "MANIFEST_SCHEMA",
    "InvalidManifestError",
    "Item",
    "items_table",
    "iter_manifest",
    "manifest_tree",
    "read_manifest",
    "read_manifest_table",
    "write_manifest",
    "write_manifest_table",
]

MAX_NAME_BYTES = 4096
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("cid", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
    ],
    metadata={b"databright.manifest": b"1"},
)
_COLUMNS = MANIFEST_SCHEMA.names


class InvalidManifestError(StorageError):
    """A blob that should be a manifest is not a valid one."""


@dataclass(frozen=True, slots=True)
class Item:
    """One item of a proposal: its blob's CID, its label, size in bytes, media type, origin name."""

    cid: str
    label: str
    size: int
    media_type: str
    name: str


def items_table(items: Iterable[Item]) -> pa.Table:
    """The canonical manifest table of ``items`` (sorted by CID)."""
    rows = sorted(items, key=lambda it: it.cid)
    cols = {
        "cid": [it.cid for it in rows],
        "label": [it.label for it in rows],
        "size": [it.size for it in rows],
        "media_type": [it.media_type for it in rows],
        "name": [it.name for it in rows],
    }
    return pa.Table.from_pydict(cols, schema=MANIFEST_SCHEMA)


def _canonical(table: pa.Table) -> pa.Table:
    for name in _COLUMNS:
        if table[name].null_count:
            raise InvalidManifestError(f"manifest: column {name} has missing values")
    table = table.select(_COLUMNS).cast(MANIFEST_SCHEMA)
    if table.num_rows > 1:
        table = table.take(pc.sort_indices(table["cid"]))
    _validate(table)
    return table


def manifest_bytes(table: pa.Table) -> bytes:
    """Deterministic Parquet bytes of a canonical manifest table."""
    sink = io.BytesIO()
    pq.write_table(
        table.combine_chunks(),
        sink,
        row_group_size=1 << 20,
        version="2.6",
        data_page_version="1.0",
        compression="zstd",
        compression_level=3,
        use_dictionary=["label", "media_type"],
        write_statistics=False,
    )
    return sink.getvalue()


def write_manifest_table(store: BlobStore, table: pa.Table) -> str:
    """Store a manifest given as a table with the manifest columns (any row order); its CID."""
    return store.put_bytes(manifest_bytes(_canonical(table)))


def write_manifest(store: BlobStore, items: Iterable[Item]) -> str:
    """Store the manifest of ``items`` in canonical order; returns its CID."""
    return write_manifest_table(store, items_table(items))


def read_manifest_table(store: BlobStore, cid: str) -> pa.Table:
    """The validated manifest table stored as ``cid`` (columnar: cheap for a million rows)."""
    data = store.get(cid)
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        schema = pf.schema_arrow
        if schema.names != _COLUMNS:
            raise InvalidManifestError(f"manifest {cid} has columns {schema.names}, expected {_COLUMNS}")
        table = pf.read()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InvalidManifestError(f"manifest {cid} is not a readable Parquet table: {e}") from None
    for field in MANIFEST_SCHEMA:
        if not table.schema.field(field.name).type.equals(field.type):
            raise InvalidManifestError(
                f"manifest {cid}: column {field.name} is {table.schema.field(field.name).type}, "
                f"expected {field.type}"
            )
    for name in _COLUMNS:
        if table[name].null_count:
            raise InvalidManifestError(f"manifest {cid}: column {name} has missing values")
    table = table.cast(MANIFEST_SCHEMA)
    _validate(table, f"manifest {cid}")
    return table


def _validate(table: pa.Table, what: str = "manifest") -> None:
    def bad(mask: pa.ChunkedArray, reason: str) -> None:
        if table.num_rows and pc.any(mask).as_py():
            row = pc.index(mask, True).as_py()
            raise InvalidManifestError(f"{what}: row {row} {reason}")

    if table.num_rows == 0:
        raise InvalidManifestError(f"{what} has no items")
    for name in _COLUMNS:
        if table[name].null_count:
            raise InvalidManifestError(f"{what}: column {name} has missing values")
    cid = table["cid"]
    bad(pc.invert(pc.match_substring_regex(cid, "^" + CID_PATTERN.pattern + "$")), "has a malformed CID")
    label_len = pc.binary_length(table["label"])
    bad(pc.equal(label_len, 0), "has an empty label")
    bad(pc.greater(label_len, MAX_LABEL_BYTES), f"has a label longer than {MAX_LABEL_BYTES} bytes")
    bad(pc.less(table["size"], 0), "has a negative size")
    bad(pc.equal(pc.binary_length(table["media_type"]), 0), "has an empty media type")
    name_len = pc.binary_length(table["name"])
    bad(pc.or_(pc.equal(name_len, 0), pc.greater(name_len, MAX_NAME_BYTES)), "has a bad name")
    if table.num_rows > 1:
        c = cid.combine_chunks()
        # canonical order, each CID once: strictly increasing
        bad(pc.less_equal(c[1:], c[:-1]), "is out of canonical order or repeats a CID")


def read_manifest(store: BlobStore, cid: str) -> list[Item]:
    """The validated items of manifest ``cid``, in canonical order."""
    return list(iter_manifest(store, cid))


def iter_manifest(store: BlobStore, cid: str, batch_size: int = 65536) -> Iterator[Item]:
    """Items of manifest ``cid``, built a batch at a time."""
    table = read_manifest_table(store, cid)
    for batch in table.to_batches(max_chunksize=batch_size):
        cols = [batch.column(i).to_pylist() for i in range(5)]
        yield from (Item(*row) for row in zip(*cols))


def _cid_chars(col: pa.Array) -> np.ndarray:
    """The characters of a validated CID column as an (n, 59) uint8 array, without copies."""
    col = col.cast(pa.string())
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset:col.offset + len(col) + 1]
    data = np.frombuffer(col.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.reshape(len(col), CID_LENGTH)


def manifest_tree(table: pa.Table) -> MerkleTree:
    """Merkle tree of a (validated) manifest table; ``proof(i)`` takes the table's row index.
    Columnar: digests are decoded a batch at a time with numpy, each distinct label encoded once."""
    parts = []
    for batch in table.select(["cid", "label"]).to_batches(max_chunksize=65536):
        parts.append(leaves_of(digests_of(_cid_chars(batch.column(0))), batch.column(1).to_pylist()))
    return MerkleTree.from_leaves(np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(-1, 32))
