"""verify_entries names every problem; exports load back in datasets, mlcroissant and torch."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from databright.errors import IntegrityError, UsageError
from databright.storage.cas import open_store
from databright.storage.cid import cid_of_bytes
from databright.storage.export import (
    EXPORT_INFO,
    Snapshot,
    export_folder,
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
    """A store with two accepted entries (6 PNGs in cat/dog, then 4 more) and a validation split
    of 4 held-out PNGs (2 cat, 2 dog), as a dataset card names it."""
    store = open_store(tmp_path / "store")
    first = ingest(write(tmp_path / "e0", {f"{lab}/{i}.png": png(i + 10 * j)
                                           for j, lab in enumerate(["cat", "dog"]) for i in range(3)}), store)
    second = ingest(write(tmp_path / "e1", {f"{lab}/{i}.png": png(50 + i + 10 * j)
                                            for j, lab in enumerate(["cat", "dog"]) for i in range(2)}),
                    store, existing_cids={it.cid for it in first.items})
    entries = [Entry(r.manifest_cid, r.merkle_root, r.item_count) for r in (first, second)]
    return store, entries, first, second


@pytest.fixture
def validation(dataset, tmp_path):
    """The held-out split: its manifest CID and items."""
    store = dataset[0]
    held = ingest(write(tmp_path / "held-out", {f"{lab}/v{i}.png": png(200 + i + 10 * j)
                                           for j, lab in enumerate(["cat", "dog"]) for i in range(2)}), store)
    return held.manifest_cid, held.items


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


def _snapshot(dataset, validation, **kw) -> Snapshot:
    store, entries, *_ = dataset
    return Snapshot(store, "pets", entries, validation_manifest=validation[0], validation_count=4,
                    labels=["cat", "dog"], **kw)


def test_export_folder_has_a_folder_per_split_and_label(dataset, validation, tmp_path) -> None:
    store, entries, _first, second = dataset
    out = tmp_path / "folder"
    res = _snapshot(dataset, validation).export_folder(out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    per_folder = Counter(f.rsplit("/", 1)[0] for f in files)
    assert per_folder == {"train/cat": 5, "train/dog": 5, "validation/cat": 2, "validation/dog": 2}
    some = second.items[0]
    assert (out / "train" / some.label / f"{some.cid}.png").read_bytes() == store.get(some.cid)
    held = validation[1][3]
    assert (out / "validation" / held.label / f"{held.cid}.png").read_bytes() == store.get(held.cid)
    info = _info(out)
    assert info == {k: v for k, v in res.items() if k != "out"}
    assert info["dataset"] == "pets" and info["format"] == "folder" and info["entry_count"] == 2
    assert info["item_count"] == 14 == res["item_count"]
    assert {s: v["item_count"] for s, v in info["splits"].items()} == {"train": 10, "validation": 4}
    assert info["splits"]["validation"]["manifest_cid"] == validation[0]
    assert [e["merkle_root"] for e in info["entries"]] == ["0x" + e.merkle_root.hex() for e in entries]
    assert info["labels"] == ["cat", "dog"]
    import datasets  # Hugging Face's imagefolder reads the same layout: split folders, label folders

    dd = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert {s: dd[s].num_rows for s in dd} == {"train": 10, "validation": 4}
    assert dd["validation"].features["label"].names == ["cat", "dog"]
    assert sorted(dd["validation"]["label"]) == [0, 0, 1, 1]


def test_export_one_split_and_snapshots(dataset, validation, tmp_path) -> None:
    store, entries, *_ = dataset
    only_val = tmp_path / "only-validation"
    _snapshot(dataset, validation).export_folder(only_val, split="validation")
    assert sorted(p.name for p in only_val.iterdir()) == [EXPORT_INFO, "validation"]
    assert len(list(only_val.rglob("*.png"))) == 4
    assert list(_info(only_val)["splits"]) == ["validation"] and _info(only_val)["item_count"] == 4
    snap = tmp_path / "snap"
    export_folder(store, "pets", entries, snap, upto_entries=1, split="train")
    assert _info(snap)["entry_count"] == 1 and _info(snap)["item_count"] == 6
    assert len(list((snap / "train").rglob("*.png"))) == 6 and not (snap / "validation").exists()
    with pytest.raises(UsageError, match="not empty"):
        export_folder(store, "pets", entries, snap)
    with pytest.raises(UsageError, match="upto_entries"):
        Snapshot(store, "pets", entries, upto_entries=3)
    with pytest.raises(UsageError, match="has no validation split"):
        export_folder(store, "pets", entries, tmp_path / "none", split="validation")
    with pytest.raises(UsageError, match="unknown split 'test'"):
        _snapshot(dataset, validation).export_folder(tmp_path / "none", split="test")
    assert not (tmp_path / "none").exists()


def test_export_refuses_a_snapshot_that_disagrees_with_the_chain(dataset, validation, tmp_path) -> None:
    store, entries, *_ = dataset
    with pytest.raises(IntegrityError, match="entry 0: manifest .* has Merkle root"):
        export_folder(store, "pets", [replace(entries[0], merkle_root=b"\x02" * 32)], tmp_path / "x")
    gone = cid_of_bytes(b"no such manifest")
    with pytest.raises(IntegrityError, match=f"pets entry 1: manifest {gone} is missing"):
        Snapshot(store, "pets", [entries[0], Entry(gone, b"\x00" * 32, 1)])  # never skipped
    with pytest.raises(IntegrityError, match="holds 4 items, the dataset card says 5"):
        Snapshot(store, "pets", entries, validation_manifest=validation[0], validation_count=5)
    with pytest.raises(IntegrityError, match="validation manifest"):
        Snapshot(store, "pets", entries, validation_manifest=cid_of_bytes(b"nothing"))
    assert not (tmp_path / "x").exists()


def test_export_reads_each_blob_once_and_refuses_a_corrupt_one(dataset, validation, tmp_path,
                                                                monkeypatch) -> None:
    store, _entries, _first, second = dataset
    snap = _snapshot(dataset, validation)
    opened: Counter[str] = Counter()
    real_open = type(store).open

    def counting_open(self, cid):
        opened[cid] += 1
        return real_open(self, cid)

    monkeypatch.setattr(type(store), "open", counting_open)
    snap.export_parquet(tmp_path / "pq")
    item_cids = {it.cid for rows in snap.splits.values() for _, it in rows}
    assert len(item_cids) == 14 and {c: opened[c] for c in item_cids} == dict.fromkeys(item_cids, 1)
    monkeypatch.undo()
    bad = second.items[1].cid
    store.path_of(bad).write_bytes(b"tampered")
    out = tmp_path / "bad"
    with pytest.raises(IntegrityError, match=f"refusing to export pets: blob {bad} is corrupted"):
        _snapshot(dataset, validation).export_parquet(out)
    assert not out.exists()  # nothing half-written is left behind
    store.path_of(bad).unlink()
    with pytest.raises(IntegrityError, match=f"1 blobs are missing from the store \\(first: {bad}\\)"):
        _snapshot(dataset, validation).export_folder(out)
    assert not out.exists()


def test_export_parquet_loads_both_splits_with_datasets(dataset, validation, tmp_path) -> None:
    import datasets

    _store, _entries, first, _ = dataset
    out = tmp_path / "pq"
    res = _snapshot(dataset, validation).export_parquet(out, shard_bytes=3 * len(png(0)))
    train_files = sorted(p.name for p in (out / "data").glob("train-*.parquet"))
    assert train_files == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]  # 3+3+3+1 items
    assert sorted(p.name for p in (out / "data").glob("validation-*.parquet")) == [
        "validation-00000-of-00002.parquet", "validation-00001-of-00002.parquet"]
    dd = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(dd) == {"train", "validation"}
    assert dd["train"].num_rows == 10 and dd["validation"].num_rows == 4
    assert {"cid", "label", "content", "image"} <= set(dd["train"].column_names)
    train, val = dd["train"], dd["validation"]
    cat0 = next(it for it in first.items if it.name == "cat/0.png")
    row = train[train["cid"].index(cat0.cid)]
    assert row["label"] == "cat" and row["content"] == png(0) and row["entry"] == 0
    assert row["image"].size == (6, 6)  # decoded as an Image feature
    assert sorted(train["entry"]) == [0] * 6 + [1] * 4
    assert sorted(zip(val["cid"], val["label"])) == sorted((it.cid, it.label) for it in validation[1])
    assert val["entry"] == [None] * 4  # held-out items come from no registry entry
    assert all(cid_of_bytes(c) == cid for c, cid in zip(val["content"], val["cid"]))
    info = _info(out)
    assert info["format"] == "parquet" and info == {k: v for k, v in res.items() if k != "out"}
    shards = info["splits"]["train"]["parquet"]
    assert [s["rows"] for s in shards] == [3, 3, 3, 1]
    assert all(hashlib.sha256((out / s["path"]).read_bytes()).hexdigest() == s["sha256"] for s in shards)


def test_export_parquet_of_one_split(dataset, validation, tmp_path) -> None:
    import datasets

    out = tmp_path / "train-only"
    _snapshot(dataset, validation).export_parquet(out, split="train")
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    dd = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert list(dd) == ["train"] and dd["train"].num_rows == 10


def test_export_croissant_validates_and_reads_each_split(dataset, validation, tmp_path) -> None:
    import mlcroissant as mlc

    store, *_ = dataset
    out = tmp_path / "cr"
    _snapshot(dataset, validation).export_croissant(out, license="CC-BY-4.0", shard_bytes=3 * len(png(0)))
    meta = json.loads((out / "croissant.json").read_text())
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0" and meta["license"] == "CC-BY-4.0"
    splits = next(rs for rs in meta["recordSet"] if rs["@id"] == "splits")
    assert splits["dataType"] == "cr:Split"
    assert splits["data"] == [{"splits/name": "train", "splits/url": "cr:TrainingSplit"},
                              {"splits/name": "validation", "splits/url": "cr:ValidationSplit"}]
    ds = mlc.Dataset(jsonld=str(out / "croissant.json"))  # raises on validation errors
    every = list(ds.records(record_set="items"))
    assert Counter(r["items/split"].decode() for r in every) == {"train": 10, "validation": 4}
    for name, count in (("train", 10), ("validation", 4)):
        records = list(ds.records(record_set="items", filters={"items/split": name}))
        assert len(records) == count and {r["items/split"].decode() for r in records} == {name}
        for r in records:
            cid = r["items/cid"].decode()
            assert cid_of_bytes(r["items/content"]) == cid and store.get(cid) == r["items/content"]
        assert {r["items/label"].decode() for r in records} == {"cat", "dog"}
    held = {r["items/cid"].decode() for r in every if r["items/split"] == b"validation"}
    assert held == {it.cid for it in validation[1]}
    info = _info(out)
    assert info["format"] == "croissant" and info["croissant"] == "croissant.json"
    assert {s: v["item_count"] for s, v in info["splits"].items()} == {"train": 10, "validation": 4}


def test_torch_datasets_read_each_split_from_the_store(dataset, validation) -> None:
    import torch

    from databright.storage.torchdata import StoreDataset, StoreIterableDataset

    store, entries, *_ = dataset
    ds = StoreDataset(store, entries, name="pets", decode="image",
                      transform=lambda im: torch.tensor(list(im.tobytes()), dtype=torch.float32).reshape(6, 6, 3))
    assert len(ds) == 10 and ds.classes == ["cat", "dog"] and ds.split == "train"
    x, y = ds[0]
    assert x.shape == (6, 6, 3) and ds.classes[y] == read_label(store, entries, ds.cids[0])
    batch_x, batch_y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch_x.shape == (4, 6, 6, 3) and batch_y.shape == (4,)
    val = StoreDataset(store, entries, split="validation", validation_manifest=validation[0])
    assert len(val) == 4 and sorted(val.cids) == sorted(it.cid for it in validation[1])
    assert val.info["splits"] == {"validation": {"item_count": 4, "manifest_cid": validation[0]}}
    by_cid = {it.cid: it for it in validation[1]}
    for i in range(len(val)):
        data, target = val[i]
        assert data == store.get(val.cids[i]) and val.classes[target] == by_cid[val.cids[i]].label
    with pytest.raises(UsageError, match="has no validation split"):
        StoreDataset(store, entries, split="validation")
    raw = StoreDataset(store, entries, upto_entries=1)
    assert len(raw) == 6 and raw[0][0] == store.get(raw.cids[0]) and raw.info["entry_count"] == 1
    it = StoreIterableDataset(store, entries, transform=len)
    got = list(torch.utils.data.DataLoader(it, batch_size=None, num_workers=2))
    assert sorted(int(n) for n, _ in got) == sorted(len(store.get(c)) for c in it.cids)


def read_label(store, entries, cid: str) -> str:
    from databright.storage.manifest import read_manifest

    return next(it.label for e in entries for it in read_manifest(store, e.manifest_cid) if it.cid == cid)
