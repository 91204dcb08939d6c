"""The discussion domain over a real index database: signatures, edits, replies, pages, limits,
weights. Accounts are eth-account keys; the index rows a page needs are written directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, update

from databright.chain.signatures import BadSignature, sign_personal
from databright.errors import NotFoundError
from databright.index.cache import DatasetRow, HolderRow, ProposalRow
from databright.index.db import open_index
from databright.index.web import Comment, CommentEdit
from databright.market import discussion as dm
from tests.index.conftest import fresh_database_url

CHAIN = 31337
T0 = datetime(2026, 12, 2, 5, 0, 0, tzinfo=UTC)
ALICE = Account.from_key("0x" + "11" * 32)
BOB = Account.from_key("0x" + "22" * 32)
CAROL = Account.from_key("0x" + "33" * 32)
P2 = dm.Target("proposal", "2")
DIGITS = dm.Target("dataset", "digits")


def _dataset(ds_id: int, name: str, supply: int) -> DatasetRow:
    return DatasetRow(dataset_id=ds_id, name=name, symbol=name[:4].upper(),
                      share_token=f"0x{ds_id:040x}", initiator=ALICE.address, card_cid="bafy",
                      quorum_bps=3000, approval_bps=5000, voting_period=3600, stake=10**16,
                      reward_r0=1, reward_n0=1, evaluator=ALICE.address, total_supply=supply,
                      created_block=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request, tmp_path):
    """The index with two datasets, proposal 2 and three holders, on SQLite and PostgreSQL
    (``DATABRIGHT_TEST_PG_URL``, see tests/index/conftest.py)."""
    url, drop = fresh_database_url(request.param, tmp_path)
    request.addfinalizer(drop)
    idx = open_index(url)
    with idx.session() as s:
        s.add_all([_dataset(1, "digits", 1000), _dataset(2, "other", 500)])
        s.add(ProposalRow(proposal_id=2, dataset_id=1, proposer=BOB.address, manifest_cid="m",
                          merkle_root="0x" + "00" * 32, item_count=30, stake=10**16, snapshot=5,
                          deadline=10**10, status="open", created_block=5))
        s.add_all([
            HolderRow(share_token="0x" + "0" * 39 + "1", account=ALICE.address, dataset_id=1,
                      balance=750),
            HolderRow(share_token="0x" + "0" * 39 + "1", account=BOB.address, dataset_id=1,
                      balance=250),
            # bob's shares of another dataset do not weigh on digits' discussion
            HolderRow(share_token="0x" + "0" * 39 + "2", account=BOB.address, dataset_id=2,
                      balance=500),
        ])
    yield idx
    idx.close()


def say(index, who, body, *, target=P2, parent_id=None, now=T0, signer=None) -> int:
    """Draft, sign (by ``signer``, default the author) and post; returns the id."""
    with index.session() as s:
        d = dm.draft(s, chain_id=CHAIN, author=who.address, body=body, target=target,
                     parent_id=parent_id, now=now)
        return dm.post(s, chain_id=CHAIN, target=target, author=who.address, body=body,
                       parent_id=parent_id, message=d.message,
                       signature=sign_personal((signer or who).key, d.message), now=now)


def edit(index, who, comment_id, body, *, now, signer=None) -> int:
    with index.session() as s:
        d = dm.draft(s, chain_id=CHAIN, author=who.address, body=body, comment_id=comment_id,
                     now=now)
        return dm.edit(s, chain_id=CHAIN, comment_id=comment_id, author=who.address, body=body,
                       message=d.message, signature=sign_personal((signer or who).key, d.message),
                       now=now)


def test_the_signed_message_names_everything_it_binds():
    msg = dm.comment_message(chain_id=CHAIN, target=P2, author=BOB.address, comment_id=None,
                             parent_id=7, version=0, signed_at=T0, body="hi\nthere")
    assert msg.startswith(dm.HEADER + "\n")
    for line in (f"chain: {CHAIN}", "target: proposal:2", "comment: new", "parent: 7",
                 "version: 0", f"author: {BOB.address}", "time: 2026-12-02T05:00:00Z"):
        assert line in msg.split("\n")
    assert msg.endswith("\n\nhi\nthere")
    assert dm.signed_time(msg) == T0


def test_a_comment_is_stored_with_a_signature_that_recovers_its_author(index):
    cid = say(index, BOB, "Looks **good**")
    with index.session() as s:
        view = dm.get(s, cid)
        assert (view.author, view.body, view.version) == (BOB.address, "Looks **good**", 0)
        assert "<strong>good</strong>" in view.html
        checks = dm.verify_comment(s, cid, CHAIN)
    assert [(c.version, c.signer, c.valid) for c in checks] == [(0, BOB.address, True)]


def test_a_signature_by_someone_else_is_refused(index):
    with pytest.raises(dm.WrongSignerError):
        say(index, BOB, "I am bob", signer=CAROL)
    with index.session() as s:
        assert s.scalar(select(Comment.id)) is None


def test_a_message_signed_for_another_target_or_body_is_refused(index):
    with index.session() as s:
        d = dm.draft(s, chain_id=CHAIN, author=BOB.address, body="on the dataset",
                     target=DIGITS, now=T0)
        sig = sign_personal(BOB.key, d.message)
        with pytest.raises(dm.MessageMismatchError):
            dm.post(s, chain_id=CHAIN, target=P2, author=BOB.address, body="on the dataset",
                    parent_id=None, message=d.message, signature=sig, now=T0)
        with pytest.raises(dm.MessageMismatchError):
            dm.post(s, chain_id=CHAIN, target=DIGITS, author=BOB.address, body="changed",
                    parent_id=None, message=d.message, signature=sig, now=T0)
        with pytest.raises(dm.MessageMismatchError):  # another chain
            dm.post(s, chain_id=1, target=DIGITS, author=BOB.address, body="on the dataset",
                    parent_id=None, message=d.message, signature=sig, now=T0)
        # the right one goes through, once
        dm.post(s, chain_id=CHAIN, target=DIGITS, author=BOB.address, body="on the dataset",
                parent_id=None, message=d.message, signature=sig, now=T0)
        with pytest.raises(dm.DuplicateCommentError):
            dm.post(s, chain_id=CHAIN, target=DIGITS, author=BOB.address,
                    body="on the dataset", parent_id=None, message=d.message, signature=sig,
                    now=T0 + timedelta(seconds=5))


def test_a_stale_or_future_message_is_refused(index):
    with index.session() as s:
        d = dm.draft(s, chain_id=CHAIN, author=BOB.address, body="late", target=P2, now=T0)
        sig = sign_personal(BOB.key, d.message)
        for now in (T0 + timedelta(seconds=301), T0 - timedelta(seconds=301)):
            with pytest.raises(dm.StaleMessageError):
                dm.post(s, chain_id=CHAIN, target=P2, author=BOB.address, body="late",
                        parent_id=None, message=d.message, signature=sig, now=now)
        dm.post(s, chain_id=CHAIN, target=P2, author=BOB.address, body="late", parent_id=None,
                message=d.message, signature=sig, now=T0 + timedelta(seconds=299))


def test_a_malformed_or_high_s_signature_is_refused(index):
    with index.session() as s:
        d = dm.draft(s, chain_id=CHAIN, author=BOB.address, body="x", target=P2, now=T0)
        good = bytes.fromhex(sign_personal(BOB.key, d.message)[2:])
        n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
        s_val = int.from_bytes(good[32:64], "big")
        high = good[:32] + (n - s_val).to_bytes(32, "big") + bytes([good[64] ^ 1])
        for sig in ("0x1234", "0x" + high.hex()):
            with pytest.raises(BadSignature):
                dm.post(s, chain_id=CHAIN, target=P2, author=BOB.address, body="x",
                        parent_id=None, message=d.message, signature=sig, now=T0)


@pytest.mark.parametrize("body", ["", "   \n\t ", "x" * (dm.MAX_BODY_CHARS + 1), "nul\x00"])
def test_bodies_outside_the_limits_are_refused(index, body):
    with index.session() as s, pytest.raises(dm.InvalidBodyError):
        dm.draft(s, chain_id=CHAIN, author=BOB.address, body=body, target=P2, now=T0)


def test_the_longest_body_and_crlf_are_accepted(index):
    cid = say(index, BOB, "y" * dm.MAX_BODY_CHARS)
    crlf = say(index, BOB, "line one\r\nline two", now=T0 + timedelta(seconds=1))
    with index.session() as s:
        assert len(dm.get(s, cid).body) == dm.MAX_BODY_CHARS
        assert dm.get(s, crlf).body == "line one\nline two"
        assert all(c.valid for c in dm.verify_comment(s, crlf, CHAIN))


def test_unknown_targets_are_not_found(index):
    with index.session() as s:
        for target in (dm.Target("proposal", "99"), dm.Target("dataset", "nope")):
            with pytest.raises(NotFoundError):
                dm.draft(s, chain_id=CHAIN, author=BOB.address, body="x", target=target,
                         now=T0)
            with pytest.raises(NotFoundError):
                dm.list_page(s, target)


def test_replies_are_one_level_under_a_comment_of_the_same_target(index):
    top = say(index, ALICE, "top")
    reply = say(index, BOB, "a reply", parent_id=top, now=T0 + timedelta(seconds=1))
    with pytest.raises(dm.InvalidReplyError):
        say(index, CAROL, "nested", parent_id=reply, now=T0 + timedelta(seconds=2))
    with pytest.raises(dm.InvalidReplyError):
        say(index, CAROL, "elsewhere", target=DIGITS, parent_id=top,
            now=T0 + timedelta(seconds=3))
    with index.session() as s:
        page = dm.list_page(s, P2)
    assert page.total == 1
    assert [c.id for c in page.comments] == [top]
    assert [(r.id, r.parent_id, r.body) for r in page.comments[0].replies] == [
        (reply, top, "a reply")]


def test_an_edit_keeps_the_history_and_every_version_still_verifies(index):
    cid = say(index, BOB, "first")
    assert edit(index, BOB, cid, "second", now=T0 + timedelta(seconds=10)) == 1
    assert edit(index, BOB, cid, "third", now=T0 + timedelta(seconds=20)) == 2
    with index.session() as s:
        view = dm.get(s, cid)
        assert (view.body, view.version) == ("third", 2)
        assert [(v.version, v.body) for v in view.history] == [(0, "first"), (1, "second")]
        assert view.history[0].signed_at == T0
        checks = dm.verify_comment(s, cid, CHAIN)
    assert [(c.version, c.valid, c.signer) for c in checks] == [
        (0, True, BOB.address), (1, True, BOB.address), (2, True, BOB.address)]
    with index.session() as s:
        (listed,) = dm.list_page(s, P2).comments
    assert [(v.version, v.body) for v in listed.history] == [(0, "first"), (1, "second")]


def test_only_the_author_edits_and_an_old_edit_message_cannot_be_replayed(index):
    cid = say(index, BOB, "mine")
    with pytest.raises(dm.NotAuthorError):
        edit(index, CAROL, cid, "hijacked", now=T0 + timedelta(seconds=1))
    with index.session() as s:
        d = dm.draft(s, chain_id=CHAIN, author=BOB.address, body="v1", comment_id=cid,
                     now=T0 + timedelta(seconds=2))
    sig = sign_personal(BOB.key, d.message)
    with index.session() as s:
        dm.edit(s, chain_id=CHAIN, comment_id=cid, author=BOB.address, body="v1",
                message=d.message, signature=sig, now=T0 + timedelta(seconds=3))
    with index.session() as s, pytest.raises(dm.MessageMismatchError):  # it signed version 1
        dm.edit(s, chain_id=CHAIN, comment_id=cid, author=BOB.address, body="v1",
                message=d.message, signature=sig, now=T0 + timedelta(seconds=4))


def test_verify_catches_a_body_changed_in_the_database(index):
    cid = say(index, BOB, "what bob said")
    with index.session() as s:
        s.execute(update(Comment).where(Comment.id == cid).values(body="what bob did not say"))
    with index.session() as s:
        (check,) = dm.verify_comment(s, cid, CHAIN)
    assert not check.valid and check.signer == BOB.address


def test_pages_of_twenty_with_boundaries_and_both_orders(index):
    ids = [say(index, [ALICE, BOB, CAROL][i % 3], f"c{i}", now=T0 + timedelta(minutes=i))
           for i in range(45)]
    with index.session() as s:
        pages = [dm.list_page(s, P2, page=p) for p in (1, 2, 3, 4)]
        newest = dm.list_page(s, P2, page=1, order="newest")
        last_newest = dm.list_page(s, P2, page=3, order="newest")
        big = dm.list_page(s, P2, per_page=dm.MAX_PAGE_SIZE)
        with pytest.raises(dm.UsageError):
            dm.list_page(s, P2, per_page=dm.MAX_PAGE_SIZE + 1)
        with pytest.raises(dm.UsageError):
            dm.list_page(s, P2, page=0)
    assert [len(p.comments) for p in pages] == [20, 20, 5, 0]
    assert all(p.total == 45 and p.pages == 3 for p in pages)
    assert [c.id for p in pages for c in p.comments] == ids
    assert [c.id for c in newest.comments] == ids[::-1][:20]
    assert [c.id for c in last_newest.comments] == ids[:5][::-1]
    assert [c.id for c in big.comments] == ids


def test_the_page_of_a_comment_is_where_the_listing_shows_it(index):
    ids = [say(index, BOB, f"c{i}", now=T0 + timedelta(minutes=i)) for i in range(45)]
    reply = say(index, CAROL, "on c20", parent_id=ids[20], now=T0 + timedelta(hours=1))
    with index.session() as s:
        for order in ("oldest", "newest"):
            for cid in (*ids, reply):
                page = dm.page_of(s, P2, cid, order=order)
                shown = dm.list_page(s, P2, page=page, order=order).comments
                top = ids[20] if cid == reply else cid
                assert top in [c.id for c in shown], (order, cid, page)
        assert dm.page_of(s, P2, ids[44]) == 3 and dm.page_of(s, P2, ids[44], order="newest") == 1
        assert dm.page_of(s, DIGITS, ids[44]) == 1  # not on that target


def test_a_page_costs_the_same_few_queries_however_many_comments_and_replies(index):
    for i in range(30):
        top = say(index, [ALICE, BOB, CAROL][i % 3], f"t{i}", now=T0 + timedelta(minutes=2 * i))
        say(index, [BOB, CAROL][i % 2], f"r{i}", parent_id=top,
            now=T0 + timedelta(minutes=2 * i + 1))
    statements: list[str] = []
    event.listen(index.engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2]))
    with index.session() as s:
        small = dm.list_page(s, P2, per_page=2)
        n_small = len(statements)
        statements.clear()
        full = dm.list_page(s, P2, per_page=30)
        n_full = len(statements)
    assert sum(len(c.replies) for c in full.comments) == 30
    assert len(small.comments) == 2
    assert n_full == n_small <= 4


def test_shareholders_comments_show_their_share_of_the_dataset(index):
    a = say(index, ALICE, "I hold most")
    b = say(index, BOB, "I hold some", now=T0 + timedelta(seconds=1))
    c = say(index, CAROL, "I hold none", now=T0 + timedelta(seconds=2))
    on_other = say(index, BOB, "here I hold half", target=dm.Target("dataset", "other"),
                   now=T0 + timedelta(seconds=3))
    with index.session() as s:
        weights = {v.id: (v.shares, v.weight_bps) for v in dm.list_page(s, P2).comments}
        other = dm.list_page(s, dm.Target("dataset", "other")).comments[0]
    assert weights == {a: (750, 7500), b: (250, 2500), c: (0, None)}
    assert (other.id, other.shares, other.weight_bps) == (on_other, 500, 10_000)


def test_five_writes_a_minute_then_429_with_the_wait(index):
    for i in range(5):
        say(index, BOB, f"n{i}", now=T0 + timedelta(seconds=i))
    with pytest.raises(dm.RateLimitedError) as caught:
        say(index, BOB, "sixth", now=T0 + timedelta(seconds=10))
    assert caught.value.retry_after == 50  # the first write leaves the window at T0 + 60
    say(index, CAROL, "others are not limited", now=T0 + timedelta(seconds=10))
    say(index, BOB, "sixth", now=T0 + timedelta(seconds=61))


def test_edits_count_toward_the_limit(index):
    cid = say(index, BOB, "v0")
    for i in range(4):
        edit(index, BOB, cid, f"v{i + 1}", now=T0 + timedelta(seconds=i + 1))
    with pytest.raises(dm.RateLimitedError):
        edit(index, BOB, cid, "v5", now=T0 + timedelta(seconds=10))
    with pytest.raises(dm.RateLimitedError):
        say(index, BOB, "new", now=T0 + timedelta(seconds=10))


def test_a_hundred_writes_a_day(index):
    with index.session() as s:
        for i in range(100):  # spread out: never 5 in a minute
            s.add(Comment(target_kind="proposal", target_id="2", author=BOB.address,
                          body=f"b{i}", message="m", signature=f"s{i}",
                          created_at=T0 + timedelta(minutes=2 * i), edits=0))
    later = T0 + timedelta(hours=20)
    with pytest.raises(dm.RateLimitedError) as caught:
        say(index, BOB, "one more", now=later)
    assert caught.value.retry_after == 4 * 3600  # the first leaves the 24 h window
    say(index, BOB, "one more", now=T0 + timedelta(days=1, seconds=1))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(gaps=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=14))
def test_no_minute_ever_holds_more_than_five_accepted_writes(tmp_path_factory, gaps):
    idx = open_index(f"sqlite:///{tmp_path_factory.mktemp('rate') / 'i.sqlite'}")
    try:
        with idx.session() as s:
            s.add(_dataset(1, "digits", 10))
        target, now, accepted = dm.Target("dataset", "digits"), T0, []
        for i, gap in enumerate(gaps):
            now += timedelta(seconds=gap)
            try:
                say(idx, BOB, f"w{i}", target=target, now=now)
                accepted.append(now)
            except dm.RateLimitedError as exc:
                assert exc.retry_after >= 1
        for t in accepted:
            assert sum(t <= u < t + timedelta(seconds=60) for u in accepted) <= 5
        with idx.session() as s:
            assert s.scalar(select(Comment.id).order_by(Comment.id.desc())) == len(accepted)
            assert s.scalar(select(CommentEdit.id)) is None
    finally:
        idx.close()
