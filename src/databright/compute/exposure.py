"""The exposure ledger: which items of a dataset each worker account has ever been sent.

A worker that sees a dataset's items can keep them, so the market bounds what any one account
ever receives: at most ``⌊cap_bps · n_items / 10000⌋`` distinct items of a dataset, summed over
every job on it (``MAX_CAP_BPS`` = 5 %; a dataset may set a lower cap, never a higher one).

The ledger is a SQLite file (stdlib ``sqlite3``, WAL journal): one row per (account, dataset)
holding a bitmap of the item indices sent (bit ``i`` of a little-endian integer) and its
popcount. Each :meth:`ExposureLedger.record` is one ``BEGIN IMMEDIATE`` transaction that reads,
checks the cap and writes, so concurrent coordinators cannot both spend the same headroom and a
killed process leaves either the whole update or none of it.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Self

from databright.errors import DataBrightError, UsageError

MAX_CAP_BPS = 500  # 5 % of a dataset's items, in basis points
BPS = 10_000

DatasetId = int | str

_ACCOUNT = re.compile(r"0x[0-9a-fA-F]{40}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS exposure (
    account TEXT NOT NULL,
    dataset TEXT NOT NULL,
    items   BLOB NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (account, dataset)
) WITHOUT ROWID
"""


class CapTooHighError(UsageError):
    """A dataset asked for an exposure cap above the market's (or not a positive integer)."""


class CapExceededError(DataBrightError):
    """Sending these items would take an account past the dataset's exposure cap."""

    http_status = 409

    def __init__(self, message: str, *, account: str, dataset: str, would_hold: int,
                 limit: int) -> None:
        super().__init__(message)
        self.account = account
        self.dataset = dataset
        self.would_hold = would_hold
        self.limit = limit


def normalize_account(account: str) -> str:
    """``0x`` + 40 hex digits, lowercased; anything else is refused."""
    if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
        raise UsageError(f"not a worker account (0x + 40 hex digits): {account!r}")
    return account.lower()


def check_cap(cap_bps: int) -> int:
    """The cap itself, if it is a whole number of basis points in ``1..MAX_CAP_BPS``."""
    if isinstance(cap_bps, bool) or not isinstance(cap_bps, int) or not 0 < cap_bps <= MAX_CAP_BPS:
        raise CapTooHighError(
            f"exposure cap {cap_bps!r} bps refused: a dataset may set 1..{MAX_CAP_BPS} bps "
            f"(at most {MAX_CAP_BPS / 100:g} % of its items per worker account)")
    return cap_bps


def cap_items(n_items: int, cap_bps: int) -> int:
    """How many distinct items of a dataset of ``n_items`` one account may ever hold."""
    check_cap(cap_bps)
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 0:
        raise UsageError(f"a dataset's item count must be a non-negative integer: {n_items!r}")
    return cap_bps * n_items // BPS


def bitmap_of(indices: Iterable[int]) -> int:
    """The bitmap (bit ``i`` set for each index ``i``) of a set of item indices."""
    mask = 0
    for i in indices:
        mask |= 1 << i
    return mask


def indices_of(bitmap: int) -> set[int]:
    """The set bits of a bitmap."""
    bits = bin(bitmap)[:1:-1]  # least significant first, without the "0b"
    return {i for i, bit in enumerate(bits) if bit == "1"}


class ExposureLedger:
    """Per (worker account, dataset), the distinct item indices ever sent, persisted.

    Args:
        path: the SQLite file (created if missing). ``":memory:"`` keeps it in memory (tests).
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are the explicit BEGIN IMMEDIATE ... COMMIT below.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
        self._lock = threading.Lock()  # one connection shared by a server's threads
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed record survives power loss
            self._db.execute(_SCHEMA)

    # -- reads ---------------------------------------------------------------------------------

    def _bitmap(self, account: str, dataset: str) -> int:
        row = self._db.execute("SELECT items FROM exposure WHERE account = ? AND dataset = ?",
                               (account, dataset)).fetchone()
        return int.from_bytes(row[0], "little") if row else 0

    def exposure(self, account: str, dataset: DatasetId) -> int:
        """How many distinct items of ``dataset`` the account has ever been sent."""
        with self._lock:
            row = self._db.execute(
                "SELECT count FROM exposure WHERE account = ? AND dataset = ?",
                (normalize_account(account), str(dataset))).fetchone()
        return int(row[0]) if row else 0

    def items(self, account: str, dataset: DatasetId) -> set[int]:
        """The item indices of ``dataset`` the account has ever been sent."""
        with self._lock:
            return indices_of(self._bitmap(normalize_account(account), str(dataset)))

    def holdings(self, dataset: DatasetId) -> dict[str, set[int]]:
        """Every account's items of ``dataset`` (one query; what a scheduler reads)."""
        with self._lock:
            rows = self._db.execute("SELECT account, items FROM exposure WHERE dataset = ?",
                                    (str(dataset),)).fetchall()
        return {acc: indices_of(int.from_bytes(blob, "little")) for acc, blob in rows}

    def exposures(self, dataset: DatasetId) -> dict[str, int]:
        """Every account's exposure (distinct items) to ``dataset``, for a receipt."""
        with self._lock:
            rows = self._db.execute("SELECT account, count FROM exposure WHERE dataset = ?",
                                    (str(dataset),)).fetchall()
        return {acc: int(count) for acc, count in rows}

    # -- the one write -------------------------------------------------------------------------

    def record(self, account: str, dataset: DatasetId, indices: Iterable[int], *, n_items: int,
               cap_bps: int) -> int:
        """Record that ``indices`` of ``dataset`` are being sent to ``account``.

        All or nothing: if the account would then hold more than
        ``⌊cap_bps · n_items / 10000⌋`` distinct items, nothing is recorded and
        :class:`CapExceededError` is raised (so the caller must not send the task).

        Returns:
            The account's exposure to the dataset afterwards.
        """
        return self.record_many([(account, indices)], dataset, n_items=n_items,
                                cap_bps=cap_bps)[0]

    def record_many(self, sends: Iterable[tuple[str, Iterable[int]]], dataset: DatasetId, *,
                    n_items: int, cap_bps: int) -> list[int]:
        """:meth:`record` for several ``(account, indices)`` sends in one transaction (one
        durable commit, ~8 ms with ``synchronous=FULL``, instead of one per send).

        All or nothing: if any account would go over the cap, nothing is recorded and
        :class:`CapExceededError` names the first such account.

        Returns:
            Each send's account's exposure to the dataset after it, in order.
        """
        ds = str(dataset)
        listed = [(normalize_account(account), list(indices)) for account, indices in sends]
        limit = cap_items(n_items, cap_bps)
        masks: list[tuple[str, int]] = []
        for acc, wanted in listed:
            for i in wanted:
                if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_items:
                    raise UsageError(
                        f"item index {i!r} is not in 0..{n_items - 1} of dataset {ds}")
            masks.append((acc, bitmap_of(wanted)))
        counts: list[int] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                held: dict[str, int] = {}
                for acc, mask in masks:
                    old = held[acc] if acc in held else self._bitmap(acc, ds)
                    new = old | mask
                    count = new.bit_count()
                    if count > limit:
                        raise CapExceededError(
                            f"refused: account {acc} would hold {count} distinct items of "
                            f"dataset {ds}, over its cap of {limit} ({cap_bps} bps of {n_items} "
                            "items)", account=acc, dataset=ds, would_hold=count, limit=limit)
                    if new != old:
                        blob = new.to_bytes((new.bit_length() + 7) // 8, "little")
                        self._db.execute(
                            "INSERT INTO exposure (account, dataset, items, count) "
                            "VALUES (?,?,?,?) ON CONFLICT (account, dataset) DO UPDATE SET "
                            "items = excluded.items, count = excluded.count",
                            (acc, ds, blob, count))
                    held[acc] = new
                    counts.append(count)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return counts

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
