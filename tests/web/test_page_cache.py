"""The page cache: anonymous visitors get the same page from memory until a sync, a write or
the ttl; signed-in viewers, nonces and transaction status never come from it."""

from __future__ import annotations

import time

import pytest
from eth_account import Account

from tests.web.web_world import Served, siwe_login


@pytest.fixture(scope="module")
def served(web_home):
    with Served(web_home.home, sync_seconds=0) as s:
        yield s


def _state(response) -> str | None:
    return response.headers.get("x-page-cache")


def test_anonymous_pages_are_served_from_the_cache(served):
    served.app.state.page_cache.clear()
    first = served.client.get("/datasets/digits", headers={"accept": "text/html"})
    again = served.client.get("/datasets/digits", headers={"accept": "text/html"})
    assert first.status_code == again.status_code == 200
    assert (_state(first), _state(again)) == ("miss", "hit")
    assert again.text == first.text
    # an htmx request for the same path is its own entry; so is the JSON twin
    fragment = served.client.get("/datasets/digits", headers={"accept": "text/html",
                                                              "hx-request": "true"})
    assert _state(fragment) == "miss"
    twin = served.client.get("/api/datasets/digits")
    again = served.client.get("/api/datasets/digits")
    assert (_state(twin), _state(again)) == ("miss", "hit") and twin.json() == again.json()


def test_a_new_block_or_a_write_drops_the_cached_pages(served):
    served.client.get("/proposals/2", headers={"accept": "text/html"})
    assert _state(served.client.get("/proposals/2", headers={"accept": "text/html"})) == "hit"
    served.ctx.wrote()
    assert _state(served.client.get("/proposals/2", headers={"accept": "text/html"})) == "miss"
    served.ctx.synced_block += 1  # what sync_now does when the chain moved
    assert _state(served.client.get("/proposals/2", headers={"accept": "text/html"})) == "miss"


def test_the_ttl_bounds_the_age_of_a_page(served):
    cache = served.app.state.page_cache
    old = cache.ttl
    cache.ttl = 0.2
    try:
        served.client.get("/proposals/1", headers={"accept": "text/html"})
        assert _state(served.client.get("/proposals/1", headers={"accept": "text/html"})) == "hit"
        time.sleep(0.3)
        assert _state(served.client.get("/proposals/1", headers={"accept": "text/html"})) == "miss"
    finally:
        cache.ttl = old


def test_nonces_and_errors_are_never_cached(served):
    a = served.client.get("/api/auth/nonce").json()["nonce"]
    b = served.client.get("/api/auth/nonce").json()["nonce"]
    assert a != b
    for _ in range(2):
        missing = served.client.get("/datasets/no-such-dataset")
        assert missing.status_code == 404 and _state(missing) == "miss"


def test_signed_in_viewers_never_get_a_cached_page(served):
    key = Account.create()
    siwe_login(served.client, key)
    try:
        page = served.client.get("/datasets/digits", headers={"accept": "text/html"})
        assert page.status_code == 200 and _state(page) is None
        assert key.address in page.text  # the header names the viewer: not a shared page
    finally:
        served.client.cookies.clear()
