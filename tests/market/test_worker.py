"""The worker's client logic against a scripted coordinator (httpx MockTransport): transient
failures retried with fresh nonces, a malformed lease never computed, lost answers to a commit
or reveal retried safely."""

from __future__ import annotations

import base64
import hashlib
import json
import threading

import httpx

from databright.market.worker import CoordinatorClient, run_worker

KEY = "0x" + "33" * 32
SPEC = json.dumps({"threads": 1, "determinism_class": "cls", "cids": []}).encode()


def _lease(spec=SPEC, sha=None) -> dict:
    return {"lease": {"lease_id": "ab" * 16, "task_id": "t", "cids": [],
                      "spec_b64": base64.b64encode(spec).decode(),
                      "spec_sha256": sha or hashlib.sha256(spec).hexdigest(),
                      "deadline_seconds": 30.0, "max_payload_bytes": 1 << 20}}


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}})


def test_transient_failures_are_retried_each_with_a_fresh_nonce():
    nonces, answers = [], [_error(503, "x"), _error(429, "busy"), httpx.Response(200, json={})]

    def handler(request: httpx.Request) -> httpx.Response:
        nonces.append(request.headers["X-DataBright-Nonce"])
        return answers.pop(0)

    api = CoordinatorClient("http://c", KEY, client=httpx.Client(
        transport=httpx.MockTransport(handler)), backoff=0.001)
    assert api.request("POST", "/v1/lease", b"{}").status_code == 200
    assert len(nonces) == 3 and len(set(nonces)) == 3


def test_a_lease_whose_spec_does_not_match_its_hash_is_not_computed():
    stop = threading.Event()
    calls: list[str] = []
    computed: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            return httpx.Response(200, json=_lease(sha="00" * 32))
        stop.set()
        return httpx.Response(200, json={"lease": None, "retry_after_seconds": 0})

    stats = run_worker("http://c", KEY, lambda spec, fetch: computed.append(spec) or b"",
                       threads=1, determinism_class="cls", stop=stop, backoff=0.001,
                       client=httpx.Client(transport=httpx.MockTransport(handler)))
    assert computed == [] and stats.errors == 1 and stats.commits == 0
    assert calls == ["/v1/lease", "/v1/lease"]


def test_lost_answers_to_commit_and_reveal_are_retried_safely():
    stop = threading.Event()
    script = {"/v1/commit": [httpx.Response(502), _error(409, "already_committed")],
              "/v1/reveal": [_error(409, "reveal_too_early"), httpx.Response(502),
                             _error(409, "already_revealed")]}
    leases = [httpx.Response(200, json=_lease())]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/lease":
            if leases:
                return leases.pop(0)
            stop.set()
            return httpx.Response(200, json={"lease": None, "retry_after_seconds": 0})
        return script[request.url.path].pop(0)

    stats = run_worker("http://c", KEY, lambda spec, fetch: b"result", threads=1,
                       determinism_class="cls", stop=stop, backoff=0.001,
                       client=httpx.Client(transport=httpx.MockTransport(handler)))
    assert (stats.commits, stats.reveals, stats.errors) == (1, 1, 0)
    assert script == {"/v1/commit": [], "/v1/reveal": []}


def test_the_blob_cache_keeps_verified_blobs_across_leases_within_its_byte_limit():
    from databright.market.worker import BlobCache

    cache = BlobCache(limit=10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.get("a") == b"1234"  # a is now the most recently used
    cache.put("c", b"9999")  # 12 bytes > 10: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") == b"1234" and cache.get("c") == b"9999"
    assert cache.size == 8
    cache.put("huge", b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get("huge") is None and cache.size == 8
