"""A compute worker: pull a lease, fetch its blobs, compute, commit the result's hash, reveal it.

The protocol is docs/compute-protocol.md; every request is signed by the worker's account
(:func:`databright.chain.requests.sign_request`). Blobs are verified against their CIDs before
the computation sees them. A task whose spec pins another thread count or determinism class is
left to lapse (another replica takes it), never computed differently. Transient failures
(network, 5xx, ``busy``) are retried with exponential backoff; a refusal of the worker itself
(unregistered, banned, bad signature) stops it.

Fault modes exist for tests and benchmarks only: ``"copy"`` commits and reveals its previous
result without computing, ``"silent"`` takes leases and never answers; a callable
``fault(spec, payload) -> payload`` perturbs each honest result before it is committed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx

from databright.chain.requests import sign_request
from databright.errors import CorruptBlobError, DataBrightError
from databright.storage.cid import cid_of_bytes, is_cid

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

__all__ = ["CoordinatorClient", "CoordinatorRefused", "Fault", "WorkerStats", "run_worker"]

log = logging.getLogger("databright.worker")
Fetch = Callable[[str], bytes]
Compute = Callable[[bytes, Fetch], bytes]
Fault = Literal["copy", "silent"] | Callable[[bytes, bytes], bytes]
_TRANSIENT = {429, 500, 502, 503, 504}
BLOB_CACHE_BYTES = 256 * 1024 * 1024  # verified blobs kept across leases (a CID never changes)
_FATAL = {"missing_signature", "bad_signature", "forbidden", "stale_timestamp"}


class CoordinatorRefused(DataBrightError):
    """The coordinator answered with an error (``code`` from its table) or not at all."""

    exit_code = 15
    http_status = 502

    def __init__(self, message: str, status: int = 0, code: str = "unreachable",
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}


class BlobCache:
    """Verified blobs kept across leases, least recently used out first, at most ``limit``
    bytes: an item or a weights blob named by the same CID is the same bytes, so a worker
    fetches each once while it holds a lease that names it (the coordinator still decides which
    CIDs a lease may read)."""

    def __init__(self, limit: int = BLOB_CACHE_BYTES) -> None:
        from collections import OrderedDict

        self.limit = limit
        self.size = 0
        self._blobs: OrderedDict[str, bytes] = OrderedDict()

    def get(self, cid: str) -> bytes | None:
        data = self._blobs.get(cid)
        if data is not None:
            self._blobs.move_to_end(cid)
        return data

    def put(self, cid: str, data: bytes) -> None:
        if cid in self._blobs or len(data) > self.limit:
            return
        self._blobs[cid] = data
        self.size += len(data)
        while self.size > self.limit:
            _, old = self._blobs.popitem(last=False)
            self.size -= len(old)


@dataclass
class WorkerStats:
    """What a worker did: leases taken, results committed and revealed, tasks left to lapse."""

    leases: int = 0
    commits: int = 0
    reveals: int = 0
    skipped: int = 0
    errors: int = 0


class CoordinatorClient:
    """Signed requests to one coordinator, with retries of transient failures."""

    def __init__(self, url: str, key: Signer | bytes | str, *, client: httpx.Client | None = None,
                 retries: int = 5, backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.http = client or httpx.Client(timeout=60)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def request(self, method: str, path: str, body: bytes = b"",
                stop: threading.Event | None = None) -> httpx.Response:
        """Send a signed request (a fresh nonce per attempt); returns a 2xx answer.

        Raises:
            CoordinatorRefused: a 4xx refusal, or transient failures past the retries.
        """
        wait = self.backoff
        for attempt in range(self.retries + 1):
            headers = sign_request(self.key, method, path, body)
            try:
                response = self.http.request(method, self.url + path, content=body,
                                             headers=headers)
            except httpx.TransportError as exc:
                failure = CoordinatorRefused(f"{self.url} is unreachable: {exc}")
            else:
                if response.is_success:
                    return response
                failure = _refusal(response)
                if response.status_code not in _TRANSIENT:
                    raise failure
            if attempt == self.retries or (stop is not None and stop.is_set()):
                raise failure
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
            wait = min(wait * 2, self.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def lease(self, determinism_class: str, threads: int,
              stop: threading.Event | None = None) -> tuple[dict[str, Any] | None, float]:
        """The next lease (or ``None``) and how long the coordinator asks an idle worker to wait."""
        body = json.dumps({"determinism_class": determinism_class, "threads": threads}).encode()
        doc = self.request("POST", "/v1/lease", body, stop).json()
        return doc.get("lease"), float(doc.get("retry_after_seconds", 1.0))

    def blob(self, cid: str) -> bytes:
        """A blob of a live lease, verified against its CID.

        Raises:
            CorruptBlobError: the bytes do not hash to ``cid``.
        """
        if not is_cid(cid):
            raise CorruptBlobError(f"not a CID: {cid!r}")
        data = self.request("GET", f"/v1/blobs/{cid}").content
        if cid_of_bytes(data) != cid:
            raise CorruptBlobError(f"the coordinator sent bytes that are not {cid}")
        return data

    def commit(self, lease_id: str, digest: str) -> bool:
        body = json.dumps({"lease_id": lease_id, "sha256": digest}).encode()
        try:
            return bool(self.request("POST", "/v1/commit", body).json()["reveals_open"])
        except CoordinatorRefused as exc:
            if exc.code == "already_committed":  # a retry after a lost answer
                return False
            raise

    def reveal(self, lease_id: str, payload: bytes) -> None:
        try:
            self.request("POST", f"/v1/reveal?lease={lease_id}", payload)
        except CoordinatorRefused as exc:
            if exc.code != "already_revealed":  # a retry after a lost answer
                raise


def _refusal(response: httpx.Response) -> CoordinatorRefused:
    try:
        body = response.json()
        code, message = body["error"]["code"], body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        body, code, message = {}, "unexpected", response.text[:200]
    return CoordinatorRefused(f"the coordinator refused ({response.status_code} {code}): "
                              f"{message}", response.status_code, str(code), body)


def _parse_lease(doc: Any) -> tuple[dict[str, Any], bytes]:
    """A lease answer and its spec bytes, or :class:`CoordinatorRefused` if it is malformed."""
    try:
        spec = base64.b64decode(doc["spec_b64"], validate=True)
        ok = (isinstance(doc["lease_id"], str) and isinstance(doc["cids"], list)
              and all(isinstance(c, str) for c in doc["cids"])
              and int(doc["max_payload_bytes"]) >= 0
              and hashlib.sha256(spec).hexdigest() == doc["spec_sha256"])
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise CoordinatorRefused("the coordinator sent a malformed lease", code="unexpected")
    return doc, spec


def _fits(spec: bytes, threads: int, determinism_class: str) -> bool:
    """Whether a spec's pinned threads and class (if it names them) are this worker's."""
    try:
        doc = json.loads(spec)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    return doc.get("threads", threads) == threads and doc.get(
        "determinism_class", determinism_class) == determinism_class


def run_worker(url: str, key: Signer | bytes | str, compute: Compute, *, threads: int,
               determinism_class: str, stop: threading.Event, fault: Fault | None = None,
               client: httpx.Client | None = None, backoff: float = 0.1,
               max_backoff: float = 5.0) -> WorkerStats:
    """Work for the coordinator at ``url`` until ``stop`` is set.

    Args:
        url: the coordinator, e.g. ``http://127.0.0.1:8720``.
        key: the worker account's key (its registered address signs every request).
        compute: ``compute(spec_bytes, fetch) -> safetensors bytes``; ``fetch(cid)`` returns
            verified blob bytes of the lease.
        threads: the thread count this worker pins (a task naming another is not taken on).
        determinism_class: this worker's class digest (likewise).
        stop: set it to end the loop after the current request.
        fault: a test-only fault mode (see the module docstring).

    Raises:
        CoordinatorRefused: the coordinator refuses this worker itself (unregistered, banned,
            bad signature, clock off by more than the window).
    """
    api = CoordinatorClient(url, key, client=client, backoff=backoff, max_backoff=max_backoff)
    try:
        return _loop(api, compute, threads, determinism_class, stop, fault, backoff, max_backoff)
    finally:
        if client is None:
            api.http.close()


def _loop(api: CoordinatorClient, compute: Compute, threads: int, determinism_class: str,
          stop: threading.Event, fault: Fault | None, backoff: float,
          max_backoff: float) -> WorkerStats:
    stats = WorkerStats()
    blobs = BlobCache()
    last: bytes | None = None
    wait = backoff
    while not stop.is_set():
        try:
            lease, idle = api.lease(determinism_class, threads, stop)
        except CoordinatorRefused as exc:
            if exc.code in _FATAL:
                raise
            log.warning("lease: %s", exc)
            stats.errors += 1
            stop.wait(wait)
            wait = min(wait * 2, max_backoff)
            continue
        wait = backoff
        if lease is None:
            stop.wait(idle)
            continue
        stats.leases += 1
        if fault == "silent":
            continue
        try:
            last = _work(api, lease, compute, threads, determinism_class, fault, last, stats,
                         stop, blobs)
        except (CoordinatorRefused, CorruptBlobError) as exc:
            if isinstance(exc, CoordinatorRefused) and exc.code in _FATAL:
                raise
            log.warning("lease: %s", exc)
            stats.errors += 1
    return stats


def _work(api: CoordinatorClient, lease: dict[str, Any], compute: Compute, threads: int,
          determinism_class: str, fault: Fault | None, last: bytes | None, stats: WorkerStats,
          stop: threading.Event, blobs: BlobCache) -> bytes | None:
    lease, spec = _parse_lease(lease)
    if not _fits(spec, threads, determinism_class):
        stats.skipped += 1
        return last
    if fault == "copy" and last is not None:
        payload = last
    else:
        allowed = set(lease["cids"])

        def fetch(cid: str) -> bytes:
            if cid not in allowed:
                raise CorruptBlobError(f"{cid} is not a blob of this lease")
            data = blobs.get(cid)
            if data is None:
                data = api.blob(cid)  # verified against its CID
                blobs.put(cid, data)
            return data

        payload = compute(spec, fetch)
        if callable(fault):
            payload = fault(spec, payload)
    if len(payload) > int(lease["max_payload_bytes"]):
        stats.skipped += 1
        return last
    api.commit(lease["lease_id"], hashlib.sha256(payload).hexdigest())
    stats.commits += 1
    wait = api.backoff
    while not stop.is_set():
        try:
            api.reveal(lease["lease_id"], payload)
        except CoordinatorRefused as exc:
            if exc.code != "reveal_too_early":
                raise
            stop.wait(min(float(exc.body.get("retry_after_seconds", wait)), wait))
            wait = min(wait * 2, api.max_backoff)
            continue
        stats.reveals += 1
        break
    return payload
