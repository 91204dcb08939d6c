"""More of the market from a real Chromium: propose a batch by uploading an archive (the wallet
pays the stake), try a model with a prediction paid through a payment channel (the wallet opens
it and signs the EIP-712 voucher), and a local sign-in with a keystore account on the embedded
chain (the server signs that session's vote).
"""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from playwright.sync_api import expect

from databright.chain.accounts import Keystore
from tests.web.e2e.browser_wallet import BrowserWallet
from tests.web.web_world import PASSWORD, Served

TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def served(web_home):
    web_home("model", "attest", "1", as_="alice")  # try-it serves attested checkpoints only
    with Served(web_home.home, sync_seconds=0.3) as s:
        yield s


def _key(home, name: str) -> bytes:
    return bytes(Keystore(home / "keystore").unlock(name, PASSWORD).key)


def _signed_in(browser, served, key: bytes):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    wallet = BrowserWallet(key, served.url + "/rpc")
    wallet.install(page)
    page.goto(served.url + "/")
    page.click("#sign-in")
    expect(page.locator(f'[data-address="{wallet.address}"]')).to_be_visible()
    return context, page, wallet


def _json(page, served, path: str) -> dict:
    response = page.request.get(served.url + path, headers={"accept": "application/json"})
    assert response.ok, (path, response.status, response.text())
    return response.json()


def _archive(web_home) -> bytes:
    """A zip of 12 new digits laid out label/file."""
    folder = web_home.inputs / "browser-batch"
    if not folder.exists():
        from tests.conftest import _digit_folder

        _digit_folder(folder, 300, 12)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def test_propose_an_uploaded_archive(browser, served, web_home, screenshots):
    context, page, wallet = _signed_in(browser, served, _key(web_home.home, "bob"))
    before = {p["proposal_id"] for p in _json(page, served, "/api/datasets/digits")["proposals"]}
    page.goto(served.url + "/datasets/digits")
    page.set_input_files('#propose-form input[name="archive"]',
                         files=[{"name": "batch.zip", "mimeType": "application/zip",
                                 "buffer": _archive(web_home)}])
    with page.expect_navigation(timeout=TIMEOUT_MS):
        page.click('#propose-form button[type="submit"]')
    proposals = _json(page, served, "/api/datasets/digits")["proposals"]
    new = [p for p in proposals if p["proposal_id"] not in before]
    assert len(new) == 1 and new[0]["items"] == 12 and new[0]["status"] == "open"
    assert wallet.sent, "the stake was paid by the wallet"
    page.goto(f"{served.url}/proposals/{new[0]['proposal_id']}")
    expect(page.locator(".gallery figure")).to_have_count(12)
    page.screenshot(path=str(screenshots / "proposal-uploaded.png"), full_page=True)
    context.close()


def test_try_a_model_paying_through_a_channel(browser, served, web_home, screenshots):
    context, page, wallet = _signed_in(browser, served, _key(web_home.home, "carol"))
    page.goto(served.url + "/models")
    image = next((web_home.inputs / "b2").rglob("*.png"))
    form = page.locator("form.try-it-form[data-model-id='1']")
    form.locator('input[name="files"]').set_input_files(str(image))
    form.locator('button[type="submit"]').click()
    expect(form.locator(".try-it-result")).to_contain_text(image.name, timeout=TIMEOUT_MS)
    label = form.locator(".try-it-result").inner_text().split(":")[-1].strip()
    assert label in {str(d) for d in range(10)}
    expect(page.locator("#flash")).to_contain_text("Paid")
    # the wallet opened the channel (a transaction) and signed one voucher (typed data)
    assert len(wallet.sent) == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        channels = _json(page, served, "/api/models/1")["channels"]
        if any(c["payer"] == wallet.address for c in channels):
            break
        time.sleep(0.3)
    assert any(c["payer"] == wallet.address and c["status"] == "open" for c in channels)
    page.screenshot(path=str(screenshots / "models-try-it.png"), full_page=True)
    context.close()


def test_local_sign_in_votes_with_the_keystore(browser, served, web_home):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(served.url + "/signin")
    page.select_option("#local-account", "bob")
    page.fill("#local-password", "not-the-password")
    page.click("#local-signin")
    expect(page.locator("#flash.error")).to_contain_text("wrong password")
    page.fill("#local-password", PASSWORD)
    with page.expect_navigation():
        page.click("#local-signin")
    bob = Keystore(web_home.home / "keystore").address_of("bob")
    expect(page.locator(f'[data-address="{bob}"]')).to_be_visible()
    me = _json(page, served, "/api/auth/me")
    assert me["kind"] == "local" and me["account_name"] == "bob"
    # bob holds shares (proposal 1): his vote on the open proposal is signed by the server
    _, open_id = web_home.proposals
    page.goto(f"{served.url}/proposals/{open_id}")
    with page.expect_navigation(timeout=TIMEOUT_MS):
        page.click('[data-action="vote"][data-support="false"]')
    vote = _json(page, served, f"/api/proposals/{open_id}")["viewer_vote"]
    assert vote and vote["support"] is False
    context.close()
