"""What one running web app holds: the home's deployment (on the embedded chain the server is
its single writer: it holds the chain's lock from start to stop), and the index sync loop.

Pages read the index only; the loop brings the index to the chain's head every
``sync_seconds`` and at once when :meth:`WebContext.synced_soon` is called after a write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from databright.errors import DataBrightError
from databright.home import Home
from databright.market.context import Deployment

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("databright.web")


class WebContext:
    """The deployment of ``home`` as one web server process uses it.

    Args:
        home: the DataBright home.
        sync_seconds: seconds between index syncs (0: no background sync; tests call
            :meth:`sync_now`).
        domain: the host[:port] Sign-In with Ethereum messages must name (default: the
            request's Host header is compared with the configured one by the auth routes).
    """

    def __init__(self, home: Home, *, sync_seconds: float = 1.0,
                 domain: str | None = None) -> None:
        self.home = home
        self.dep = Deployment(home)
        self.config = self.dep.config
        self.domain = domain
        self.sync_seconds = sync_seconds
        #: serialises the chain between request threads and the sync loop
        self.chain_lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_sync_error: str | None = None
        #: unlocked keys of local sign-ins, by the sha256 of their session token (local_keys.py)
        self.local_keys: dict[str, Any] = {}
        #: the last block the index was synced to by this process, and this process's count of
        #: successful writes: together the version the page cache keys on (page_cache.py)
        self.synced_block = -1
        self.writes = 0

    @property
    def is_embedded(self) -> bool:
        return self.config.chain == "embedded"

    def start(self) -> None:
        """Open the chain (taking the embedded chain's lock), sync once, start the loop."""
        with self.chain_lock:
            self.dep.chain  # noqa: B018 - opening it takes the single-writer lock
        self.sync_now()
        if self.sync_seconds > 0:
            self._thread = threading.Thread(target=self._loop, name="databright-sync",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.dep.close()

    def sync_now(self) -> None:
        """Bring the index to the chain's head now."""
        from databright.market.sync import sync

        with self.chain_lock:
            try:
                result = sync(self.dep)
                self.synced_block = max(self.synced_block, result.to_block)
                self.last_sync_error = None
            except DataBrightError as exc:
                self.last_sync_error = str(exc)
                log.error("index sync failed: %s", exc)

    def version(self) -> tuple[int, int]:
        """What a cached page depends on: the synced block and this process's writes."""
        return self.synced_block, self.writes

    def wrote(self) -> None:
        """A request changed something (a comment, a session): cached pages are stale."""
        self.writes += 1

    def synced_soon(self) -> None:
        """Ask the loop to sync at once (after a transaction was sent)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.sync_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.sync_now()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """An index session for a page (reads only; committed and closed after)."""
        with self.dep.index.session() as s:
            yield s
