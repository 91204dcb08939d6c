"""Ingestion of the three input shapes, every refusal, duplicates and bad input."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from databright.errors import IngestError
from databright.storage.cas import open_store
from databright.storage.cid import cid_digest, cid_of_bytes
from databright.storage.ingest import ingest
from databright.storage.manifest import read_manifest
from databright.storage.merkle import MerkleTree, leaf_hash, merkle_root, verify_proof


def png(seed: int, size: int = 6) -> bytes:
    im = Image.new("RGB", (size, size), (seed % 256, (seed * 7) % 256, (seed * 13) % 256))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "store")


def refusals(result) -> dict[str, str]:
    return {r.name: r.reason for r in result.refused}


def test_image_folder(tmp_path, store) -> None:
    src = write(tmp_path / "in", {f"{lab}/{i}.png": png(i + 100 * j) for j, lab in enumerate(["cat", "dog"])
                                  for i in range(5)})
    r = ingest(src, store)
    assert r.shape == "imagefolder"
    assert len(r.items) == 10 and r.labels == {"cat": 5, "dog": 5}
    assert [it.cid for it in r.items] == sorted(it.cid for it in r.items)
    assert all(it.media_type == "image/png" for it in r.items)
    cat0 = next(it for it in r.items if it.name == "cat/0.png")
    assert cat0.cid == cid_of_bytes(png(0)) and cat0.label == "cat" and cat0.size == len(png(0))
    assert store.get(cat0.cid) == png(0)
    assert read_manifest(store, r.manifest_cid) == r.items
    assert r.merkle_root == merkle_root(r.items)
    tree = MerkleTree.from_items(r.items)
    assert verify_proof(r.merkle_root, leaf_hash(cid_digest(cat0.cid), "cat"), tree.proof(cat0))
    d = r.to_dict()
    assert d["item_count"] == 10 and d["merkle_root"] == "0x" + r.merkle_root.hex()
    json.dumps(d)


def test_rerun_and_worker_count_give_the_same_result(tmp_path, store) -> None:
    src = write(tmp_path / "in", {f"l{i % 4}/{i:04d}.txt": f"item {i}".encode() for i in range(600)})
    a = ingest(src, store, workers=2)
    b = ingest(src, open_store(tmp_path / "other"), workers=1)
    c = ingest(src, store, workers=2)
    assert a.manifest_cid == b.manifest_cid == c.manifest_cid
    assert a.merkle_root == b.merkle_root == c.merkle_root
    assert all(it.media_type == "text/plain" for it in a.items)
    assert store.fsck() == {}


def test_duplicates_never_earn_twice(tmp_path, store) -> None:
    src = write(tmp_path / "in", {"a/1.txt": b"one", "a/2.txt": b"two", "b/copy-of-1.txt": b"one",
                                  "b/3.txt": b"three"})
    r = ingest(src, store, existing_cids={cid_of_bytes(b"two")})
    assert sorted(it.name for it in r.items) == ["a/1.txt", "b/3.txt"]
    dups = {d.name: (d.cid, d.reason) for d in r.duplicates}
    assert dups == {"a/2.txt": (cid_of_bytes(b"two"), "already in dataset"),
                    "b/copy-of-1.txt": (cid_of_bytes(b"one"), "duplicate in batch")}
    assert r.to_dict()["duplicates"][0]["reason"] in {"already in dataset", "duplicate in batch"}


def test_nothing_new_gives_an_empty_result(tmp_path, store) -> None:
    src = write(tmp_path / "in", {"a/1.txt": b"one"})
    r = ingest(src, store, existing_cids=frozenset({cid_of_bytes(b"one")}))
    assert r.items == [] and r.manifest_cid is None and r.merkle_root is None
    assert r.duplicates[0].reason == "already in dataset"


def test_every_refusal_is_named(tmp_path, store) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    src = write(tmp_path / "in", {
        "cat/good.png": png(1),
        "cat/empty.png": b"",
        "cat/broken.png": png(2)[:40],  # truncated PNG
        "cat/fake.jpg": b"not a jpeg at all",
        "cat/big.bin": b"x" * 2000,
        "cat/.DS_Store": b"junk",
        "bird/ok.txt": b"a bird",
        "loose.txt": b"no label folder",
        ("l" * 65) + "/x.txt": b"long label",
    })
    os.symlink(outside, src / "cat" / "escape.txt")
    os.symlink(src / "cat" / "good.png", src / "cat" / "inside-link.png")
    os.symlink(src / "cat" / "nowhere", src / "cat" / "dangling.txt")
    os.symlink(src / "bird", src / "cat" / "linked-folder")
    os.mkfifo(src / "cat" / "pipe")
    with open(os.path.join(os.fsencode(src), b"cat", b"bad-\xff-name.txt"), "wb") as f:
        f.write(b"latin-1 name")
    r = ingest(src, store, label_set={"cat", "dog", "l" * 65}, max_file_size=1000)
    why = refusals(r)
    assert why["cat/empty.png"] == "empty file"
    assert why["cat/broken.png"] == "unreadable image"
    assert why["cat/fake.jpg"] == "unreadable image"
    assert why["cat/big.bin"].startswith("oversize: 2000 bytes > limit 1000")
    assert why["cat/.DS_Store"] == "hidden file or folder"
    assert why["bird/ok.txt"] == "unknown label 'bird'"
    assert why["loose.txt"] == "not inside a label folder"
    assert why[("l" * 65) + "/x.txt"] == "label longer than 64 bytes"
    assert why["cat/escape.txt"] == "symlink escaping the folder"
    assert why["cat/dangling.txt"] == "broken symlink"
    assert why["cat/linked-folder"] == "symlinked folder (not followed)"
    assert why["cat/pipe"] == "not a regular file"
    assert why["cat/bad-\\xff-name.txt"] == "name is not valid UTF-8"
    # a symlink that stays inside the folder is read like the file; its content is then a duplicate
    assert [it.name for it in r.items] == ["cat/good.png"]
    assert [(d.name, d.reason) for d in r.duplicates] == [("cat/inside-link.png", "duplicate in batch")]
    assert store.fsck() == {}
    assert not any(store.has(cid_of_bytes(b)) for b in (b"secret", b"", b"x" * 2000))


# The on-chain verify_item takes the label as String[64]: the limit is 64 UTF-8 bytes, not characters.
AT_LIMIT = ["é" * 32, "🐱" * 16, "x" * 64]          # exactly 64 bytes each
OVER_LIMIT = ["é" * 33, "🐱" * 16 + "a", "x" * 65]  # 66, 65, 65 bytes (33, 17, 65 characters)


@pytest.mark.parametrize("shape", ["imagefolder", "labels.csv", "table-csv"])
def test_labels_over_64_utf8_bytes_are_refused_per_item(tmp_path, store, shape) -> None:
    labels = AT_LIMIT + OVER_LIMIT
    if shape == "table-csv":
        src = tmp_path / "rows.csv"
        src.write_text("x,y\n" + "".join(f"{i},{lab}\n" for i, lab in enumerate(labels)), encoding="utf-8")
        r = ingest(src, store, label_column="y")
        names = [f"rows.csv#row={i + 1}" for i in range(len(labels))]  # rows count from 1
    elif shape == "labels.csv":
        files = {f"f{i}.txt": f"item {i}".encode() for i in range(len(labels))}
        src = write(tmp_path / "in", files)
        (src / "labels.csv").write_text(
            "file,label\n" + "".join(f"f{i}.txt,{lab}\n" for i, lab in enumerate(labels)), encoding="utf-8")
        r = ingest(src, store)
        names = [f"f{i}.txt" for i in range(len(labels))]
    else:
        src = write(tmp_path / "in", {f"{lab}/f.txt": f"item {i}".encode() for i, lab in enumerate(labels)})
        r = ingest(src, store)
        names = [f"{lab}/f.txt" for lab in labels]
    assert r.shape == shape
    over = names[len(AT_LIMIT):]
    assert refusals(r) == dict.fromkeys(over, "label longer than 64 bytes")
    assert {"name": over[0], "reason": "label longer than 64 bytes"} in r.to_dict()["refused"]
    assert sorted(it.label for it in r.items) == sorted(AT_LIMIT)
    tree = MerkleTree.from_items(r.items)  # what is accepted stays provable with its full label
    for it in r.items:
        assert verify_proof(tree.root, leaf_hash(cid_digest(it.cid), it.label), tree.proof(it))


def test_large_file_is_streamed(tmp_path, store) -> None:
    data = os.urandom(9 << 20)  # above the in-memory threshold
    src = write(tmp_path / "in", {"blob/big.bin": data})
    r = ingest(src, store)
    assert r.items[0].cid == cid_of_bytes(data) and r.items[0].size == len(data)
    assert store.get(r.items[0].cid) == data
    r2 = ingest(src, open_store(tmp_path / "s2"), max_file_size=1 << 20)
    assert r2.refused[0].reason.startswith("oversize")


def test_labels_csv(tmp_path, store) -> None:
    src = write(tmp_path / "in", {
        "imgs/a.png": png(1), "imgs/b.png": png(2), "c.txt": b"text item", "d.txt": b"unlisted",
        "e.txt": b"twice", "f.txt": b"unknown", "g.txt": b"no label",
    })
    (src / "labels.csv").write_text(
        "file,label\nimgs/a.png,cat\nimgs/b.png,dog\nc.txt,cat\ne.txt,cat\ne.txt,dog\nmissing.png,cat\n"
        "../outside.txt,cat\nf.txt,eel\ng.txt,\n\n"
    )
    r = ingest(src, store, label_set={"cat", "dog"})
    assert r.shape == "labels.csv"
    assert {it.name: it.label for it in r.items} == {"imgs/a.png": "cat", "imgs/b.png": "dog",
                                                      "c.txt": "cat", "e.txt": "cat"}
    why = refusals(r)
    assert why["d.txt"] == "not listed in labels.csv"
    assert why["e.txt"].startswith("listed twice in labels.csv")
    assert why["missing.png"] == "listed in labels.csv but not found"
    assert why["../outside.txt"] == "path escapes the folder"
    assert why["f.txt"] == "unknown label 'eel'"
    assert why["g.txt"] == "empty label"
    assert "labels.csv" not in why


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_table_rows_become_canonical_json_blobs(tmp_path, store, kind) -> None:
    table = pa.table({"x": [1.5, 2.0, 1.5, 3.25, 4.0], "word": ["é", "b", "é", "c", "d"],
                      "y": ["pos", "neg", "neg", None, "zzz"]})
    path = tmp_path / f"t.{kind}"
    if kind == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    r = ingest(path, store, label_column="y", label_set={"pos", "neg"})
    assert r.shape == f"table-{kind}"
    assert {it.name: it.label for it in r.items} == {f"t.{kind}#row=1": "pos", f"t.{kind}#row=2": "neg"}
    first = next(it for it in r.items if it.name.endswith("row=1"))
    assert store.get(first.cid) == '{"word":"é","x":1.5}'.encode()
    assert first.media_type == "application/json"
    # row 3 has the same features as row 1: its content is a duplicate, whatever its label
    assert [(d.name, d.reason) for d in r.duplicates] == [(f"t.{kind}#row=3", "duplicate in batch")]
    why = refusals(r)
    assert why[f"t.{kind}#row=4"] == "empty label"
    assert why[f"t.{kind}#row=5"] == "unknown label 'zzz'"


def test_canonical_row_encoding() -> None:
    import datetime as dt

    from databright.storage.scan import canonical_row

    assert canonical_row({"b": 1, "a": float("nan"), "c": b"\x00", "d": dt.date(2026, 1, 2), "e": [1.0, None]}) \
        == b'{"a":null,"b":1,"c":{"base64":"AA=="},"d":"2026-01-02","e":[1.0,null]}'


@pytest.mark.parametrize(
    "setup, kwargs, message",
    [
        (lambda p: p, {}, "no such file or folder"),
        (lambda p: (p.mkdir(), p)[1], {}, "empty folder"),
        (lambda p: (p.with_suffix(".txt").write_text("x"), p.with_suffix(".txt"))[1], {}, "not a folder"),
        (lambda p: (p.with_suffix(".csv").write_text("a,b\n1,2\n"), p.with_suffix(".csv"))[1], {},
         "needs --label-column"),
        (lambda p: (p.with_suffix(".csv").write_text("a,b\n1,2\n"), p.with_suffix(".csv"))[1],
         {"label_column": "label"}, "no column 'label'"),
        (lambda p: (p.with_suffix(".parquet").write_bytes(b"garbage"), p.with_suffix(".parquet"))[1],
         {"label_column": "y"}, "cannot read the parquet table"),
        (lambda p: (p.with_suffix(".csv").write_text("a,y\n"), p.with_suffix(".csv"))[1],
         {"label_column": "y"}, "no rows"),
        (lambda p: (p.mkdir(), (p / "labels.csv").write_text("name,class\n"), p)[2], {}, "header must be"),
        (lambda p: (p.mkdir(), (p / "labels.csv").write_text("file,label\na,b,c\n"), p)[2], {},
         "line 2: expected 2 columns"),
        (lambda p: (p.mkdir(), (p / "labels.csv").write_bytes(b"file,label\n\xff,x\n"), p)[2], {},
         "not UTF-8"),
        (lambda p: (p.mkdir(), p)[1], {"label_column": "y"}, "applies to a CSV or Parquet"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, store, setup, kwargs, message) -> None:
    source = setup(tmp_path / "src")
    with pytest.raises(IngestError, match=message) as e:
        ingest(source, store, **kwargs)
    assert "\n" not in str(e.value) and str(source) in str(e.value)


def test_ingest_into_an_fsspec_store(tmp_path) -> None:
    src = write(tmp_path / "in", {f"l{i % 2}/{i}.txt": f"r{i}".encode() for i in range(300)})
    remote = open_store("memory://ingest-test")
    r = ingest(src, remote)
    local = ingest(src, open_store(tmp_path / "s"))
    assert r.manifest_cid == local.manifest_cid
    assert all(remote.check(it.cid) == "ok" for it in r.items)
    assert read_manifest(remote, r.manifest_cid) == r.items


def test_progress_bar_does_not_change_results(tmp_path, store) -> None:
    src = write(tmp_path / "in", {f"l/{i}.txt": f"p{i}".encode() for i in range(50)})
    assert ingest(src, store, progress=True).manifest_cid == ingest(src, store).manifest_cid


def test_large_table_uses_the_pool_and_is_deterministic(tmp_path) -> None:
    n = 1500
    table = pa.table({"a": list(range(n)), "b": [i % 7 for i in range(n)],
                      "y": [f"c{i % 3}" for i in range(n)]})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path)
    one = ingest(path, open_store(tmp_path / "s1"), label_column="y", workers=1)
    two = ingest(path, open_store(tmp_path / "s2"), label_column="y", workers=2)
    assert one.manifest_cid == two.manifest_cid and one.item_count == n
    assert two.labels == {"c0": 500, "c1": 500, "c2": 500}
    assert open_store(tmp_path / "s2").fsck() == {}
