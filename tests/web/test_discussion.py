"""The discussion over HTTP on the populated home: signed comments from wallet and local
sessions, refusals with their status, hostile bodies escaped in the fragment, replies, edits with
verifiable history, pages, the rate limit shared by two server processes' worth of contexts,
shareholders' weight, and comments surviving ``databright index rebuild``."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select

from databright.chain.signatures import sign_personal
from databright.home import Home
from databright.index.cache import DatasetRow, HolderRow
from databright.index.web import WebSession
from databright.market import discussion as dm
from databright.web.app import WebContext, create_app
from databright.web.app.sessions import COOKIE
from tests.cli.conftest import PASSWORD
from tests.market.test_markdown import assert_inert, scan
from tests.web.web_world import Served

HOSTILE = [
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    '"><svg onload=alert(1)>',
    "<b onmouseover=alert(1)>raw html</b>",
    "</textarea><script>alert(1)</script>",
    "</pre><img src=x onerror=alert(2)>",
]


#: tests that run with the real rate limits
REAL_LIMITS = {"test_the_rate_limit_is_counted_in_the_database_across_contexts"}


class Server:
    """The module's served app, which the last test stops before rebuilding the index."""

    def __init__(self, home):
        self.served = Served(home, sync_seconds=0)
        self.running = False

    def start(self):
        self.served.__enter__()
        self.running = True
        return self

    def stop(self):
        if self.running:
            self.served.__exit__(None, None, None)
            self.running = False


@pytest.fixture(scope="module")
def server(web_home):
    srv = Server(web_home.home).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _generous_limits(request, monkeypatch):
    # Most tests post more than 5 a minute as the same account; the rate-limit test restores them.
    if request.node.originalname not in REAL_LIMITS:
        monkeypatch.setattr(dm, "RATE_LIMITS", ((60, 10_000), (86_400, 10_000)))


def account(ctx, name):
    return ctx.dep.keystore.unlock(name, PASSWORD)


def sign_in(ctx, name, *, kind="wallet", base_url=None, app=None):
    """A signed-in client for keystore account ``name`` (the session row written directly, as the
    auth routes would write it). ``kind='local'`` also hands the server the unlocked key."""
    import httpx

    acct = account(ctx, name)
    token, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    sha = hashlib.sha256(token.encode()).hexdigest()
    with ctx.dep.index.session() as s:
        s.add(WebSession(token_sha256=sha, address=acct.address, kind=kind, csrf=csrf,
                         chain_id=ctx.config.chain_id, account_name=name,
                         expires_at=datetime.now(UTC) + timedelta(hours=1)))
    if kind == "local":
        ctx.local_keys[sha] = acct
    client = (TestClient(app) if app is not None
              else httpx.Client(base_url=base_url, timeout=30))
    client.cookies.set(COOKIE, token)
    client.headers["X-CSRF-Token"] = csrf
    client.account = acct
    return client


@pytest.fixture(scope="module")
def bob(server):
    return sign_in(server.served.ctx, "bob", base_url=server.served.url)


@pytest.fixture(scope="module")
def carol(server):
    return sign_in(server.served.ctx, "carol", base_url=server.served.url)


def post_signed(client, target, body, *, parent_id=None, signer=None, path=None):
    draft = {"target": target, "body": body}
    if parent_id is not None:
        draft["parent_id"] = parent_id
    d = client.post("/api/comments/draft", json=draft)
    assert d.status_code == 200, d.text
    message = d.json()["message"]
    payload = {"body": body, "message": message,
               "signature": sign_personal((signer or client.account).key, message)}
    if parent_id is not None:
        payload["parent_id"] = parent_id
    kind, ident = target.split(":")
    return client.post(path or f"/api/{kind}s/{ident}/comments", json=payload)


def test_a_wallet_signed_comment_is_listed_and_verifies(server, bob):
    r = post_signed(bob, "proposal:2", "The flipped labels are **obvious** in the gallery.")
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    listing = server.served.client.get("/api/proposals/2/comments").json()
    (mine,) = [c for c in listing["comments"] if c["id"] == cid]
    assert mine["author"] == bob.account.address
    assert "<strong>obvious</strong>" in mine["html"]
    verify = server.served.client.get(f"/api/comments/{cid}/verify").json()
    assert verify["valid"] and verify["versions"][0]["signer"] == bob.account.address
    fragment = server.served.client.get("/proposals/2/discussion").text
    assert f'id="comment-{cid}"' in fragment and f"/api/comments/{cid}/verify" in fragment


def test_a_signature_by_another_account_is_refused_401(bob, carol):
    r = post_signed(bob, "proposal:2", "bob's words, carol's key", signer=carol.account)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "wrong_signer"


def test_a_message_for_another_target_is_refused(bob):
    d = bob.post("/api/comments/draft", json={"target": "dataset:digits", "body": "where?"})
    message = d.json()["message"]
    r = bob.post("/api/proposals/2/comments", json={
        "body": "where?", "message": message,
        "signature": sign_personal(bob.account.key, message)})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "message_mismatch"


def test_writes_need_a_session_and_its_csrf_token(server, bob):
    anon = server.served.client
    assert anon.post("/api/proposals/2/comments", json={"body": "x"}).status_code == 401
    assert anon.post("/api/comments/draft",
                     json={"target": "proposal:2", "body": "x"}).status_code == 401
    r = bob.post("/api/proposals/2/comments", json={"body": "x"},
                 headers={"X-CSRF-Token": "forged"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "csrf")
    assert anon.patch("/api/comments/1", json={"body": "x"}).status_code == 401


def test_a_local_session_posts_a_body_and_the_server_signs_with_its_key(server):
    alice = sign_in(server.served.ctx, "alice", kind="local", base_url=server.served.url)
    r = alice.post("/api/datasets/digits/comments", json={"body": "Seed curated by me."})
    assert r.status_code == 201, r.text
    comment = r.json()["comment"]
    assert comment["author"] == alice.account.address
    assert comment["target"] == "dataset:digits"
    verify = server.served.client.get(f"/api/comments/{comment['id']}/verify").json()
    assert verify["valid"] and verify["versions"][0]["signer"] == alice.account.address


def test_a_wallet_session_must_send_its_wallets_signature(bob):
    r = bob.post("/api/proposals/2/comments", json={"body": "no signature"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "wallet_signs")


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_are_escaped_everywhere_in_the_fragment(server, bob, body):
    r = post_signed(bob, "proposal:2", body)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert_inert(r.json()["comment"]["html"])
    html = bob.get("/proposals/2/discussion?order=newest").text
    start = html.index(f'id="comment-{cid}"')
    article = html[start:html.index("</article>", start)]
    found = scan(article)
    assert "script" not in found.tags and "img" not in found.tags and "svg" not in found.tags
    assert not [a for a in found.attrs if a[1].startswith("on")]
    assert not [a for a in found.attrs if "javascript:" in a[2].lower()]
    # the raw body is in the edit form's textarea and the signed message, escaped
    assert article.count(str(escape(body))) >= 2
    # the whole fragment's only script is our own file
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/discussion.js" defer>']


def test_replies_edits_history_and_author_only_edits(server, bob, carol):
    top = post_signed(carol, "proposal:2", "Items 7 and 9 look mislabelled.").json()["id"]
    reply = post_signed(bob, "proposal:2", "Agreed.", parent_id=top)
    assert reply.status_code == 201, reply.text
    nested = carol.post("/api/comments/draft", json={
        "target": "proposal:2", "body": "Nested?", "parent_id": reply.json()["id"]})
    assert (nested.status_code, nested.json()["error"]["code"]) == (400, "invalid_reply")

    d = bob.post("/api/comments/draft", json={"comment_id": top, "body": "mine now"})
    assert (d.status_code, d.json()["error"]["code"]) == (403, "not_author")
    d = carol.post("/api/comments/draft", json={"comment_id": top,
                                                "body": "Items 7, 9 and 12 look mislabelled."})
    message = d.json()["message"]
    assert "version: 1" in message and f"comment: {top}" in message
    sig = sign_personal(carol.account.key, message)
    stolen = bob.patch(f"/api/comments/{top}", json={"body": "x", "message": message,
                                                      "signature": sig})
    assert stolen.status_code == 403
    r = carol.patch(f"/api/comments/{top}", json={
        "body": "Items 7, 9 and 12 look mislabelled.", "message": message, "signature": sig})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1

    got = server.served.client.get(f"/api/comments/{top}").json()
    assert got["body"] == "Items 7, 9 and 12 look mislabelled."
    assert [(v["version"], v["body"]) for v in got["history"]] == [
        (0, "Items 7 and 9 look mislabelled.")]
    assert [r["body"] for r in got["replies"]] == ["Agreed."]
    verify = server.served.client.get(f"/api/comments/{top}/verify").json()
    assert verify["valid"] and [v["version"] for v in verify["versions"]] == [0, 1]
    fragment = carol.get("/proposals/2/discussion?order=newest").text
    assert "edited 1×" in fragment
    start = fragment.index(f'id="comment-{top}"')
    history = fragment[fragment.index('class="history"', start):]
    history = history[:history.index("</details>")]
    assert "version 0" in history and "Items 7 and 9 look mislabelled." in history


def test_pages_over_http_with_hx_get_links(server, bob):
    for i in range(21):
        assert post_signed(bob, "dataset:digits", f"page filler {i}").status_code == 201
    api = server.served.client
    first = api.get("/api/datasets/digits/comments").json()
    assert first["per_page"] == 20 and len(first["comments"]) == 20 and first["pages"] >= 2
    last = api.get(f"/api/datasets/digits/comments?page={first['pages']}").json()
    assert 1 <= len(last["comments"]) <= 20
    beyond = api.get(f"/api/datasets/digits/comments?page={first['pages'] + 1}").json()
    assert beyond["comments"] == []
    assert api.get("/api/datasets/digits/comments?per_page=101").status_code == 422
    assert api.get("/api/datasets/digits/comments?page=0").status_code == 422
    fragment = api.get("/datasets/digits/discussion").text
    assert 'hx-get="/datasets/digits/discussion?page=2&amp;order=oldest"' in fragment
    assert 'hx-target="#discussion"' in fragment
    oldest = first["comments"][0]["id"]
    focused = api.get(f"/datasets/digits/discussion?order=newest&focus={oldest}").text
    assert f'id="comment-{oldest}"' in focused and f"page {first['pages']} of" in focused
    assert "Sign in to comment." in fragment  # anonymous: no form
    assert 'class="comment-form"' not in fragment


def test_unknown_targets_are_404(server, bob):
    api = server.served.client
    for path in ("/api/proposals/999/comments", "/api/datasets/nope/comments",
                 "/proposals/999/discussion", "/datasets/nope/discussion"):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    assert post_signed(bob, "proposal:2", "x", path="/api/proposals/999/comments"
                       ).status_code in (400, 404)
    assert bob.post("/api/comments/draft",
                    json={"target": "proposal:999", "body": "x"}).status_code == 404
    assert api.get("/api/comments/987654/verify").status_code == 404


def test_shareholders_comments_show_their_weight(server, bob, carol):
    ctx = server.served.ctx
    with ctx.read() as s:
        ds = s.scalar(select(DatasetRow).where(DatasetRow.name == "digits"))
        held = {row.account: row.balance for row in s.scalars(
            select(HolderRow).where(HolderRow.dataset_id == ds.dataset_id))}
    assert held.get(bob.account.address, 0) > 0  # proposal 1 was accepted
    assert held.get(carol.account.address, 0) == 0  # proposal 2 is still open
    b = post_signed(bob, "proposal:2", "I hold shares.").json()
    c = post_signed(carol, "proposal:2", "I hold none.").json()
    expected = held[bob.account.address] * 10_000 // ds.total_supply
    assert b["comment"]["weight_bps"] == expected and c["comment"]["weight_bps"] is None
    html = server.served.client.get("/proposals/2/discussion?order=newest").text
    bob_article = html[html.index(f'id="comment-{b["id"]}"'):]
    bob_article = bob_article[:bob_article.index("</article>")]
    carol_article = html[html.index(f'id="comment-{c["id"]}"'):]
    carol_article = carol_article[:carol_article.index("</article>")]
    pct = f"{expected / 100:.2f}".rstrip("0").rstrip(".")
    assert f"holds {pct}%" in bob_article
    assert "holds" not in carol_article


SHELL = """<!doctype html><html><head><meta charset="utf-8">
<meta name="csrf-token" content="{csrf}">
<meta name="htmx-config" content='{{"includeIndicatorStyles": false}}'><link rel="stylesheet" href="/static/app.css">
<script src="/static/htmx.min.js" defer></script></head><body><main>
<section id="discussion" hx-get="{fragment}" hx-trigger="load" hx-swap="innerHTML"></section>
</main></body></html>"""
#: stands in for app.js (the auth helper's): signMessage via Python's key, or null (local)
FAKE_DATABRIGHT = """window.DataBright = {
  csrf: () => document.querySelector('meta[name="csrf-token"]').content,
  signMessage: async (m) => await window.__pySign(m),
};"""


def _browser_page(browser, served, client, sign, fragment):
    """A page of the served origin holding the discussion section the real pages hold."""
    from databright.web.app.security import CSP

    context = browser.new_context()
    context.add_cookies([{"name": COOKIE, "value": client.cookies[COOKIE],
                          "url": served.url}])
    page = context.new_page()
    page.expose_function("__pySign", sign)
    page.add_init_script(FAKE_DATABRIGHT)
    html = SHELL.format(csrf=client.headers["X-CSRF-Token"], fragment=fragment)
    page.route(f"{served.url}/shell", lambda route: route.fulfill(
        status=200, body=html, headers={"Content-Type": "text/html",
                                        "Content-Security-Policy": CSP}))
    dialogs, csp = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: csp.append(m.text) if "Content Security" in m.text else None)
    page.goto(f"{served.url}/shell")
    return context, page, dialogs, csp


def test_in_chromium_discussion_js_signs_posts_replies_and_edits(server, bob, tmp_path, browser):
    """discussion.js in a real browser: draft → wallet signs → POST → htmx reloads the fragment;
    reply and edit the same way; a hostile body runs nothing; a local session's comment is
    signed by the server."""
    served = server.served
    key = bob.account.key
    context, page, dialogs, csp = _browser_page(
        browser, served, bob, lambda m: sign_personal(key, m), "/proposals/1/discussion")
    page.wait_for_selector("#comment-new-new")
    page.fill("#comment-new-new", "**from the browser** <img src=x onerror=alert(1)>")
    page.click("form[data-mode=new] button[type=submit]")
    page.wait_for_selector(".comment-body strong:has-text('from the browser')")
    cid = int(page.locator("article.comment").last.get_attribute("data-comment-id"))

    page.click(f"#comment-{cid} .comment-reply")
    page.fill(f"#comment-reply-{cid}", "replying *in place*")
    page.click(f"#comment-{cid} form[data-mode=reply] button[type=submit]")
    page.wait_for_selector(f"#comment-{cid} .replies em:has-text('in place')")

    page.click(f"#comment-{cid} > .comment-actions .comment-edit")
    page.fill(f"#comment-edit-{cid}", "**edited in the browser**")
    page.click(f"#comment-{cid} > form[data-mode=edit] button[type=submit]")
    page.wait_for_selector(f"#comment-{cid} .comment-body strong:has-text('edited')")
    assert "edited 1×" in page.inner_text(f"#comment-{cid} > .meta")
    page.screenshot(path=str(tmp_path / "discussion.png"), full_page=True)
    assert dialogs == [] and csp == []
    context.close()

    got = served.client.get(f"/api/comments/{cid}").json()
    assert got["body"] == "**edited in the browser**"
    assert got["history"][0]["body"].startswith("**from the browser**")
    assert [r["body"] for r in got["replies"]] == ["replying *in place*"]
    verify = served.client.get(f"/api/comments/{cid}/verify").json()
    assert verify["valid"] and {v["signer"] for v in verify["versions"]} == {
        bob.account.address}

    alice = sign_in(served.ctx, "alice", kind="local", base_url=served.url)
    context, page, dialogs, _ = _browser_page(browser, served, alice, lambda m: None,
                                              "/datasets/digits/discussion")
    page.wait_for_selector("#comment-new-new")
    page.fill("#comment-new-new", "local account, server-signed")
    page.click("form[data-mode=new] button[type=submit]")
    page.wait_for_selector(".comment-body:has-text('server-signed')")
    context.close()
    listing = served.client.get("/api/datasets/digits/comments?order=newest").json()
    newest = listing["comments"][0]
    assert (newest["body"], newest["author"]) == ("local account, server-signed",
                                                  alice.account.address)


def test_the_rate_limit_is_counted_in_the_database_across_contexts(server):
    """Two contexts (as two server processes behind a proxy) share dave's five a minute."""
    other_ctx = WebContext(Home(server.served.ctx.home.path), sync_seconds=0)
    other_app = create_app(other_ctx, manage=False)
    try:
        here = sign_in(server.served.ctx, "dave", base_url=server.served.url)
        there = sign_in(other_ctx, "dave", app=other_app)
        for i in range(5):
            client = here if i % 2 else there
            assert post_signed(client, "proposal:2", f"dave {i}").status_code == 201
        for client in (here, there):
            r = post_signed(client, "proposal:2", "one too many")
            assert r.status_code == 429, r.text
            err = r.json()["error"]
            assert err["code"] == "rate_limited" and 1 <= err["retry_after"] <= 60
    finally:
        other_ctx.dep.close()


def test_comments_survive_an_index_rebuild(server, web_home):
    before = server.served.client.get("/api/proposals/2/comments?per_page=100").json()
    ids = [c["id"] for c in before["comments"]]
    assert len(ids) >= 5
    server.stop()
    web_home("index", "rebuild")
    ctx = WebContext(Home(web_home.home), sync_seconds=0)
    try:
        with TestClient(create_app(ctx, manage=False)) as client:
            after = client.get("/api/proposals/2/comments?per_page=100").json()
            assert [c["id"] for c in after["comments"]] == ids
            assert [c["body"] for c in after["comments"]] == [
                c["body"] for c in before["comments"]]
            for cid in ids:
                assert client.get(f"/api/comments/{cid}/verify").json()["valid"], cid
    finally:
        ctx.dep.close()
