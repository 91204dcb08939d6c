"""Exclusive access to an embedded chain folder across processes (and within one).

The holder keeps ``chain/chain.lock`` (a ``filelock``) for as long as it has the chain open and
notes its pid and command line in ``chain/chain.owner``. A second opener waits silently, up to
``$DATABRIGHT_LOCK_TIMEOUT`` seconds (default 60), then gets :class:`ChainBusyError`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Self

from filelock import FileLock, Timeout

from databright.errors import ChainBusyError, UsageError

DEFAULT_LOCK_TIMEOUT = 60.0


def lock_timeout_from_env() -> float:
    """``$DATABRIGHT_LOCK_TIMEOUT`` in seconds, default 60 when unset or empty.

    Raises:
        UsageError: the variable is set to something that is not a number of seconds ≥ 0.
    """
    raw = os.environ.get("DATABRIGHT_LOCK_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(
            f"DATABRIGHT_LOCK_TIMEOUT must be a number of seconds ≥ 0, not {raw!r}"
        )
    return seconds


class ChainLock:
    """Exclusive access to one embedded chain folder, across processes.

    Usable as a context manager; a CLI command holds it for its whole run. The holder writes its
    pid and command line to ``chain.owner`` so a waiting process can say who it waits for.

    Args:
        chain_dir: the folder holding ``chain.sqlite``.
        timeout: seconds to wait for another process; default ``$DATABRIGHT_LOCK_TIMEOUT`` or 60.
        on_wait: called once, with a description of the holder, if the lock is not free at once
            (the chain layer itself prints nothing).
    """

    def __init__(
        self,
        chain_dir: Path,
        timeout: float | None = None,
        on_wait: Callable[[str | None], None] | None = None,
    ) -> None:
        self.chain_dir = Path(chain_dir)
        self.timeout = lock_timeout_from_env() if timeout is None else timeout
        self.on_wait = on_wait
        self.chain_dir.mkdir(parents=True, exist_ok=True)
        # is_singleton=False: a second open in this same process must wait too, not re-enter;
        # thread_local=False: a server may open the chain in one thread and close it in another.
        self._lock = FileLock(self.chain_dir / "chain.lock", is_singleton=False, thread_local=False)
        self._owner = self.chain_dir / "chain.owner"

    def holder(self) -> str | None:
        """Who holds the lock, as its owner file says (best effort)."""
        try:
            return self._owner.read_text().strip() or None
        except OSError:
            return None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`ChainBusyError` after the timeout."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            if self.on_wait is not None:
                self.on_wait(self.holder())
            try:
                self._lock.acquire(timeout=self.timeout)
            except Timeout:
                held = self.holder()
                raise ChainBusyError(
                    f"embedded chain at {self.chain_dir} is busy (held by another DataBright "
                    f"process{': ' + held if held else ''}); retry when it is done, or raise "
                    "DATABRIGHT_LOCK_TIMEOUT to wait longer"
                ) from None
        try:
            self._owner.write_text(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n")
        except OSError:  # the owner note is a courtesy, never a failure
            pass

    def release(self) -> None:
        """Give the lock back (no-op when not held)."""
        if self._lock.is_locked:
            self._lock.release(force=True)

    @property
    def is_locked(self) -> bool:
        """Whether this object holds the lock."""
        return bool(self._lock.is_locked)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
