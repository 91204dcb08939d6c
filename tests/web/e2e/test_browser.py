"""The web app in a real Chromium with an injected EIP-1193 test wallet, as a user uses it:
sign in with Ethereum, vote on a proposal, comment, finalize, withdraw dividends; a second
browser sees the comment and the new tally; a wrong-signer login and a replayed nonce are
refused. Each main page is written to tests/web/e2e/screenshots/.

The server runs in this process (uvicorn on 127.0.0.1) and is the embedded chain's single
writer; the wallet signs with the account's key and sends through the server's ``/rpc``.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from playwright.sync_api import expect

from databright.chain.accounts import Keystore
from tests.web.e2e.browser_wallet import BrowserWallet
from tests.web.web_world import PASSWORD, Served

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def served(web_home):
    with Served(web_home.home, sync_seconds=0.3) as s:
        yield s


def _key(home, name: str) -> bytes:
    return bytes(Keystore(home / "keystore").unlock(name, PASSWORD).key)


def _page(browser, served, key: bytes | None):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    wallet = None
    if key is not None:
        wallet = BrowserWallet(key, served.url + "/rpc")
        wallet.install(page)
    return context, page, wallet


def _sign_in(page, served, wallet) -> None:
    page.goto(served.url + "/")
    page.click("#sign-in")
    expect(page.locator(f'[data-address="{wallet.address}"]')).to_be_visible()


def _api(page, served, path: str) -> dict:
    response = page.request.get(served.url + path, headers={"accept": "application/json"})
    assert response.ok, (path, response.status, response.text())
    return response.json()


def _until(check, what: str, seconds: float = TIMEOUT_MS / 1000):
    """Poll ``check()`` (an API read) until it is truthy; its value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_sign_in_vote_comment_finalize_withdraw(browser, served, web_home, screenshots):
    alice = _key(web_home.home, "alice")
    context, page, wallet = _page(browser, served, alice)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text
            else None)
    _, open_id = web_home.proposals

    # sign in: the wallet was discovered (EIP-6963), asked for an account and signed EIP-4361
    _sign_in(page, served, wallet)
    assert wallet.signed_messages and "wants you to sign in with your Ethereum account" in \
        wallet.signed_messages[0]
    me = _api(page, served, "/api/auth/me")
    assert me["signed_in"] and me["address"] == wallet.address and me["kind"] == "wallet"
    page.screenshot(path=str(screenshots / "datasets.png"), full_page=True)

    # vote yes on the open proposal from its page
    page.goto(f"{served.url}/proposals/{open_id}")
    page.screenshot(path=str(screenshots / "proposal.png"), full_page=True)
    before = _api(page, served, f"/api/proposals/{open_id}")
    with page.expect_navigation():  # app.js reloads once it is mined and indexed
        page.click('[data-action="vote"][data-support="true"]')
    after = _until(lambda: (p := _api(page, served, f"/api/proposals/{open_id}"))["viewer_vote"]
                   and p, "the vote in the index")
    assert after["viewer_vote"]["support"] is True
    assert int(after["tally"]["yes"]) > int(before["tally"]["yes"]) == 0
    assert wallet.sent, "the vote was sent by the wallet"

    # comment, signed in the wallet
    page.goto(f"{served.url}/proposals/{open_id}")
    text = "Looks good to me: **9 suspects** flagged, but the gain is real."
    form = page.locator('#discussion form.comment-form[data-mode="new"]')
    form.locator("textarea[name=body]").fill(text)
    signed_before = len(wallet.signed_messages)
    form.locator("button[type=submit]").click()
    expect(page.locator("#discussion .comment-body strong")).to_have_text("9 suspects")
    assert len(wallet.signed_messages) == signed_before + 1
    comments = _api(page, served, f"/api/proposals/{open_id}/comments")
    mine = [c for c in comments["comments"] if c["author"] == wallet.address]
    assert mine and mine[0]["body"] == text

    # finalize: alice's yes is a majority of the snapshot supply, so the outcome is decided
    page.goto(f"{served.url}/proposals/{open_id}")
    with page.expect_navigation():  # app.js reloads once it is mined and indexed
        page.click('[data-action="finalize"]')
    _until(lambda: _api(page, served, f"/api/proposals/{open_id}")["status"] == "accepted",
           "the proposal accepted in the index")
    page.goto(f"{served.url}/proposals/{open_id}")
    expect(page.locator("body")).to_contain_text("accepted")

    # withdraw every dividend waiting, from the dashboard
    page.goto(served.url + "/dashboard")
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
    board = _api(page, served, "/api/dashboard")
    waiting = int(board["total_wei"])
    assert waiting > 0
    balance_before = int(wallet.rpc("eth_getBalance", [wallet.address, "latest"]), 16)
    sent_before = len(wallet.sent)
    with page.expect_navigation():  # app.js reloads once it is mined and indexed
        page.click('[data-action="withdraw"]')
    _until(lambda: int(_api(page, served, "/api/dashboard")["total_wei"]) == 0,
           "nothing left to withdraw")
    balance_after = int(wallet.rpc("eth_getBalance", [wallet.address, "latest"]), 16)
    gas_bound = 10**16  # the withdrawals' gas on the embedded chain is far below 0.01 ETH
    assert balance_after - balance_before > waiting - gas_bound
    assert len(wallet.sent) > sent_before

    # a second browser, signed out, sees the comment and the new tally
    other, page2, _ = _page(browser, served, None)
    page2.goto(f"{served.url}/proposals/{open_id}")
    expect(page2.locator("#discussion .comment-body strong")).to_have_text("9 suspects")
    expect(page2.locator("body")).to_contain_text("accepted")
    tally = _api(page2, served, f"/api/proposals/{open_id}")["tally"]
    assert tally == after["tally"] or int(tally["yes"]) == int(after["tally"]["yes"])
    for name, path in (("dataset", "/datasets/digits"), ("models", "/models"),
                       ("compute", "/compute")):
        page2.goto(served.url + path)
        page2.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    other.close()
    context.close()
    assert not errors, errors


def test_wrong_signer_login_is_refused(browser, served, web_home):
    context, page, wallet = _page(browser, served, _key(web_home.home, "bob"))
    wallet.mode = "wrong-signer"
    page.goto(served.url + "/")
    page.click("#sign-in")
    expect(page.locator("#flash.error")).to_contain_text("signed it")
    assert _api(page, served, "/api/auth/me")["signed_in"] is False
    expect(page.locator("#sign-in")).to_be_visible()
    context.close()


def test_replayed_nonce_is_refused(browser, served, web_home):
    context, page, wallet = _page(browser, served, _key(web_home.home, "carol"))
    logins: list[str] = []
    page.on("request", lambda r: logins.append(r.post_data or "")
            if r.url.endswith("/api/auth/login") else None)
    _sign_in(page, served, wallet)
    assert len(logins) == 1
    body = json.loads(logins[0])
    # the same signed message, sent again from anywhere, is refused: its nonce was used
    replay = httpx.post(served.url + "/api/auth/login", json=body, timeout=30)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "siwe_nonce_used"
    assert "databright_session" not in replay.cookies
    context.close()
