"""verify_entries names every problem; exports load back in datasets, mlcroissant and torch."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from databright.errors import IntegrityError, UsageError
from databright.storage.cas import open_store
from databright.storage.cid import cid_of_bytes
from databright.storage.export import (
    EXPORT_INFO,
    Snapshot,
    export_croissant,
    export_folder,
    export_parquet,
)
from databright.storage.ingest import ingest
from databright.storage.manifest import write_manifest
from databright.storage.verify import verify_entries
from tests.storage.test_ingest import png, write


@dataclass(frozen=True)
class Entry:  # what the chain registry returns (get_entry), reduced to what storage reads
    manifest_cid: str
    merkle_root: bytes
    item_count: int


@pytest.fixture
def dataset(tmp_path):
    """A store with two accepted entries: 6 PNGs in cat/dog, then 4 more."""
    store = open_store(tmp_path / "store")
    first = ingest(write(tmp_path / "e0", {f"{lab}/{i}.png": png(i + 10 * j)
                                           for j, lab in enumerate(["cat", "dog"]) for i in range(3)}), store)
    second = ingest(write(tmp_path / "e1", {f"{lab}/{i}.png": png(50 + i + 10 * j)
                                            for j, lab in enumerate(["cat", "dog"]) for i in range(2)}),
                    store, existing_cids={it.cid for it in first.items})
    entries = [Entry(r.manifest_cid, r.merkle_root, r.item_count) for r in (first, second)]
    return store, entries, first, second


def test_verify_ok(dataset) -> None:
    store, entries, *_ = dataset
    report = verify_entries(store, entries)
    assert report.ok and report.items == 10 and report.blobs_checked == 10
    assert report.to_dict()["problems"] == []


def test_verify_names_missing_and_corrupt_blobs(dataset) -> None:
    store, entries, first, second = dataset
    gone, bad = first.items[0].cid, second.items[1].cid
    store.path_of(gone).unlink()
    store.path_of(bad).write_bytes(b"tampered")
    report = verify_entries(store, entries)
    assert not report.ok
    assert {(p.entry, p.kind, p.cid) for p in report.problems} == {(0, "missing-blob", gone), (1, "corrupt-blob", bad)}
    assert any(gone in line for line in report.to_dict()["problems"])


def test_verify_names_chain_mismatches(dataset, tmp_path) -> None:
    store, entries, first, _ = dataset
    wrong = [replace(entries[0], item_count=7), replace(entries[1], merkle_root=b"\x01" * 32),
             Entry(cid_of_bytes(b"no manifest"), b"\x00" * 32, 1),
             Entry(store.put_bytes(b"not parquet"), b"\x00" * 32, 1),
             Entry(write_manifest(store, first.items[:2]), "0x" + first.merkle_root.hex(), 2)]
    kinds = [(p.entry, p.kind) for p in verify_entries(store, wrong).problems]
    assert kinds == [(0, "count-mismatch"), (1, "root-mismatch"), (2, "missing-manifest"),
                     (3, "invalid-manifest"), (4, "root-mismatch")]
    p = store.path_of(entries[0].manifest_cid)
    p.write_bytes(p.read_bytes() + b"!")
    assert [pr.kind for pr in verify_entries(store, entries[:1]).problems] == ["corrupt-manifest"]


def _info(out: Path) -> dict:
    return json.loads((out / EXPORT_INFO).read_text())


def test_export_folder_and_snapshots(dataset, tmp_path) -> None:
    store, entries, _first, second = dataset
    out = tmp_path / "folder"
    res = export_folder(store, "pets", entries, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(files) == 10 and {f.split("/")[0] for f in files} == {"cat", "dog"}
    some = second.items[0]
    assert (out / some.label / f"{some.cid}.png").read_bytes() == store.get(some.cid)
    info = _info(out)
    assert info["dataset"] == "pets" and info["entry_count"] == 2 and info["item_count"] == 10 == res["item_count"]
    assert [e["merkle_root"] for e in info["entries"]] == ["0x" + e.merkle_root.hex() for e in entries]
    snap = tmp_path / "snap"
    export_folder(store, "pets", entries, snap, upto_entries=1)
    assert _info(snap)["entry_count"] == 1 and len(list(snap.rglob("*.png"))) == 6
    with pytest.raises(UsageError, match="not empty"):
        export_folder(store, "pets", entries, out)
    with pytest.raises(UsageError, match="upto_entries"):
        Snapshot(store, "pets", entries, upto_entries=3)


def test_export_refuses_a_snapshot_that_disagrees_with_the_chain(dataset, tmp_path) -> None:
    store, entries, *_ = dataset
    with pytest.raises(IntegrityError, match="does not match the chain"):
        export_folder(store, "pets", [replace(entries[0], merkle_root=b"\x02" * 32)], tmp_path / "x")


def test_export_parquet_loads_with_datasets(dataset, tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    store, entries, _first, _ = dataset
    out = tmp_path / "pq"
    res = export_parquet(store, "pets", entries, out)
    ds = datasets.load_dataset("parquet", data_files=str(out / res["parquet"]), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 10 and {"cid", "label", "content", "image"} <= set(ds.column_names)
    row = ds[0]
    assert cid_of_bytes(row["content"]) == row["cid"]
    assert row["image"].size == (6, 6)  # decoded as an Image feature
    assert sorted(ds["entry"]) == [0] * 6 + [1] * 4
    assert _info(out)["format"] == "parquet"


def test_export_croissant_validates_and_reads(dataset, tmp_path) -> None:
    mlc = pytest.importorskip("mlcroissant")
    store, entries, *_ = dataset
    out = tmp_path / "cr"
    export_croissant(store, "pets", entries, out, license="CC-BY-4.0")
    meta = json.loads((out / "croissant.json").read_text())
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    ds = mlc.Dataset(jsonld=str(out / "croissant.json"))  # raises on validation errors
    records = list(ds.records(record_set="items"))
    assert len(records) == 10
    for r in records:
        cid = r["items/cid"].decode()
        assert cid_of_bytes(r["items/content"]) == cid
        assert store.get(cid) == r["items/content"]
    assert {r["items/label"].decode() for r in records} == {"cat", "dog"}
    assert _info(out)["entry_count"] == 2


def test_torch_datasets_read_from_the_store(dataset) -> None:
    torch = pytest.importorskip("torch")
    from databright.storage.torchdata import StoreDataset, StoreIterableDataset

    store, entries, *_ = dataset
    ds = StoreDataset(store, entries, name="pets", decode="image",
                      transform=lambda im: torch.tensor(list(im.tobytes()), dtype=torch.float32).reshape(6, 6, 3))
    assert len(ds) == 10 and ds.classes == ["cat", "dog"]
    x, y = ds[0]
    assert x.shape == (6, 6, 3) and y in (0, 1)
    batch_x, batch_y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch_x.shape == (4, 6, 6, 3) and batch_y.shape == (4,)
    raw = StoreDataset(store, entries, upto_entries=1)
    assert len(raw) == 6 and isinstance(raw[0][0], bytes) and raw.info["entry_count"] == 1
    it = StoreIterableDataset(store, entries, transform=len)
    got = list(torch.utils.data.DataLoader(it, batch_size=None, num_workers=2))
    assert sorted(int(n) for n, _ in got) == sorted(len(store.get(c)) for c in it.cids)
