"""Signing in over HTTP: Sign-In with Ethereum with a wallet's key, refusals with their codes,
sign-out behind CSRF, and the local sign-in of the embedded chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from eth_account import Account

from databright.chain.signatures import sign_personal
from databright.market import siwe
from databright.market.siwe import SiweMessage
from databright.web.app import WebContext
from tests.web.web_world import PASSWORD, Served

WALLET = Account.from_key("0x" + "42" * 32)


@pytest.fixture(scope="module")
def served(web_home):
    with Served(web_home.home, sync_seconds=0) as srv:
        yield srv


def message_for(client: httpx.Client, address: str, **over) -> str:
    fields = client.get("/api/auth/nonce").json()
    msg = SiweMessage(domain=fields["domain"], address=address, uri=fields["uri"],
                      chain_id=fields["chain_id"], nonce=fields["nonce"],
                      issued_at=fields["issued_at"], statement=fields["statement"],
                      expiration_time=fields["expiration_time"])
    for key, value in over.items():
        msg = SiweMessage(**{**msg.__dict__, key: value})
    return siwe.build(msg)


def siwe_login(client: httpx.Client, key, **over) -> httpx.Response:
    """Sign in ``client`` as ``key`` (an eth-account key); returns the login response."""
    account = Account.from_key(key.key if hasattr(key, "key") else key)
    text = message_for(client, account.address, **over)
    return client.post("/api/auth/login",
                       json={"message": text, "signature": sign_personal(account.key, text)})


def fresh_client(served) -> httpx.Client:
    return httpx.Client(base_url=served.url, timeout=30)


def test_siwe_login_sets_a_session_cookie(served):
    with fresh_client(served) as c:
        assert c.get("/api/auth/me").json() == {"signed_in": False, "address": None,
                                               "kind": None, "chain_id": None,
                                               "account_name": None, "expires_at": None}
        r = siwe_login(c, WALLET)
        assert r.status_code == 200, r.text
        assert r.json()["address"] == WALLET.address and r.json()["kind"] == "wallet"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        me = c.get("/api/auth/me").json()
        assert me["signed_in"] and me["address"] == WALLET.address
        assert me["chain_id"] == served.ctx.config.chain_id


def test_refusals_each_have_their_code(served):
    with fresh_client(served) as c:
        # another key signs a message naming WALLET's address
        text = message_for(c, WALLET.address)
        r = c.post("/api/auth/login", json={"message": text,
                                             "signature": sign_personal("0x" + "43" * 32, text)})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "siwe_wrong_signer")
        ok = message_for(c, WALLET.address)
        sig = sign_personal(WALLET.key, ok)
        assert c.post("/api/auth/login", json={"message": ok, "signature": sig}).status_code == 200
        r = c.post("/api/auth/login", json={"message": ok, "signature": sig})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "siwe_nonce_used")
        past = siwe.format_time(datetime.now(UTC) - timedelta(seconds=5))
        cases = {"siwe_expired": {"expiration_time": past},
                 "siwe_wrong_domain": {"domain": "evil.example"},
                 "siwe_wrong_chain": {"chain_id": 1},
                 "siwe_wrong_uri": {"uri": "http://evil.example"}}
        for code, over in cases.items():
            r = siwe_login(c, WALLET, **over)
            assert (r.status_code, r.json()["error"]["code"]) == (401, code), over
        r = c.post("/api/auth/login", content=b'{"message": "x", "signature": "y"}',
                   headers={"content-type": "text/plain"})
        assert r.status_code == 415  # a cross-site form cannot post JSON


def test_sign_out_needs_the_csrf_token(served):
    with fresh_client(served) as c:
        csrf = siwe_login(c, WALLET).json()["csrf"]
        r = c.post("/api/auth/logout")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "csrf")
        assert c.get("/api/auth/me").json()["signed_in"]
        assert c.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert not c.get("/api/auth/me").json()["signed_in"]


def test_local_sign_in_with_the_keystore(served):
    page = served.client.get("/signin", headers={"accept": "text/html"})
    assert page.status_code == 200 and "bob" in page.text and 'id="local-signin-form"' in page.text
    with fresh_client(served) as c:
        r = c.post("/api/auth/local", json={"account": "bob", "password": "nope"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "wrong_password")
        r = c.post("/api/auth/local", json={"account": "mallory", "password": PASSWORD})
        assert r.status_code == 401
        r = c.post("/api/auth/local", json={"account": "bob", "password": PASSWORD})
        assert r.status_code == 200, r.text
        bob = served.ctx.dep.keystore.address_of("bob")
        assert r.json() == {"address": bob, "csrf": r.json()["csrf"], "kind": "local",
                            "account_name": "bob"}
        assert c.get("/api/auth/me").json()["kind"] == "local"
        assert len(served.ctx.local_keys) >= 1
        c.post("/api/auth/logout", headers={"X-CSRF-Token": r.json()["csrf"]})
        assert not c.get("/api/auth/me").json()["signed_in"]


def test_wrong_passwords_are_rate_limited_per_account(served):
    with fresh_client(served) as c:
        codes = [c.post("/api/auth/local", json={"account": "carol", "password": "bad"})
                 .status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]
        # even the right password waits now; another account is not affected
        assert c.post("/api/auth/local", json={"account": "carol", "password": PASSWORD}
                      ).status_code == 429
        assert c.post("/api/auth/local", json={"account": "dave", "password": PASSWORD}
                      ).status_code == 200


def test_local_sign_in_is_refused_on_a_real_network(served, monkeypatch):
    monkeypatch.setattr(WebContext, "is_embedded", property(lambda self: False))
    assert served.client.get("/signin").status_code == 404
    r = served.client.post("/api/auth/local", json={"account": "bob", "password": PASSWORD})
    assert r.status_code == 404
