"""A short-lived cache of the public pages and their JSON twins, for visitors who are not signed
in (the pages of a dataset or a proposal are the same for every anonymous visitor).

An entry is keyed by the path and query, the kind of answer asked for (HTML, JSON, an htmx
fragment) and the app's *version*: the index's synced block plus a counter of this process's
successful writes (a comment, a sign-in…). Any new block synced or write made misses every
older entry, so a visitor never sees a page older than what this process has written; what
changes with the clock alone (a deadline's time left) is at most ``ttl`` seconds old. With
several server processes, another process's write is seen within ``ttl``.

Signed-in viewers (a session cookie), any method but GET/HEAD, answers other than 200, and
answers that set a cookie are never cached; nor is anything outside :data:`CACHEABLE` (sign-in
nonces, transaction status, the JSON-RPC endpoint, blobs, static files).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from databright.web.app.sessions import COOKIE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the pages and JSON twins that are the same for every anonymous visitor
CACHEABLE = re.compile(
    r"^/(|datasets(/.*)?|proposals/.*|models(/.*)?|compute(/.*)?|dashboard)$"
    r"|^/api/(datasets|proposals|models|compute|dashboard|comments)(/.*)?$")
#: never cached even though the pattern above matches them
EXCLUDED = re.compile(r"^/api/models/[^/]+/try(/.*)?$|/verify$")
MAX_BODY = 2 * 1024 * 1024


class PageCache:
    """Entries ``key → (stored_at, status, headers, body)``, least recently used evicted."""

    def __init__(self, ttl: float = 10.0, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, int, list[Any], bytes]] = \
            OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> tuple[int, list[Any], bytes] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry[0] > self.ttl:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1], entry[2], entry[3]

    def put(self, key: tuple[Any, ...], status: int, headers: list[Any], body: bytes) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), status, headers, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return b""


class PageCacheMiddleware:
    """ASGI middleware serving :class:`PageCache` hits; ``version()`` is the app's version."""

    def __init__(self, app: ASGIApp, cache: PageCache, version: Callable[[], Any],
                 on_write: Callable[[], None]) -> None:
        self.app = app
        self.cache = cache
        self.version = version
        self.on_write = on_write
        self._cookie = COOKIE.encode() + b"="

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            if scope["path"] == "/rpc":  # a wallet's reads; its transactions reach the index
                await self.app(scope, receive, send)
                return
            await self._write(scope, receive, send)
            return
        path = scope["path"]
        if (self.cache.ttl <= 0 or not CACHEABLE.match(path) or EXCLUDED.search(path)
                or self._cookie in _header(scope, b"cookie")):
            await self.app(scope, receive, send)
            return
        accept = _header(scope, b"accept")
        kind = (b"html" if b"text/html" in accept else b"other",
                bool(_header(scope, b"hx-request")))
        key = (scope["method"], path, scope.get("query_string", b""), kind, self.version())
        hit = self.cache.get(key)
        if hit is not None:
            status, headers, body = hit
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"x-page-cache", b"hit")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self._fill(key, scope, receive, send)

    async def _fill(self, key: tuple[Any, ...], scope: Scope, receive: Receive,
                    send: Send) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []
        size = 0
        keep = True

        async def capture(message: Message) -> None:
            nonlocal size, keep
            if message["type"] == "http.response.start":
                start.update(message)
                headers = list(message.get("headers", ()))
                if message["status"] != 200 or any(k.lower() == b"set-cookie"
                                                   for k, _ in headers):
                    keep = False
                message = {**message, "headers": [*headers, (b"x-page-cache", b"miss")]}
            elif message["type"] == "http.response.body" and keep:
                body = message.get("body", b"")
                size += len(body)
                if size > MAX_BODY:
                    keep = False
                else:
                    chunks.append(body)
                if not message.get("more_body", False) and keep:
                    self.cache.put(key, int(start["status"]),
                                   list(start.get("headers", ())), b"".join(chunks))
            await send(message)

        await self.app(scope, receive, capture)

    async def _write(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if status < 400:
                self.on_write()
