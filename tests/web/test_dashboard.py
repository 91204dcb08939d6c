"""The shareholder dashboard and its JSON twin on the web world home: holdings, dividends
waiting by source equal to what `databright dividends` reads from the chain (to the wei),
proposals waiting for a vote, contributions, the withdraw button; and, as a property, the
waiting dividends by source add up to what the token owes for any history of transfers,
distributions and withdrawals."""

from __future__ import annotations

import hashlib
import secrets
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from databright.index.cache import DatasetRow
from databright.index.db import open_index
from databright.index.web import WebSession
from databright.market import sync as index_sync
from databright.market.views_dashboard import dashboard
from databright.web.app.sessions import COOKIE
from tests.web.web_world import PASSWORD, Served

NAMES = ("alice", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def cli_view(web_home):
    """What the CLI says, read from the chain before the server takes it."""
    out = {}
    for name in NAMES:
        out[name] = {
            "address": web_home("account", "show", name)["address"],
            "dividends": web_home("dividends", as_=name),
            "shares": web_home("shares", as_=name),
        }
    return out


@pytest.fixture(scope="module")
def served(web_home, cli_view):
    with Served(web_home.home, sync_seconds=0) as srv:
        yield srv


def _board(served, who: str, cli_view) -> dict:
    r = served.client.get("/api/dashboard", params={"address": cli_view[who]["address"]})
    assert r.status_code == 200, r.text
    return r.json()


def _sign_in(served, address: str) -> dict[str, str]:
    """A session as the auth routes store it (only the token's sha256 is kept)."""
    token = secrets.token_urlsafe(32)
    with served.ctx.dep.index.session() as s:
        s.add(WebSession(token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                         address=address, kind="wallet", csrf="c" * 43,
                         chain_id=served.ctx.config.chain_id,
                         expires_at=datetime.now(UTC) + timedelta(hours=1)))
    return {COOKIE: token}


def test_bobs_dividends_waiting_match_the_cli_to_the_wei(served, cli_view):
    board = _board(served, "bob", cli_view)
    cli = cli_view["bob"]["dividends"]
    (holding,) = board["holdings"]
    (row,) = [r for r in cli["dividends"] if r["dataset"] == "digits"]
    assert int(holding["waiting_wei"]) == row["dividends_wei"] > 0
    assert int(holding["withdrawn_wei"]) == row["withdrawn_wei"] == 0
    by_source = {k: int(v) for k, v in holding["waiting_by_source"].items()}
    assert sum(by_source.values()) == row["dividends_wei"]
    assert by_source["direct_payment"] > 0  # dave's 1 ETH
    assert all(v >= 0 for v in by_source.values())
    assert int(board["dividends_wei"]) == sum(r["dividends_wei"] for r in cli["dividends"])
    assert int(board["refund_wei"]) == cli["refund_wei"]
    assert int(board["compute_wei"]) == cli["compute_wei"]
    assert int(board["registry_wei"]) == cli["registry_wei"]  # indexed now: no note
    assert int(board["total_wei"]) == cli["total_wei"] and board["notes"] == []
    (shares,) = cli_view["bob"]["shares"]["shares"]
    assert int(holding["balance"]) == shares["balance"]


@pytest.mark.parametrize("who", NAMES)
def test_every_accounts_waiting_total_matches_the_cli(served, cli_view, who):
    board = _board(served, who, cli_view)
    cli = cli_view[who]["dividends"]
    waiting = {h["dataset"]: int(h["waiting_wei"]) for h in board["holdings"]}
    for row in cli["dividends"]:  # every dataset the CLI lists, to the wei
        assert waiting.get(row["dataset"], 0) == row["dividends_wei"], row
    listed = {r["dataset"] for r in cli["dividends"]}
    assert all(not wei for ds, wei in waiting.items() if ds not in listed)
    for key in ("refund_wei", "compute_wei", "registry_wei", "total_wei"):
        assert int(board[key]) == cli[key], key
    assert sum(int(v) for v in board["waiting_by_source"].values()) == int(board["dividends_wei"])


def test_proposal_2_waits_for_alices_vote_not_carols(served, cli_view, web_home):
    alice = _board(served, "alice", cli_view)
    assert [v["proposal_id"] for v in alice["waiting_votes"]] == [web_home.proposals[1]]
    carol = _board(served, "carol", cli_view)  # no shares: nothing to vote with
    assert carol["waiting_votes"] == [] and carol["holdings"] == []


def test_contributions_show_their_evaluated_impact(served, cli_view, web_home):
    first, second = web_home.proposals
    bob = _board(served, "bob", cli_view)
    (p1,) = bob["proposals"]
    assert (p1["proposal_id"], p1["status"]) == (first, "accepted")
    assert p1["score_bps"] and p1["gain"] is not None and int(p1["shares_minted"]) > 0
    assert [e["proposal_id"] for e in bob["entries"]] == [first]
    carol = _board(served, "carol", cli_view)
    (p2,) = carol["proposals"]
    assert (p2["proposal_id"], p2["status"], p2["shares_minted"]) == (second, "open", "0")
    from databright.index.models import Evaluation

    with served.ctx.read() as s:
        report = s.get(Evaluation, second).report
    assert p2["gain"] == report["gain"] and p2["utility_gain"] == report["utility_gain"]


def test_no_viewer_no_address(served):
    r = served.client.get("/api/dashboard")
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "not_signed_in", "message": r.json()["error"]["message"]}}
    page = served.client.get("/dashboard", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'id="dashboard-signin"' in page.text
    assert 'data-action="withdraw"' not in page.text
    bad = served.client.get("/api/dashboard", params={"address": "0x123"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_address"


def test_the_signed_in_viewer_gets_their_own_board_and_the_withdraw_button(served, cli_view):
    bob = cli_view["bob"]["address"]
    client = httpx.Client(base_url=served.url, cookies=_sign_in(served, bob), timeout=30)
    mine = client.get("/api/dashboard").json()
    assert mine["address"] == bob and mine == _board(served, "bob", cli_view)
    page = client.get("/dashboard", headers={"accept": "text/html"})
    assert 'data-action="withdraw"' in page.text and ">you<" in page.text
    assert 'data-action="vote" data-proposal-id="2"' in page.text
    # someone else's board is read-only, even when signed in; lower-case addresses work
    other = client.get("/dashboard", params={"address": cli_view["alice"]["address"].lower()},
                       headers={"accept": "text/html"})
    client.close()
    assert other.status_code == 200 and "read-only" in other.text
    assert 'data-action="withdraw"' not in other.text
    assert cli_view["alice"]["address"] in other.text


def test_after_a_withdrawal_and_a_vote_the_board_follows_the_chain(served, cli_view, web_home):
    """Writes through the server's own deployment (it holds the embedded chain), then one
    sync: the board agrees with `pending`, the figure `databright dividends` prints."""
    from databright.market.money import pending, withdraw
    from databright.market.proposals import vote

    ctx = served.ctx
    before = _board(served, "bob", cli_view)["holdings"][0]
    with ctx.chain_lock:
        bob = ctx.dep.keystore.unlock("bob", PASSWORD)
        alice = ctx.dep.keystore.unlock("alice", PASSWORD)
        paid = withdraw(ctx.dep, bob)
        vote(ctx.dep, alice, web_home.proposals[1], True)
    ctx.sync_now()
    assert ctx.last_sync_error is None
    board = _board(served, "bob", cli_view)
    (holding,) = board["holdings"]
    assert int(holding["waiting_wei"]) == 0
    assert all(int(v) == 0 for v in holding["waiting_by_source"].values())
    assert int(holding["withdrawn_wei"]) == int(before["waiting_wei"]) == int(holding["earned_wei"])
    assert holding["earned_by_source"] == before["earned_by_source"]
    assert int(board["refund_wei"]) == 0
    with ctx.chain_lock:
        chain = pending(ctx.dep, cli_view["bob"]["address"])
    assert int(board["dividends_wei"]) == sum(r.dividends_wei for r in chain.dividends) == 0
    dividends = [p.amount_wei for p in paid.paid if p.kind == "dividends"]
    assert dividends == [int(before["waiting_wei"])]
    assert _board(served, "alice", cli_view)["waiting_votes"] == []


# -- property: waiting by source adds up to what the token owes ----------------------------------
MAG = 2**32
ZERO = "0x" + "00" * 20
TOKEN = "0x" + "70" * 20
MARKET = "0x" + "3a" * 20
COMPUTE = "0x" + "c0" * 20
DIRECT = "0x" + "dd" * 20
HOLDERS = ["0x" + f"{n:02x}" * 20 for n in range(1, 5)]


class _Token:
    """The ShareToken's dividend arithmetic (settle before every balance change)."""

    def __init__(self) -> None:
        self.bal = dict.fromkeys(HOLDERS, 0)
        self.claims = dict.fromkeys(HOLDERS, 0)
        self.last = dict.fromkeys(HOLDERS, 0)
        self.ps = self.carry = self.supply = 0

    def settle(self, a: str) -> None:
        self.claims[a] += self.bal[a] * (self.ps - self.last[a]) // MAG
        self.last[a] = self.ps

    def owed(self, a: str) -> int:
        return self.claims[a] + self.bal[a] * (self.ps - self.last[a]) // MAG


class _BlockClock:
    """The part of a chain the sync reads besides logs: a block's timestamp (a node's way)."""

    embedded = None
    w3 = SimpleNamespace(eth=SimpleNamespace(get_block=lambda n: {"timestamp": 1_700_000_000 + n}))

    @contextmanager
    def translating(self):
        yield


class _Ev(SimpleNamespace):
    def __init__(self, name, address, block, index, args):
        super().__init__(name=name, contract="ShareToken", address=address,
                         block_number=block, log_index=index, args=args)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    index = open_index(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'index.sqlite'}")
    yield index
    index.close()


ops = st.lists(st.one_of(
    st.tuples(st.just("mint"), st.integers(0, 3), st.integers(1, 10**24)),
    st.tuples(st.just("transfer"), st.integers(0, 3), st.integers(0, 3), st.floats(0, 1)),
    st.tuples(st.just("distribute"), st.sampled_from([MARKET, COMPUTE, DIRECT]),
              st.integers(1, 10**20)),
    st.tuples(st.just("withdraw"), st.integers(0, 3)),
), min_size=1, max_size=40)


@settings(max_examples=120, deadline=None)
@given(history=ops)
def test_waiting_by_source_adds_up_to_what_the_token_owes(small_index, history):
    note(f"history: {history!r}")
    dep = SimpleNamespace(market=SimpleNamespace(address=MARKET), chain=_BlockClock(),
                          config=SimpleNamespace(contracts={"ComputeMarket": COMPUTE}))
    token = _Token()
    with small_index.session() as s:
        s.add(DatasetRow(
            dataset_id=1, name="p", symbol="P", share_token=TOKEN, initiator=HOLDERS[0],
            card_cid="c", quorum_bps=1, approval_bps=1, voting_period=1, stake=1, reward_r0=1,
            reward_n0=1, evaluator=HOLDERS[0], training_fee=0, min_royalty_bps=0,
            item_count=0, entry_count=0, total_supply=0, total_distributed=0,
            total_withdrawn=0, dividends_held=0, per_share=0, validation_manifest_cid=None,
            items_loaded=True, created_block=0))
        s.flush()
        applier = index_sync._Applier(dep, s)  # type: ignore[arg-type]
        for n, op in enumerate(history):
            event = None
            if op[0] == "mint":
                to, value = HOLDERS[op[1]], op[2]
                token.settle(to)
                token.bal[to] += value
                token.supply += value
                event = _Ev("Transfer", TOKEN, n, 0, {"sender": ZERO, "receiver": to,
                                                       "value": value})
            elif op[0] == "transfer":
                a, b = HOLDERS[op[1]], HOLDERS[op[2]]
                value = int(token.bal[a] * op[3])
                if not value or a == b:
                    continue
                token.settle(a)
                token.settle(b)
                token.bal[a] -= value
                token.bal[b] += value
                event = _Ev("Transfer", TOKEN, n, 0, {"sender": a, "receiver": b,
                                                       "value": value})
            elif op[0] == "distribute":
                if not token.supply:
                    continue
                total = op[2] + token.carry
                growth = total * MAG // token.supply
                token.carry = total - (growth * token.supply + MAG - 1) // MAG
                token.ps += growth
                event = _Ev("DividendsDistributed", TOKEN, n, 0, {
                    "payer": op[1], "amount": op[2], "per_share": token.ps,
                    "carried": token.carry})
            else:
                a = HOLDERS[op[1]]
                if not token.owed(a):
                    continue  # the token refuses ("nothing to withdraw"): its state is unchanged
                token.settle(a)
                amount, token.claims[a] = token.claims[a], 0
                event = _Ev("DividendsWithdrawn", TOKEN, n, 0, {"account": a, "amount": amount})
            applier.apply(event)
        applier.finish()
        s.flush()
        for holder in HOLDERS:
            board = dashboard(s, holder, time.time())
            owed = token.owed(holder)
            got = {h.dataset_id: h for h in board.holdings}
            if 1 not in got:
                assert owed == 0 and token.bal[holder] == 0
                continue
            h = got[1]
            assert h.waiting_wei == owed  # the token's dividends_of, to the wei
            assert sum(h.waiting_by_source.values()) == owed
            assert all(v >= 0 for v in h.waiting_by_source.values())
            assert sum(h.earned_by_source.values()) == h.withdrawn_wei + owed
            assert h.balance == token.bal[holder]
        s.rollback()
