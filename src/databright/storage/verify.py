"""Integrity: recompute a dataset's accepted entries from the store, compare with the chain.

For every entry (anything with ``manifest_cid``, ``merkle_root``, ``item_count``, such as the
registry's ``Entry``) the manifest must be present, intact and valid, hold ``item_count`` items
whose Merkle root is ``merkle_root``, and every blob it names must be present and intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import pyarrow as pa

from databright.errors import CorruptBlobError, IntegrityError, MissingBlobError, StorageError
from databright.storage.cas import BlobStore
from databright.storage.manifest import manifest_tree, read_manifest_table

__all__ = [
    "Entry",
    "Problem",
    "VerifyReport",
    "checked_manifest",
    "entry_manifest",
    "root_bytes",
    "verify_entries",
]


class Entry(Protocol):
    """What storage reads of a registry entry (``DataMarket.get_entry``)."""

    @property
    def manifest_cid(self) -> str: ...

    @property
    def merkle_root(self) -> bytes | str: ...

    @property
    def item_count(self) -> int: ...


class Problem(NamedTuple):
    """One thing wrong with one entry; ``kind`` is one of ``missing-manifest``,
    ``corrupt-manifest``, ``invalid-manifest``, ``count-mismatch``, ``root-mismatch``,
    ``missing-blob``, ``corrupt-blob``."""

    entry: int
    kind: str
    cid: str | None
    detail: str

    def __str__(self) -> str:
        return f"entry {self.entry}: {self.detail}"


@dataclass
class VerifyReport:
    entries: int = 0
    items: int = 0
    blobs_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "items": self.items,
            "blobs_checked": self.blobs_checked,
            "problems": [str(p) for p in self.problems],
            "details": [p._asdict() for p in self.problems],
        }


def root_bytes(root: bytes | str) -> bytes:
    """A Merkle root as 32 bytes, whether given as bytes or ``0x`` hex."""
    if isinstance(root, str):
        return bytes.fromhex(root.removeprefix("0x"))
    return bytes(root)


def verify_entries(
    store: BlobStore, entries: Sequence[Entry], *, check_blobs: bool = True, workers: int = 2
) -> VerifyReport:
    """Check ``entries`` against the store; the report names every missing or corrupted blob."""
    report = VerifyReport(entries=len(entries))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for index, entry in enumerate(entries):
            _verify_one(store, index, entry, report, pool if check_blobs else None)
    return report


def entry_manifest(store: BlobStore, index: int, entry: Entry) -> tuple[pa.Table | None, list[Problem]]:
    """Entry ``index``'s manifest table (None when it cannot be read) and what disagrees with the
    chain's count and root: the one place a manifest is checked against its registry entry."""
    mcid = entry.manifest_cid
    try:
        table = read_manifest_table(store, mcid)  # reads the blob once, verified against its CID
    except MissingBlobError:
        return None, [Problem(index, "missing-manifest", mcid, f"manifest {mcid} is missing")]
    except CorruptBlobError:
        return None, [Problem(index, "corrupt-manifest", mcid, f"manifest {mcid} is corrupt")]
    except StorageError as e:
        return None, [Problem(index, "invalid-manifest", mcid, str(e))]
    problems = []
    if table.num_rows != int(entry.item_count):
        problems.append(Problem(
            index, "count-mismatch", mcid,
            f"manifest {mcid} holds {table.num_rows} items, the chain says {entry.item_count}"))
    root = manifest_tree(table).root
    if root != root_bytes(entry.merkle_root):
        problems.append(Problem(
            index, "root-mismatch", mcid,
            f"manifest {mcid} has Merkle root 0x{root.hex()}, "
            f"the chain says 0x{root_bytes(entry.merkle_root).hex()}"))
    return table, problems


def checked_manifest(store: BlobStore, index: int, entry: Entry, *, dataset: str = "") -> pa.Table:
    """Entry ``index``'s manifest table, or :class:`IntegrityError` naming the first problem."""
    table, problems = entry_manifest(store, index, entry)
    if problems or table is None:
        where = f"{dataset} " if dataset else ""
        raise IntegrityError(f"{where}entry {index}: {problems[0].detail}")
    return table


def _verify_one(
    store: BlobStore, index: int, entry: Entry, report: VerifyReport, pool: ThreadPoolExecutor | None
) -> None:
    table, problems = entry_manifest(store, index, entry)
    report.problems += problems
    if table is None:
        return
    report.items += table.num_rows
    if pool is None:
        return
    cids = table["cid"].to_pylist()
    for cid, blob_state in zip(cids, pool.map(store.check, cids, chunksize=256)):
        report.blobs_checked += 1
        if blob_state != "ok":
            report.problems.append(Problem(index, f"{blob_state}-blob", cid, f"blob {cid} is {blob_state}"))
