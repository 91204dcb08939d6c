"""A coordinator server over a task board with a movable clock, and signed-request helpers."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from eth_account import Account
from fastapi.testclient import TestClient
from safetensors.numpy import save

from databright.chain.requests import sign_request
from databright.compute.board import TaskBoard
from databright.errors import CorruptBlobError
from databright.storage.cid import cid_of_bytes
from databright.web.coordinator_server import ERROR_CODES, Limits, create_app

KEYS = {name: "0x" + f"{i + 1:02x}" * 32 for i, name in enumerate(
    ["alice", "bob", "carol", "dave", "erin", "mallory", "stranger"])}
ADDR = {name: Account.from_key(key).address for name, key in KEYS.items()}
BLOBS = {cid_of_bytes(b): b for b in (b"weights-v1", b"item-0", b"item-1", b"secret-item")}
WEIGHTS, ITEM0, ITEM1, SECRET = list(BLOBS)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def payload(value: float = 1.0, name: str = "grad.w") -> bytes:
    return save({name: np.full((2, 3), value, dtype=np.float32)})


def fake_compute(spec: bytes, fetch: Any) -> bytes:
    """A deterministic stand-in for a gradient: a digest of the spec and every blob it names."""
    h = hashlib.sha256(spec)
    for cid in json.loads(spec)["cids"]:
        h.update(fetch(cid))
    return save({"grad.w": np.frombuffer(h.digest(), dtype=np.uint8).astype(np.float32)})


def task_spec(task_id: str, cids: list[str], **extra: Any) -> bytes:
    doc = {"task": task_id, "cids": cids, "threads": 1, "determinism_class": "cls", **extra}
    return json.dumps(doc, sort_keys=True).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    board: TaskBoard
    clock: Clock
    client: TestClient
    banned: set[str] = field(default_factory=set)
    registered: set[str] = field(default_factory=set)
    spares: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)
    callers: list[str] = field(default_factory=list)
    corrupt_raises: bool = False
    app: Any = None

    def call(self, who: str, method: str, path: str, body: bytes = b"", *,
             key: str | None = None, **sign: Any) -> httpx.Response:
        headers = sign_request(key or KEYS[who], method, path, body, **sign)
        if key is not None:
            headers["X-DataBright-Address"] = ADDR[who]
        return self.client.request(method, path, content=body, headers=headers)

    def lease(self, who: str) -> dict[str, Any] | None:
        r = self.call(who, "POST", "/v1/lease", b"{}")
        assert r.status_code == 200, r.text
        return r.json()["lease"]

    def commit(self, who: str, lease_id: str, digest: str) -> httpx.Response:
        return self.call(who, "POST", "/v1/commit",
                         f'{{"lease_id": "{lease_id}", "sha256": "{digest}"}}'.encode())

    def reveal(self, who: str, lease_id: str, data: bytes) -> httpx.Response:
        return self.call(who, "POST", f"/v1/reveal?lease={lease_id}", data)


def build_world(limits: Limits | None = None, max_payload: int = 1 << 20,
                real_clock: bool = False) -> World:
    clock = Clock()
    world: World  # the callbacks below close over it

    def spare(task_id: str, failed: str) -> str | None:
        return world.spares.pop(0) if world.spares else None

    def authorize(address: str) -> str | None:
        world.callers.append(address)
        if address in world.banned:
            return "banned from this job for a wrong result"
        if address not in world.registered:
            return "unregistered: register with the ComputeMarket first"
        return None

    def fetch(cid: str) -> bytes:
        world.fetched.append(cid)
        if world.corrupt_raises:
            raise CorruptBlobError(f"the store holds bytes that are not {cid}")
        return b"tampered" if cid in world.corrupt else BLOBS[cid]

    board_clock = time.monotonic if real_clock else clock
    board = TaskBoard(board_clock, spare=spare, max_payload_bytes=max_payload)
    # the request-level tests want an empty answer at once (long polling has its own test)
    limits = limits or Limits(long_poll_seconds=0.0)
    app = create_app(board, fetch, authorize, limits=limits,
                     attestation=lambda nonce: (b"evidence:" + nonce, ADDR["alice"]))
    world = World(board, clock, TestClient(app, raise_server_exceptions=True))
    world.app = app
    world.registered = {ADDR[n] for n in ("alice", "bob", "carol", "dave", "erin", "mallory")}
    return world


def expect(response: httpx.Response, code: str) -> dict[str, Any]:
    """Assert a refusal: the one JSON shape, the code and its documented status."""
    assert response.status_code == ERROR_CODES[code], (response.status_code, response.text)
    body = response.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body)


def now_ts() -> int:
    return int(time.time())


