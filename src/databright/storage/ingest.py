"""Ingestion: a proposal's input → blobs in the store → manifest → Merkle root.

Pipeline: :func:`~databright.storage.scan.scan` lists candidates without reading them; worker
processes (both cores) read, check, hash and stage files (or table rows) in chunks as temporary
files; every 4,096 staged blobs, and at the end, one ``syncfs`` makes them durable and only then
are they renamed into place (see :mod:`databright.storage.cas`); duplicates are settled in
canonical name order; the manifest is written last, after every blob it names is durable. A crash
at any point leaves whole blobs or nothing, and re-running gives the same result.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import multiprocessing as mp
import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from databright.storage.cas import BlobStore, LocalBlobStore, sync_filesystem
from databright.storage.cid import cid_from_digest
from databright.storage.manifest import Item, write_manifest
from databright.storage.merkle import MerkleTree
from databright.storage.scan import ROW_MEDIA_TYPE, Refusal, scan

__all__ = ["DEFAULT_MAX_FILE_SIZE", "Duplicate", "IngestResult", "Refusal", "ingest"]

DEFAULT_MAX_FILE_SIZE = 100 * 1024 * 1024
_STREAM_ABOVE = 8 * 1024 * 1024  # bigger files are copied in chunks, never held whole
_CHUNK = 1 << 20
_COMMIT_EVERY = 4096  # staged blobs per flush: few syncfs calls, bounded work lost to a crash
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class Duplicate(NamedTuple):
    """A candidate whose content is already in the dataset or earlier in the batch."""

    name: str
    cid: str
    reason: str  # "already in dataset" | "duplicate in batch"


@dataclass
class IngestResult:
    """Outcome of an ingestion; ``items`` holds only the new items, in canonical (CID) order.
    ``manifest_cid`` and ``merkle_root`` are None when there is no new item."""

    items: list[Item]
    manifest_cid: str | None
    merkle_root: bytes | None
    duplicates: list[Duplicate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    shape: str = ""

    @property
    def item_count(self) -> int:
        return len(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "manifest_cid": self.manifest_cid,
            "merkle_root": "0x" + self.merkle_root.hex() if self.merkle_root else None,
            "item_count": len(self.items),
            "bytes": sum(it.size for it in self.items),
            "labels": dict(sorted(self.labels.items())),
            "duplicates": [{"name": d.name, "cid": d.cid, "reason": d.reason} for d in self.duplicates],
            "refused": [{"name": r.name, "reason": r.reason} for r in self.refused],
        }


# --- per-file work (runs in worker processes) --------------------------------------------------

def _media_type(name: str, head: bytes) -> str:
    for magic, mt in _MAGIC:
        if head.startswith(magic):
            return mt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    ext = os.path.splitext(name)[1].lower()
    if ext in _IMAGE_EXT:
        return mimetypes.types_map.get(ext, "image/" + ext[1:])
    return mimetypes.types_map.get(ext, "application/octet-stream")


def _image_problem(data: bytes | None, path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            im.load()
    except Image.DecompressionBombError:
        return "unreadable image: too many pixels"
    except Exception:  # noqa: BLE001 - any decoder failure means the image is unusable
        return "unreadable image"
    return None


def _process_file(
    name: str, path: str, max_size: int, stage: Callable[[str, bytes | None, str | None], None] | None
) -> tuple[str, int, str] | str:
    """(cid, size, media_type) of one file, staged into the store; or the reason it is refused."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return f"unreadable: {e.strerror}"
    try:
        size = os.fstat(fd).st_size
        if size > max_size:
            return f"oversize: {size} bytes > limit {max_size}"
        if size <= _STREAM_ABOVE:
            # one read of the known size (+1 to notice growth); os.read allocates what it is asked
            data = os.read(fd, size + 1)
            if len(data) > size:  # the file grew after fstat: read on, bounded by the limit
                parts, total = [data], len(data)
                while more := os.read(fd, _CHUNK):
                    parts.append(more)
                    total += len(more)
                    if total > max_size:
                        return f"oversize: more than limit {max_size} bytes"
                data = b"".join(parts)
            if not data:
                return "empty file"
            media = _media_type(name, data[:16])
            if media.startswith("image/") and (p := _image_problem(data, path)):
                return p
            cid = cid_from_digest(hashlib.sha256(data).digest())
            if stage is not None:
                stage(cid, data, None)
            return cid, len(data), media
    finally:
        os.close(fd)
    # large file: stream (memory flat)
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(0)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    if n > max_size:
        return f"oversize: {n} bytes > limit {max_size}"
    media = _media_type(name, head)
    if media.startswith("image/") and (p := _image_problem(None, path)):
        return p
    cid = cid_from_digest(h.digest())
    if stage is not None:
        stage(cid, None, path)
    return cid, n, media


def _process_blob(
    blob: bytes, max_size: int, stage: Callable[[str, bytes | None, str | None], None] | None
) -> tuple[str, int, str] | str:
    """(cid, size, media_type) of a table row's canonical JSON, staged; or why it is refused."""
    if len(blob) > max_size:
        return f"oversize: {len(blob)} bytes > limit {max_size}"
    cid = cid_from_digest(hashlib.sha256(blob).digest())
    if stage is not None:
        stage(cid, blob, None)
    return cid, len(blob), ROW_MEDIA_TYPE


class _Stager:
    """Writes blobs of one chunk to temporary files, then flushes once and renames them in."""

    def __init__(self, store_root: str, owner: int | None = None) -> None:
        # temporary files are named after the ingesting process, which renames them in: a
        # concurrent open of the store must not take them for a dead worker's leftovers
        self.owner = owner or os.getpid()
        self.store = LocalBlobStore(store_root, clean=False)
        self.blobs = f"{store_root}/blobs"
        self.staged: list[tuple[str, str]] = []
        self.seen: set[str] = set()

    def __call__(self, cid: str, data: bytes | None, path: str | None) -> None:
        if cid in self.seen:
            return
        size = len(data) if data is not None else os.path.getsize(path)  # type: ignore[arg-type]
        try:  # already stored whole (one stat, same size): nothing to write
            if os.stat(f"{self.blobs}/{cid[8:10]}/{cid}").st_size == size:
                return
        except FileNotFoundError:
            pass
        self.seen.add(cid)
        tmp = self.store.temp_path(self.owner)
        if data is not None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        else:
            with open(path, "rb") as src, open(tmp, "xb") as dst:  # type: ignore[arg-type]
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
        self.staged.append((tmp, cid))

    def commit(self) -> None:
        if not self.staged:
            return
        sync_filesystem(self.store.root)  # every staged byte on disk before any name appears
        for tmp, cid in self.staged:
            self.store.commit(tmp, cid)
        self.staged.clear()


def _work_chunk(
    args: tuple[int, list[tuple[str, str | bytes]], str | None, int, int],
) -> tuple[int, list[Any], list[tuple[str, str]]]:
    """Read, check, hash and stage one chunk; the staged (temp, cid) pairs are committed later,
    all at once, after a single flush (one ``syncfs`` for the whole ingestion, not per chunk)."""
    index, files, store_root, max_size, owner = args
    stager = _Stager(store_root, owner) if store_root else None
    results = [
        _process_blob(src, max_size, stager) if isinstance(src, bytes) else _process_file(name, src, max_size, stager)
        for name, src in files
    ]
    return index, results, stager.staged if stager is not None else []


def _die_with_parent() -> None:
    """Workers must not outlive a killed ingestion (Linux: PR_SET_PDEATHSIG = SIGKILL)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


# --- orchestration -----------------------------------------------------------------------------

def _chunks(files: list[tuple[str, Any, str]], workers: int) -> list[list[tuple[str, Any]]]:
    size = max(32, min(1024, len(files) // (workers * 8) or 1))
    return [[(n, p) for n, p, _ in files[i:i + size]] for i in range(0, len(files), size)]


def _run_files(
    files: list[tuple[str, Any, str]], store_root: str | None, max_size: int, workers: int,
    advance: Callable[[int], None],
) -> list[Any]:
    chunks = _chunks(files, workers)
    tasks = [(i, c, store_root, max_size, os.getpid()) for i, c in enumerate(chunks)]
    out: list[list[Any]] = [[] for _ in chunks]
    staged: list[tuple[str, str]] = []
    if workers <= 1 or len(files) < 256:
        for t in tasks:
            i, res, st = _work_chunk(t)
            out[i] = res
            staged += st
            advance(len(res))
            if len(staged) >= _COMMIT_EVERY:
                _commit(store_root, staged)
    else:
        # fork is cheapest; with threads running a forked child may inherit a held lock
        method = "fork" if threading.active_count() == 1 and "fork" in mp.get_all_start_methods() else "forkserver"
        with mp.get_context(method).Pool(workers, initializer=_die_with_parent) as pool:
            for i, res, st in pool.imap_unordered(_work_chunk, tasks):
                out[i] = res
                staged += st
                advance(len(res))
                if len(staged) >= _COMMIT_EVERY:
                    _commit(store_root, staged)
    _commit(store_root, staged)
    return [r for chunk in out for r in chunk]


def _commit(store_root: str | None, staged: list[tuple[str, str]]) -> None:
    """One flush for many staged blobs, then their renames (a few flushes per ingestion)."""
    if staged and store_root:
        stager = _Stager(store_root)
        stager.staged = list(staged)
        stager.commit()
        staged.clear()


def _progress(total: int, enabled: bool) -> tuple[Callable[[int], None], Callable[[], None]]:
    if not enabled or total == 0:
        return (lambda n: None), (lambda: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("ingesting", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
    task = bar.add_task("ingest", total=total)
    bar.start()
    return (lambda n: bar.advance(task, n)), bar.stop


def ingest(
    source: str | os.PathLike[str],
    store: BlobStore,
    *,
    label_column: str | None = None,
    label_set: set[str] | frozenset[str] | None = None,
    existing_cids: set[str] | frozenset[str] = frozenset(),
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    progress: bool = False,
    workers: int = 2,
) -> IngestResult:
    """Ingest a folder (ImageFolder or files + ``labels.csv``) or a CSV/Parquet table.

    Stores every accepted blob, writes the manifest of the *new* items and computes their Merkle
    root. Items whose CID is in ``existing_cids`` or earlier in the batch are reported as
    duplicates; refused entries are reported with the reason. When nothing new remains, ``items``
    is empty and ``manifest_cid``/``merkle_root`` are None. Raises :class:`IngestError` (one line,
    naming the file) when the input cannot be taken at all.
    """
    src = Path(source)
    cands = scan(src, label_column=label_column, label_set=label_set)
    refused = list(cands.refused)
    local_root = str(store.root) if isinstance(store, LocalBlobStore) else None
    # (name, label, outcome) in canonical order; outcome is (cid, size, media) or a refusal reason
    outcomes: list[tuple[str, str, Any]] = []
    advance, stop = _progress(len(cands.files) + len(cands.rows), progress)
    try:
        if cands.files:
            cands.files.sort()
            res = _run_files(cands.files, local_root, max_file_size, workers, advance)
            outcomes += [(n, lab, r) for (n, _, lab), r in zip(cands.files, res)]
            if local_root is None:
                for (n, p, _), r in zip(cands.files, res):
                    if not isinstance(r, str):
                        store.put_file(p)
        if cands.rows:  # kept in table order: the first of equal rows is the one counted
            res = _run_files(cands.rows, local_root, max_file_size, workers, advance)
            outcomes += [(n, lab, r) for (n, _, lab), r in zip(cands.rows, res)]
            if local_root is None:
                for (_, blob, _), r in zip(cands.rows, res):
                    if not isinstance(r, str):
                        store.put_bytes(blob)
    finally:
        stop()
    if local_root:
        sync_filesystem(local_root)  # the renames too, before a manifest can name these blobs
    items, duplicates = [], []
    seen: set[str] = set()
    for name, label, r in outcomes:
        if isinstance(r, str):
            refused.append(Refusal(name, r))
            continue
        cid, size, media = r
        if cid in existing_cids:
            duplicates.append(Duplicate(name, cid, "already in dataset"))
        elif cid in seen:
            duplicates.append(Duplicate(name, cid, "duplicate in batch"))
        else:
            seen.add(cid)
            items.append(Item(cid, label, size, media, name))
    items.sort(key=lambda it: it.cid)
    refused.sort(key=lambda r: r.name)
    result = IngestResult(
        items=items, manifest_cid=None, merkle_root=None, duplicates=duplicates, refused=refused,
        labels=dict(Counter(it.label for it in items)), shape=cands.shape,
    )
    if not items:
        return result  # nothing new: no manifest, no root; the report says why
    result.manifest_cid = write_manifest(store, items)
    result.merkle_root = MerkleTree.from_items(items).root
    return result


