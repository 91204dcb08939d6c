"""The coordinator's worker API: every refusal of the issue with its status and one JSON shape
(unregistered, banned, replayed, stale, bad signature, oversize, malformed), commit before
reveal, blobs only for live leases, and nothing ever unpickled."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from databright.web.coordinator_server import ERROR_CODES, Limits
from tests.web.coordinator_world import (
    ADDR,
    ITEM0,
    ITEM1,
    KEYS,
    SECRET,
    WEIGHTS,
    build_world,
    expect,
    now_ts,
    payload,
    sha,
)

SPEC = json.dumps({"task": "t1", "kind": "grad"}, sort_keys=True).encode()
TASK_CIDS = frozenset({WEIGHTS, ITEM0, ITEM1})


@pytest.fixture
def world():
    w = build_world()
    w.board.post("t1", SPEC, TASK_CIDS, (ADDR["alice"], ADDR["bob"], ADDR["carol"]),
                 lease_seconds=30)
    return w


def test_a_lease_carries_the_spec_bytes_its_cids_and_time_left(world):
    lease = world.lease("alice")
    assert base64.b64decode(lease["spec_b64"]) == SPEC
    assert lease["spec_sha256"] == sha(SPEC)
    assert lease["task_id"] == "t1" and set(lease["cids"]) == TASK_CIDS
    assert lease["deadline_seconds"] == 30.0
    assert world.lease("alice") is None  # one lease per task and account
    r = world.call("dave", "POST", "/v1/lease", b"{}")
    assert r.json() == {"lease": None, "retry_after_seconds": 1.0}


def test_commit_reveal_round(world):
    leases = {n: world.lease(n) for n in ("alice", "bob", "carol")}
    good = payload(1.0)
    r = world.commit("alice", leases["alice"]["lease_id"], sha(good))
    assert r.json() == {"lease_id": leases["alice"]["lease_id"], "reveals_open": False}
    body = expect(world.reveal("alice", leases["alice"]["lease_id"], good), "reveal_too_early")
    assert body["retry_after_seconds"] == 1.0
    expect(world.reveal("bob", leases["bob"]["lease_id"], good), "not_committed")
    world.commit("bob", leases["bob"]["lease_id"], sha(good))
    assert world.commit("carol", leases["carol"]["lease_id"], sha(good)).json()["reveals_open"]
    expect(world.commit("carol", leases["carol"]["lease_id"], sha(good)), "already_committed")
    expect(world.reveal("alice", leases["alice"]["lease_id"], payload(2.0)), "reveal_mismatch")
    for name in ("alice", "bob", "carol"):
        r = world.reveal(name, leases[name]["lease_id"], good)
        assert r.status_code == 200 and r.json()["accepted"] is True
    expect(world.reveal("alice", leases["alice"]["lease_id"], good), "already_revealed")
    assert world.board.results("t1") == {ADDR[n]: good for n in ("alice", "bob", "carol")}


def test_someone_elses_lease_is_unknown(world):
    lease = world.lease("alice")
    expect(world.commit("bob", lease["lease_id"], sha(b"x")), "unknown_lease")


def test_an_expired_lease_is_refused_and_goes_to_the_spare(world):
    world.spares.append(ADDR["dave"])
    lease = world.lease("alice")
    world.clock.now += 31
    expect(world.commit("alice", lease["lease_id"], sha(b"x")), "lease_expired")
    expect(world.call("alice", "GET", f"/v1/blobs/{ITEM0}"), "not_leased")
    assert world.lease("dave")["task_id"] == "t1"


def test_blobs_only_for_live_leases(world):
    expect(world.call("alice", "GET", f"/v1/blobs/{ITEM0}"), "not_leased")
    world.lease("alice")
    r = world.call("alice", "GET", f"/v1/blobs/{ITEM0}")
    assert r.status_code == 200 and r.content == b"item-0"
    expect(world.call("alice", "GET", f"/v1/blobs/{SECRET}"), "not_leased")
    expect(world.call("bob", "GET", f"/v1/blobs/{ITEM0}"), "not_leased")  # bob has no lease yet
    assert world.fetched == [ITEM0]


def test_a_blob_the_coordinator_lacks_is_unknown():
    w = build_world()
    missing = "bafkrei" + "a" * 51 + "a"
    w.board.post("t", SPEC, frozenset({missing}), (ADDR["alice"],), 30)
    w.lease("alice")
    expect(w.call("alice", "GET", f"/v1/blobs/{missing}"), "unknown_blob")


def test_a_failure_of_the_coordinators_store_is_its_own_error():
    w = build_world()
    w.board.post("t", SPEC, TASK_CIDS, (ADDR["alice"],), 30)
    w.lease("alice")
    w.corrupt_raises = True
    expect(w.call("alice", "GET", f"/v1/blobs/{ITEM0}"), "internal")


def test_unregistered_and_banned_workers_are_refused(world):
    body = expect(world.call("stranger", "POST", "/v1/lease", b"{}"), "forbidden")
    assert "unregistered" in body["error"]["message"]
    world.banned.add(ADDR["alice"])
    body = expect(world.call("alice", "POST", "/v1/lease", b"{}"), "forbidden")
    assert "banned" in body["error"]["message"]
    assert world.board.status()[0].replicas[ADDR["alice"]] == "assigned"  # nothing leased


def test_a_replayed_request_is_refused_and_not_done_twice(world):
    lease = world.lease("alice")
    body = f'{{"lease_id": "{lease["lease_id"]}", "sha256": "{sha(b"r")}"}}'.encode()
    first = world.call("alice", "POST", "/v1/commit", body, nonce="ab" * 16)
    assert first.status_code == 200
    expect(world.call("alice", "POST", "/v1/commit", body, nonce="ab" * 16), "replayed_nonce")
    # the same nonce from another account is that account's own
    assert world.call("bob", "POST", "/v1/lease", b"{}", nonce="ab" * 16).status_code == 200


@pytest.mark.parametrize("skew,ok", [(-130, False), (130, False), (-110, True), (110, True)])
def test_timestamps_outside_the_window_are_refused(world, skew, ok):
    r = world.call("alice", "POST", "/v1/lease", b"{}", timestamp=now_ts() + skew)
    if ok:
        assert r.status_code == 200
    else:
        expect(r, "stale_timestamp")


def test_bad_and_missing_signatures_are_refused(world):
    # signed by mallory's key, claiming to be alice
    expect(world.call("alice", "POST", "/v1/lease", b"{}", key=KEYS["mallory"]),
           "bad_signature")
    expect(world.client.post("/v1/lease", content=b"{}"), "missing_signature")
    # a body changed after signing
    from databright.chain.requests import sign_request

    headers = sign_request(KEYS["alice"], "POST", "/v1/lease", b"{}")
    expect(world.client.post("/v1/lease", content=b'{"x": 1}', headers=headers),
           "bad_signature")
    # a path changed after signing: a lease request replayed as a commit
    headers = sign_request(KEYS["alice"], "POST", "/v1/lease", b"{}")
    expect(world.client.post("/v1/commit", content=b"{}", headers=headers), "bad_signature")
    assert world.board.status()[0].replicas[ADDR["alice"]] == "assigned"


def test_oversize_bodies_are_refused_before_anything_else():
    w = build_world(limits=Limits(max_json_bytes=256), max_payload=4096)
    w.board.post("t", SPEC, TASK_CIDS, (ADDR["alice"],), 30)
    lease = w.lease("alice")
    expect(w.call("alice", "POST", "/v1/lease", b" " * 300), "request_too_large")
    big = save({"grad.w": np.zeros(2000, dtype=np.float32)})
    assert len(big) > 4096
    w.commit("alice", lease["lease_id"], sha(big))
    expect(w.reveal("alice", lease["lease_id"], big), "payload_too_large")
    # even unsigned: the size is judged first, from the declared length
    expect(w.client.post(f"/v1/reveal?lease={lease['lease_id']}", content=big),
           "payload_too_large")


def test_malformed_requests_are_refused(world):
    lease = world.lease("alice")
    lid = lease["lease_id"]
    expect(world.call("alice", "POST", "/v1/commit", b"not json"), "malformed")
    expect(world.call("alice", "POST", "/v1/commit", b"[1, 2]"), "malformed")
    expect(world.call("alice", "POST", "/v1/commit", f'{{"lease_id": "{lid}"}}'.encode()),
           "malformed")
    expect(world.commit("alice", lid, "XYZ"), "malformed")
    expect(world.reveal("alice", "not-a-lease", payload()), "malformed")
    expect(world.client.get("/attestation?nonce=xyz"), "malformed")
    expect(world.call("bob", "POST", "/v1/lease", b'{"threads": "4"}'), "malformed")
    expect(world.call("bob", "POST", "/v1/lease", b'{"threads": 0}'), "malformed")


def test_a_pickle_is_refused_and_never_unpickled(world, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = pickle.dumps(Exploit())
    lease = world.lease("alice")
    world.commit("alice", lease["lease_id"], sha(evil))
    world.commit("bob", world.lease("bob")["lease_id"], sha(evil))
    world.commit("carol", world.lease("carol")["lease_id"], sha(evil))
    expect(world.reveal("alice", lease["lease_id"], evil), "malformed_payload")
    assert not marker.exists()
    assert world.board.results("t1") is None


@pytest.mark.parametrize("mutate", ["name", "offsets", "truncate", "trailing"])
def test_malformed_safetensors_are_refused(world, mutate):
    good = payload()
    size = int.from_bytes(good[:8], "little")
    header = json.loads(good[8:8 + size])
    data = good[8 + size:]
    if mutate == "name":
        header = {"weight" if k == "grad.w" else k: v for k, v in header.items()}
    elif mutate == "offsets":
        header["grad.w"]["data_offsets"] = [0, 20]
    if mutate in ("name", "offsets"):
        raw = json.dumps(header).encode()
        bad = len(raw).to_bytes(8, "little") + raw + data
    elif mutate == "truncate":
        bad = good[:-4]
    else:
        bad = good + b"\0" * 4
    lease = world.lease("alice")
    world.commit("alice", lease["lease_id"], sha(bad))
    expect(world.reveal("alice", lease["lease_id"], bad), "malformed_payload")


def test_attestation_answers_with_the_callers_nonce():
    w = build_world()
    nonce = os.urandom(32).hex()
    r = w.client.get(f"/attestation?nonce={nonce}")
    assert r.status_code == 200
    assert r.json() == {"nonce": nonce, "enclave_address": ADDR["alice"],
                        "evidence_b64": base64.b64encode(b"evidence:" +
                                                         bytes.fromhex(nonce)).decode()}


def test_unknown_routes_and_methods_answer_in_the_same_shape(world):
    expect(world.client.get("/v1/nothing"), "not_found")
    expect(world.client.get("/v1/lease"), "method_not_allowed")


def test_too_many_requests_in_a_window_are_refused():
    w = build_world(limits=Limits(max_nonces_per_address=3))
    for _ in range(3):
        assert w.call("alice", "POST", "/v1/lease", b"{}").status_code == 200
    expect(w.call("alice", "POST", "/v1/lease", b"{}"), "busy")


def test_status_shows_the_callers_leases_and_the_limits(world):
    lease = world.lease("alice")
    r = world.call("alice", "GET", "/v1/status")
    assert r.status_code == 200
    doc = r.json()
    assert doc["tasks"] == {"open": 1, "done": 0, "short_of_replicas": 0}
    assert doc["leases"] == [{"lease_id": lease["lease_id"], "state": "leased",
                              "deadline_seconds": 30.0}]
    assert doc["limits"]["clock_skew_seconds"] == 120
    assert doc["job"] == {}  # nothing published: no spot-checked job is running


def test_every_error_code_has_a_test():
    sources = "".join(p.read_text() for p in Path(__file__).parent.glob(
        "test_coordinator_server*.py"))
    # each refusal is asserted as expect(response, "code")
    tested = set(re.findall(r'"([a-z_]+)"\)', sources))
    assert set(ERROR_CODES) <= tested, set(ERROR_CODES) - tested


DOC = Path(__file__).resolve().parents[2] / "docs" / "compute-protocol.md"


def test_every_error_code_and_limit_is_documented_with_its_status():
    text = DOC.read_text()
    errors = text[text.index("## Errors"):text.index("## Limits")]
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", errors, flags=re.MULTILINE))
    assert {code: int(status) for code, status in rows.items()} == ERROR_CODES
    for name in Limits.__dataclass_fields__:
        assert f"| `{name}` |" in text, name


def test_the_documented_signing_example_verifies():
    from databright.chain.requests import recover_request

    text = DOC.read_text()
    body = re.search(r"with the body\n\n```\n(.+)\n```", text).group(1).encode()
    signature = re.search(r"signature:\s+(0x[0-9a-f]{130})", text).group(1)
    body_hash = re.search(r"body sha256:\s+([0-9a-f]{64})", text).group(1)
    assert hashlib.sha256(body).hexdigest() == body_hash
    headers = {"X-DataBright-Address": "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A",
               "X-DataBright-Nonce": "0123456789abcdef0123456789abcdef",
               "X-DataBright-Timestamp": "1764640800", "X-DataBright-Signature": signature}
    assert recover_request("POST", "/v1/commit", body, headers).address == headers[
        "X-DataBright-Address"]
    from databright.chain.requests import sign_request

    assert sign_request("0x" + "11" * 32, "POST", "/v1/commit", body,
                        nonce=headers["X-DataBright-Nonce"], timestamp=1764640800)[
        "X-DataBright-Signature"] == signature


def test_a_lease_request_waits_for_a_task_posted_while_it_waits():
    """Long polling: a worker asking before a step's task exists gets it the moment it is
    posted, not after its next poll; with nothing posted it gets an empty answer at the end."""
    import threading
    import time as _time

    w = build_world(limits=Limits(long_poll_seconds=5.0))
    timer = threading.Timer(0.3, lambda: w.board.post("late", SPEC, TASK_CIDS, (ADDR["bob"],),
                                                      lease_seconds=30))
    t0 = _time.monotonic()
    timer.start()
    lease = w.lease("bob")
    waited = _time.monotonic() - t0
    assert lease is not None and lease["task_id"] == "late"
    assert 0.25 <= waited < 4.0  # woken by the post, well before the 5 s deadline
    w2 = build_world(limits=Limits(long_poll_seconds=0.4, retry_after_seconds=0.1))
    t0 = _time.monotonic()
    r = w2.call("dave", "POST", "/v1/lease", b"{}")
    assert r.json() == {"lease": None, "retry_after_seconds": 0.1}
    assert _time.monotonic() - t0 >= 0.4
