"""A byte-to-byte key-value store in one SQLite file, shaped as py-evm's ``BaseDB``.

py-evm keeps every piece of chain data (headers, bodies, receipts, state trie nodes, the canonical
head pointer) in such a store behind an ``AtomicDB``. Writes go into one open SQLite transaction
that :meth:`SqliteKV.commit` closes; the embedded chain commits once per mined block, so the file
on disk always holds whole blocks: a crash rolls back to the last block boundary.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from eth.db.backends.base import BaseDB

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
)


class SqliteKV(BaseDB):
    """py-evm key-value database over a SQLite table; writes commit only on :meth:`commit`.

    Args:
        path: the SQLite file (created with its tables when missing).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Manual transactions (isolation_level=None); one connection guarded by a lock, so the
        # web server's threads may share the chain.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        # WAL + synchronous=NORMAL: a commit survives a killed process (the crash that matters
        # here) without an fsync per block; a power cut may lose the last blocks, never half one.
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        for stmt in _SCHEMA:
            self._conn.execute(stmt)
        self._in_txn = False

    # -- BaseDB -----------------------------------------------------------------------------
    def __getitem__(self, key: bytes) -> bytes:
        with self._lock:
            row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._begin()
            self._conn.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))

    def __delitem__(self, key: bytes) -> None:
        with self._lock:
            self._begin()
            cur = self._conn.execute("DELETE FROM kv WHERE k = ?", (key,))
        if cur.rowcount == 0:
            raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM kv WHERE k = ?", (key,)).fetchone()
        return row is not None

    # -- metadata (same transaction as the chain data) ---------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A metadata value (e.g. the clock offset), or ``default``."""
        with self._lock:
            row = self._conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value; it commits with the next :meth:`commit`."""
        with self._lock:
            self._begin()
            self._conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    # -- transactions ------------------------------------------------------------------------
    def _begin(self) -> None:
        if not self._in_txn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._in_txn = True

    def commit(self) -> None:
        """Make every write since the last commit durable, all or nothing."""
        with self._lock:
            if self._in_txn:
                self._conn.execute("COMMIT")
                self._in_txn = False

    def rollback(self) -> None:
        """Drop every write since the last commit."""
        with self._lock:
            if self._in_txn:
                self._conn.execute("ROLLBACK")
                self._in_txn = False

    @property
    def in_transaction(self) -> bool:
        """Whether uncommitted writes are pending."""
        return self._in_txn

    def close(self) -> None:
        """Roll back uncommitted writes (they are not a whole block) and close the file."""
        with self._lock:
            self.rollback()
            self._conn.close()
