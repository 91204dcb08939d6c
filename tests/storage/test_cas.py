"""Blob store: verified reads, corruption, idempotence, atomic writes, streaming, fsspec."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from databright.errors import CorruptBlobError, MissingBlobError, StorageError
from databright.storage.cas import FsspecBlobStore, LocalBlobStore, open_store
from databright.storage.cid import cid_of_bytes


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "store")


def test_put_get_roundtrip(store) -> None:
    cid = store.put_bytes(b"hello")
    assert cid == cid_of_bytes(b"hello")
    assert store.get(cid) == b"hello"
    assert store.has(cid) and store.check(cid) == "ok"
    assert store.path_of(cid).read_bytes() == b"hello"
    assert store.put_bytes(b"") == cid_of_bytes(b"") and store.get(cid_of_bytes(b"")) == b""


def test_put_is_idempotent(store) -> None:
    a = store.put_bytes(b"same")
    mtime = store.path_of(a).stat().st_mtime_ns
    assert store.put_bytes(b"same") == a
    assert store.path_of(a).stat().st_mtime_ns == mtime  # not rewritten
    assert list(store.iter_cids()) == [a]


def test_missing_blob(store) -> None:
    cid = cid_of_bytes(b"never stored")
    assert not store.has(cid)
    assert store.check(cid) == "missing"
    with pytest.raises(MissingBlobError, match=cid):
        store.get(cid)


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "replace"])
def test_corrupted_blob_is_reported_never_returned(store, damage) -> None:
    data = os.urandom(5000)
    cid = store.put_bytes(data)
    p = store.path_of(cid)
    raw = bytearray(p.read_bytes())
    if damage == "flip":
        raw[1234] ^= 1
    elif damage == "truncate":
        raw = raw[:-1]
    elif damage == "extend":
        raw += b"x"
    else:
        raw = bytearray(b"other content")
    p.write_bytes(raw)
    assert store.check(cid) == "corrupt"
    with pytest.raises(CorruptBlobError, match=cid):
        store.get(cid)
    with pytest.raises(CorruptBlobError), store.open(cid) as r:
        r.read()  # read() without a size verifies before returning anything
    assert store.fsck() == {cid: "corrupt"}


def test_put_repairs_a_truncated_blob(store) -> None:
    cid = store.put_bytes(b"0123456789")
    store.path_of(cid).write_bytes(b"01234")
    assert store.put_bytes(b"0123456789") == cid
    assert store.get(cid) == b"0123456789"


def test_streaming_reader_verifies_at_the_end(store) -> None:
    data = os.urandom(3 << 20)
    cid = store.put_bytes(data)
    with store.open(cid) as r:
        got = b"".join(iter(lambda: r.read(65536), b""))
    assert got == data
    p = store.path_of(cid)
    raw = bytearray(data)
    raw[-1] ^= 0xFF
    p.write_bytes(raw)
    with pytest.raises(CorruptBlobError), store.open(cid) as r:
        while r.read(65536):
            pass


def test_bad_cid_refused(store) -> None:
    with pytest.raises(StorageError, match="not a CID"):
        store.get("../../etc/passwd")
    assert not store.has("../../etc/passwd")


def test_put_file_streams_with_flat_memory(store, tmp_path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    tracemalloc.start()
    cid = store.put_file(big)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20, f"put_file of 64 MiB peaked at {peak} bytes of Python memory"
    assert cid == cid_of_bytes(big.read_bytes())
    with store.open(cid) as r:
        n = 0
        while chunk := r.read(1 << 20):
            n += len(chunk)
    assert n == 64 << 20


def test_failed_write_leaves_nothing(store, monkeypatch) -> None:
    """A write that dies half way leaves no blob and no temporary file."""
    real_write = os.write

    def failing_write(fd, data):
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(OSError):
        store.put_bytes(b"x" * 1000)
    monkeypatch.undo()
    assert list(store.iter_cids()) == []
    assert not store.has(cid_of_bytes(b"x" * 1000))
    assert list(store.tmp.rglob("*.tmp")) == []


def test_temp_files_of_dead_writers_are_removed(tmp_path) -> None:
    store = LocalBlobStore(tmp_path / "s")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = store.tmp / f"{dead}-{dead}"
    stale.mkdir()
    (stale / "0-1.tmp").write_bytes(b"half a blob")
    mine = store.tmp / f"{os.getpid()}-{dead}"  # a finished worker's files, waiting for their owner
    mine.mkdir()
    (mine / "0-2.tmp").write_bytes(b"in progress")
    LocalBlobStore(tmp_path / "s")
    assert not stale.exists()
    assert (mine / "0-2.tmp").exists()  # a live owner's files are left alone
    assert Path(store.temp_path()).parent.name == f"{os.getpid()}-{os.getpid()}"


def test_fsspec_memory_store() -> None:
    store = open_store("memory://databright-test-store")
    assert isinstance(store, FsspecBlobStore)
    cid = store.put_bytes(b"remote bytes")
    assert store.put_bytes(b"remote bytes") == cid
    assert store.get(cid) == b"remote bytes" and store.check(cid) == "ok"
    store.fs.pipe(store._path(cid), b"tampered")
    assert store.check(cid) == "corrupt"
    with pytest.raises(CorruptBlobError):
        store.get(cid)
    assert store.check(cid_of_bytes(b"nope")) == "missing"
    with pytest.raises(StorageError):
        store.path_of(cid)


def test_file_url_is_local(tmp_path) -> None:
    assert isinstance(open_store(f"file://{tmp_path}/x"), LocalBlobStore)
    assert open_store(store := open_store(tmp_path / "y")) is store
