"""Manifests: deterministic Parquet bytes, round trip, and validation of untrusted manifests."""

from __future__ import annotations

import io
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from databright.errors import CorruptBlobError, MissingBlobError
from databright.storage.cas import open_store
from databright.storage.cid import cid_of_bytes
from databright.storage.manifest import (
    InvalidManifestError,
    Item,
    items_table,
    iter_manifest,
    manifest_tree,
    read_manifest,
    read_manifest_table,
    write_manifest,
    write_manifest_table,
)
from databright.storage.merkle import merkle_root


def make_items(n: int, seed: int = 0) -> list[Item]:
    rng = random.Random(seed)
    return [
        Item(cid_of_bytes(rng.randbytes(16)), rng.choice(["cat", "dog", "émeu"]), rng.randint(1, 10**6),
             "image/png", f"{i}.png")
        for i in range(n)
    ]


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "store")


def test_same_items_any_order_same_cid(store) -> None:
    items = make_items(300)
    cid = write_manifest(store, items)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    assert write_manifest(store, shuffled) == cid
    assert write_manifest(open_store(store.root.parent / "other"), items) == cid  # bytes, not state
    assert write_manifest(store, make_items(300, seed=1)) != cid


def test_roundtrip_in_canonical_order(store) -> None:
    items = make_items(200)
    cid = write_manifest(store, items)
    back = read_manifest(store, cid)
    assert back == sorted(items, key=lambda it: it.cid)
    assert list(iter_manifest(store, cid, batch_size=7)) == back
    table = read_manifest_table(store, cid)
    assert table.num_rows == 200
    assert manifest_tree(table).root == merkle_root(items)
    assert write_manifest_table(store, table.take(list(reversed(range(200))))) == cid


def _put_table(store, table: pa.Table) -> str:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return store.put_bytes(sink.getvalue())


def _bad(store, **changes) -> str:
    cols = items_table(make_items(5)).to_pydict()
    cols.update(changes)
    return _put_table(store, pa.table(cols))


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"cid": ["not-a-cid"] * 5}, "malformed CID"),
        ({"label": ["", "a", "b", "c", "d"]}, "empty label"),
        ({"label": ["x" * 65] * 5}, "longer than 64"),
        ({"size": [-1, 1, 1, 1, 1]}, "negative size"),
        ({"media_type": [""] * 5}, "empty media type"),
        ({"name": [""] * 5}, "bad name"),
        ({"label": [None, "a", "b", "c", "d"]}, "missing values"),
    ],
)
def test_invalid_rows_refused(store, change, reason) -> None:
    with pytest.raises(InvalidManifestError, match=reason):
        read_manifest(store, _bad(store, **change))


def test_unsorted_or_repeated_cids_refused(store) -> None:
    cols = items_table(make_items(5)).to_pydict()
    cols = {k: list(reversed(v)) for k, v in cols.items()}
    with pytest.raises(InvalidManifestError, match="canonical order"):
        read_manifest(store, _put_table(store, pa.table(cols)))
    cols = items_table(make_items(5)).to_pydict()
    cols = {k: [v[0]] + v[:-1] for k, v in cols.items()}
    with pytest.raises(InvalidManifestError, match="repeats a CID"):
        read_manifest(store, _put_table(store, pa.table(cols)))


def test_wrong_schema_refused(store) -> None:
    cols = items_table(make_items(3)).to_pydict()
    extra = _put_table(store, pa.table({**cols, "evil": [1, 2, 3]}))
    with pytest.raises(InvalidManifestError, match="columns"):
        read_manifest(store, extra)
    typed = _put_table(store, pa.table({**cols, "size": [str(s) for s in cols["size"]]}))
    with pytest.raises(InvalidManifestError, match="column size"):
        read_manifest(store, typed)
    empty = _put_table(store, items_table([]))
    with pytest.raises(InvalidManifestError, match="no items"):
        read_manifest(store, empty)


def test_not_parquet_refused(store) -> None:
    with pytest.raises(InvalidManifestError, match="not a readable Parquet"):
        read_manifest(store, store.put_bytes(b"PAR1 but not really"))


def test_missing_and_corrupt_manifest(store) -> None:
    with pytest.raises(MissingBlobError):
        read_manifest(store, cid_of_bytes(b"absent"))
    cid = write_manifest(store, make_items(3))
    p = store.path_of(cid)
    p.write_bytes(p.read_bytes()[:-3] + b"xyz")
    with pytest.raises(CorruptBlobError):
        read_manifest(store, cid)
