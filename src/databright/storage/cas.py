"""Content-addressed blob store: a local folder by default, any fsspec URL otherwise.

Layout of a local store (``root``)::

    root/DATABRIGHT-STORE         marker with the layout version
    root/blobs/<cid[8:10]>/<cid>  one file per blob, named by its CID (1,024 shard folders)
    root/tmp/<owner>-<writer>/    writes in progress, one folder per writing process

A blob appears under ``blobs/`` only by ``rename`` of a temporary file that was completely written
and flushed to disk first, so a crash at any point leaves the whole blob or nothing. Temporary
files of dead writers are removed when the store is next opened. Every read is checked against
its CID: corrupted bytes raise :class:`CorruptBlobError` and are never returned.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

import fsspec

from databright.errors import CorruptBlobError, MissingBlobError, StorageError
from databright.storage.cid import CID_PATTERN, cid_from_digest, is_cid

__all__ = ["BlobStore", "FsspecBlobStore", "LocalBlobStore", "VerifiedReader", "open_store"]

CheckResult = Literal["ok", "missing", "corrupt"]
_CHUNK = 1 << 20
_MARKER = "DATABRIGHT-STORE"
_LAYOUT = "databright-cas 1\n"
_STALE_TMP_S = 24 * 3600
_counter = itertools.count()
_made_dirs: set[str] = set()


def shard_of(cid: str) -> str:
    """Shard folder name of ``cid`` (2 base32 characters that only depend on the digest)."""
    return cid[8:10]


def _check_cid(cid: str) -> str:
    if not is_cid(cid):
        raise StorageError(f"not a CID: {cid!r}")
    return cid


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (Linux ``syncfs``): one call
    makes a whole batch of written files durable, instead of one ``fsync`` (~0.5 ms) per file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _load_syncfs():  # type: ignore[no-untyped-def]
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


class VerifiedReader(io.RawIOBase):
    """Streams a blob and checks it against its CID: the read that reaches the end raises
    :class:`CorruptBlobError` if the bytes do not match, so a consumer that reads to the end never
    accepts corrupted data. ``read()`` without a size verifies before returning anything."""

    def __init__(self, raw: IO[bytes], cid: str) -> None:
        super().__init__()
        self._raw, self.cid = raw, cid
        self._h = hashlib.sha256()
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self._raw.read(len(buffer))
        if data:
            self._h.update(data)
        n = len(data)
        buffer[:n] = data
        if n == 0 and not self._done:
            self._done = True
            if cid_from_digest(self._h.digest()) != self.cid:
                raise CorruptBlobError(f"blob {self.cid} is corrupted: its bytes hash differently")
        return n

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(_CHUNK):
            chunks.append(chunk)
        self.read(1)  # reaches the end: verifies
        return b"".join(chunks)

    def close(self) -> None:
        self._raw.close()
        super().close()


class BlobStore:
    """Interface of a blob store; see :class:`LocalBlobStore` and :class:`FsspecBlobStore`."""

    url: str

    def put_bytes(self, data: bytes) -> str:
        raise NotImplementedError

    def put_file(self, path: str | os.PathLike[str]) -> str:
        raise NotImplementedError

    def _open_raw(self, cid: str) -> IO[bytes]:
        raise NotImplementedError

    def has(self, cid: str) -> bool:
        raise NotImplementedError

    def iter_cids(self) -> Iterator[str]:
        raise NotImplementedError

    def open(self, cid: str) -> VerifiedReader:
        """Streaming reader of a blob, verified against its CID as it is read."""
        _check_cid(cid)
        try:
            raw = self._open_raw(cid)
        except FileNotFoundError:
            raise MissingBlobError(f"blob {cid} is not in the store {self.url}") from None
        return VerifiedReader(raw, cid)

    def get(self, cid: str) -> bytes:
        """The blob's bytes, verified; corrupted → CorruptBlobError, missing → MissingBlobError."""
        with self.open(cid) as r:
            return r.readall()

    def check(self, cid: str) -> CheckResult:
        """``"ok"``, ``"missing"`` or ``"corrupt"`` (reads the blob through once)."""
        try:
            with self.open(cid) as r:
                while r.read(_CHUNK):
                    pass
        except MissingBlobError:
            return "missing"
        except CorruptBlobError:
            return "corrupt"
        return "ok"

    def fsck(self) -> dict[str, CheckResult]:
        """Every stored blob that does not verify, by CID (empty when the store is sound)."""
        bad: dict[str, CheckResult] = {}
        for cid in self.iter_cids():
            if (state := self.check(cid)) != "ok":
                bad[cid] = state
        return bad

    def path_of(self, cid: str) -> Path:
        raise StorageError(f"store {self.url} is not a local folder")


class LocalBlobStore(BlobStore):
    """A blob store in a local folder (created on first use)."""

    def __init__(self, root: str | os.PathLike[str], *, clean: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir(exist_ok=True)
            marker = self.root / _MARKER
            if not marker.exists():
                marker.write_text(_LAYOUT)
        except OSError as e:
            raise StorageError(f"cannot open the store at {self.root}: {e.strerror}") from None
        if clean:
            self.clean_temp()

    def path_of(self, cid: str) -> Path:
        _check_cid(cid)
        return self.blobs / shard_of(cid) / cid

    def has(self, cid: str) -> bool:
        return is_cid(cid) and os.path.exists(self.blobs / shard_of(cid) / cid)

    def _open_raw(self, cid: str) -> IO[bytes]:
        return open(self.blobs / shard_of(cid) / cid, "rb", buffering=0)

    def iter_cids(self) -> Iterator[str]:
        for shard in sorted(os.listdir(self.blobs)):
            for name in sorted(os.listdir(self.blobs / shard)):
                if CID_PATTERN.fullmatch(name):
                    yield name

    def temp_path(self, owner: int | None = None) -> str:
        """A fresh temporary file name in this writer's own folder ``tmp/<owner>-<writer>/`` (so
        parallel writers never contend for one directory). ``owner`` is the process that will
        rename the file into place (by default this one); both pids let a later open remove
        the leftovers of dead writers."""
        folder = f"{self.tmp}/{owner or os.getpid()}-{os.getpid()}"
        if folder not in _made_dirs:
            os.makedirs(folder, exist_ok=True)
            _made_dirs.add(folder)
        return f"{folder}/{next(_counter)}-{time.monotonic_ns()}.tmp"

    def clean_temp(self) -> int:
        """Remove the temporary folders whose owner and writer processes are both gone (anything
        else in ``tmp/`` once it is a day old); returns how many entries were removed."""
        removed = 0
        for name in os.listdir(self.tmp):
            path = self.tmp / name
            pids = name.split("-")[:2]
            try:
                if all(p.isdigit() for p in pids) and len(pids) == 2:
                    if any(_pid_alive(int(p)) for p in pids):
                        continue  # a running writer's folder, however old
                elif time.time() - path.stat().st_mtime <= _STALE_TMP_S:
                    continue  # not ours to judge until it is a day old
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def commit(self, tmp: str, cid: str) -> None:
        """Move a completely written (and flushed) temporary file into place as blob ``cid``."""
        dest = f"{self.blobs}/{cid[8:10]}/{cid}"
        try:
            os.rename(tmp, dest)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            os.makedirs(f"{self.blobs}/{cid[8:10]}", exist_ok=True)
            os.rename(tmp, dest)

    def _publish(self, tmp: str, cid: str, size: int) -> None:
        dest = self.blobs / shard_of(cid) / cid
        if _intact_size(dest, size):
            os.unlink(tmp)  # idempotent: already there
            return
        self.commit(tmp, cid)
        _fsync_dir(dest.parent)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its CID. Writing the same bytes again does nothing."""
        cid = cid_from_digest(hashlib.sha256(data).digest())
        if _intact_size(self.blobs / shard_of(cid) / cid, len(data)):
            return cid
        tmp = self.temp_path()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        self._publish(tmp, cid, len(data))
        return cid

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file's content, streamed in 1 MiB chunks (memory flat in the file size)."""
        tmp = self.temp_path()
        h = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as src, open(tmp, "xb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            _unlink_quiet(tmp)
            raise
        cid = cid_from_digest(h.digest())
        self._publish(tmp, cid, size)
        return cid

    def sync(self) -> None:
        """Make every blob written so far durable (used after batched writes)."""
        sync_filesystem(self.root)


class FsspecBlobStore(BlobStore):
    """A blob store on any fsspec filesystem (``memory://``, ``s3://``, ...). Blobs are written
    under a temporary name and then moved into place; object stores make each write atomic."""

    def __init__(self, url: str, **storage_options: object) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.root = root.rstrip("/")
        self.fs.makedirs(f"{self.root}/blobs", exist_ok=True)

    def _path(self, cid: str) -> str:
        return f"{self.root}/blobs/{shard_of(cid)}/{cid}"

    def has(self, cid: str) -> bool:
        return is_cid(cid) and bool(self.fs.exists(self._path(cid)))

    def _open_raw(self, cid: str) -> IO[bytes]:
        return self.fs.open(self._path(cid), "rb")  # type: ignore[no-any-return]

    def iter_cids(self) -> Iterator[str]:
        for p in sorted(self.fs.find(f"{self.root}/blobs")):
            name = p.rsplit("/", 1)[-1]
            if CID_PATTERN.fullmatch(name):
                yield name

    def _put_stream(self, cid: str, src: IO[bytes]) -> str:
        if self.has(cid):
            return cid
        tmp = f"{self.root}/tmp/{os.getpid()}-{next(_counter)}-{time.monotonic_ns()}.tmp"
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
        with self.fs.open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
        self.fs.makedirs(f"{self.root}/blobs/{shard_of(cid)}", exist_ok=True)
        self.fs.mv(tmp, self._path(cid))
        return cid

    def put_bytes(self, data: bytes) -> str:
        return self._put_stream(cid_from_digest(hashlib.sha256(data).digest()), io.BytesIO(data))

    def put_file(self, path: str | os.PathLike[str]) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            f.seek(0)
            return self._put_stream(cid_from_digest(h.digest()), f)


def open_store(url_or_path: str | os.PathLike[str] | BlobStore, **storage_options: object) -> BlobStore:
    """A local folder store for a path or ``file://`` URL, an fsspec store for any other URL."""
    if isinstance(url_or_path, BlobStore):
        return url_or_path
    s = os.fspath(url_or_path)
    if "://" not in s:
        return LocalBlobStore(s)
    if s.startswith("file://"):
        return LocalBlobStore(s[len("file://"):])
    return FsspecBlobStore(s, **storage_options)


def _intact_size(path: str | os.PathLike[str], size: int) -> bool:
    # a cheap idempotence test (one stat); a corrupted blob of the right size is caught on read
    try:
        return os.stat(path).st_size == size
    except FileNotFoundError:
        return False


def _fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) writes nothing more
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1][:3] not in (b" Z ", b" X ")
    except OSError:
        return True


