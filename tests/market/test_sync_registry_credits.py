"""The ModelRegistry's credits in the index: after a paid channel close the model owner's and
the payer's indexed credit equal the registry's ``owed_of``; the dashboard counts it in its
total, which equals ``databright dividends``' total to the wei, and offers the withdrawal; a
withdrawal zeroes it; ``index rebuild`` and an index migrated from revision 0005 reproduce the
rows. As a property: any history of registry credits and withdrawals (mixed with the
ComputeMarket's same-named ``Withdrawn``) leaves each account's row at the contract's figure."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from hypothesis import given, note, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text

from databright.chain.model_registry import Voucher, sign
from databright.errors import IntegrityError
from databright.home import Home
from databright.index.compute import ComputeAccountRow
from databright.index.credits import RegistryAccountRow
from databright.index.db import MIGRATIONS, Index, open_index
from databright.index.web import WebSession
from databright.market import sync as index_sync
from databright.market.channels import ReceivedVoucher, payee_book
from databright.market.context import Deployment
from databright.market.views_dashboard import dashboard
from databright.web.app.sessions import COOKIE
from tests.web.web_world import ACCOUNTS, PASSWORD, Served, build_web_home

PREDICTIONS = 7  # paid through the channel: 7 × 0.001 ETH of a 0.01 ETH deposit
RECLAIMED = 5 * 10**13  # the deposit of a second channel, reclaimed after it expired


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    """The web world with one paid channel closed: carol paid dave's model 1 for 7 predictions
    (her voucher redeemed by `databright channel close`); and one channel of hers expired and
    reclaimed (its deposit credited back to her); then the index synced."""
    cli = build_web_home(tmp_path_factory.mktemp("credits"), digit_folder)
    opened = cli("channel", "open", "1", "--deposit", "0.01", as_="carol")
    channel = int(opened["channel_id"])
    with Deployment(Home(cli.home)) as dep:
        carol = dep.keystore.unlock("carol", PASSWORD)
        price = dep.registry.get_model(1).price_per_prediction
        chain_id = int(dep.config.chain_id or dep.registry.chain_id())
        amount = PREDICTIONS * price
        sig = sign(Voucher(chain_id, dep.registry.address, channel, amount), carol.key)
        book = payee_book(dep)
        try:  # as the model's prediction server stores an accepted voucher
            book.raise_to(ReceivedVoucher(chain_id, dep.registry.address, channel, 1,
                                          carol.address, amount, "0x" + bytes(sig).hex(),
                                          "open"), amount)
        finally:
            book.close()
    (settled,) = cli("channel", "close", str(channel), as_="dave")
    with Deployment(Home(cli.home)) as dep:  # a channel nobody paid through, reclaimed
        carol = dep.keystore.unlock("carol", PASSWORD)
        second, _ = dep.registry.open_channel(carol, 1, 60, RECLAIMED)
        dep.chain.advance_time(61)
        dep.registry.start_reclaim(carol, second)
        dep.chain.advance_time(dep.registry.challenge_period() + 1)
        assert dep.registry.reclaim(carol, second).value == RECLAIMED
    cli("index", "sync")
    cli.addresses = {n: cli("account", "show", n)["address"] for n in ACCOUNTS}
    cli.settled, cli.deposit = settled, int(opened["deposit"])
    return cli


def _rows(home) -> dict[str, tuple[int, int]]:
    index = open_index(f"sqlite:///{home / 'index.sqlite'}")
    try:
        with index.session() as s:
            return {r.account: (r.credited, r.withdrawn)
                    for r in s.execute(select(RegistryAccountRow)).scalars()}
    finally:
        index.close()


def _boards(home, addresses: dict[str, str]) -> dict[str, dict]:
    index = open_index(f"sqlite:///{home / 'index.sqlite'}")
    try:
        with index.session() as s:
            return {n: dashboard(s, a, time.time()).to_json() for n, a in addresses.items()}
    finally:
        index.close()


def _owed_on_chain(home, addresses: dict[str, str]) -> dict[str, int]:
    with Deployment(Home(home)) as dep:
        return {n: dep.registry.owed_of(a) for n, a in addresses.items()}


def test_a_paid_close_credits_owner_and_payer_as_the_registry_does(world):
    settled, addr = world.settled, world.addresses
    assert settled["amount"] == PREDICTIONS * 10**15 and settled["refund"] > 0
    assert settled["royalty"] + settled["payee_amount"] == settled["amount"]
    assert settled["amount"] + settled["refund"] == world.deposit
    rows = _rows(world.home)
    chain = _owed_on_chain(world.home, addr)
    assert rows[addr["dave"]] == (settled["payee_amount"], 0)
    assert rows[addr["carol"]] == (settled["refund"] + RECLAIMED, 0)  # the refund, the reclaim
    for name, address in addr.items():  # the index's figure is the contract's, for everyone
        credited, withdrawn = rows.get(address, (0, 0))
        assert credited - withdrawn == chain[name], name


@pytest.mark.parametrize("who", ACCOUNTS)
def test_the_dashboard_total_is_the_clis_total_to_the_wei(world, who):
    board = _boards(world.home, {who: world.addresses[who]})[who]
    cli = world("dividends", as_=who)
    assert int(board["registry_wei"]) == cli["registry_wei"]
    assert int(board["total_wei"]) == cli["total_wei"]
    assert int(board["total_wei"]) == sum(int(board[k]) for k in (
        "dividends_wei", "refund_wei", "compute_wei", "registry_wei"))
    assert board["notes"] == []  # nothing said to be missing from the index any more
    if who in ("dave", "carol"):
        assert int(board["registry_wei"]) > 0


def _sign_in(ctx, address: str) -> tuple[dict[str, str], str]:
    """A wallet session as the auth routes store it (only the token's sha256 is kept)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with ctx.dep.index.session() as s:
        s.add(WebSession(token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                         address=address, kind="wallet", csrf=csrf,
                         chain_id=ctx.config.chain_id,
                         expires_at=datetime.now(UTC) + timedelta(hours=1)))
    return {COOKIE: token}, csrf


def test_the_owner_sees_the_credit_and_withdraws_it_through_the_board(world):
    """dave holds no shares: before the registry was indexed his board showed nothing to
    withdraw and a disabled button."""
    from databright.market.money import withdraw

    dave = world.addresses["dave"]
    payee = world.settled["payee_amount"]
    with Served(world.home, sync_seconds=0) as srv:
        cookies, csrf = _sign_in(srv.ctx, dave)
        client = httpx.Client(base_url=srv.url, cookies=cookies, timeout=30)
        try:
            board = client.get("/api/dashboard").json()
            assert int(board["registry_wei"]) == payee == int(board["total_wei"])
            page = client.get("/dashboard", headers={"accept": "text/html"}).text
            button = page.split('data-action="withdraw"', 1)[1].split(">", 1)[0]
            assert "disabled" not in button
            assert 'data-field="registry"' in page and "not in the index" not in page
            txs = client.post("/api/tx/withdraw", json={},
                              headers={"X-CSRF-Token": csrf}).json()["transactions"]
            assert [t["to"] for t in txs] == [srv.ctx.dep.registry.address]
            assert str(payee) in txs[0]["description"]
            with srv.ctx.chain_lock:  # what the wallet's transaction does
                signer = srv.ctx.dep.keystore.unlock("dave", PASSWORD)
                paid = withdraw(srv.ctx.dep, signer)
            assert [(p.kind, p.amount_wei) for p in paid.paid] == [("model registry", payee)]
            srv.ctx.sync_now()
            assert srv.ctx.last_sync_error is None
            after = client.get("/api/dashboard").json()
            assert (after["registry_wei"], after["total_wei"]) == ("0", "0")
            page = client.get("/dashboard", headers={"accept": "text/html"}).text
            assert "disabled" in page.split('data-action="withdraw"', 1)[1].split(">", 1)[0]
        finally:
            client.close()
    assert _rows(world.home)[dave] == (payee, payee)
    assert _owed_on_chain(world.home, {"dave": dave}) == {"dave": 0}
    assert int(world("dividends", as_="dave")["registry_wei"]) == 0


def test_rebuild_and_an_index_from_0005_reproduce_the_rows(world):
    before_rows = _rows(world.home)
    before_boards = _boards(world.home, world.addresses)
    assert world.addresses["dave"] in before_rows and world.addresses["carol"] in before_rows
    world("index", "rebuild")
    assert _rows(world.home) == before_rows
    assert _boards(world.home, world.addresses) == before_boards
    # an index made before this revision: the upgrade adds the table, then a sync reads the
    # past Credited / Withdrawn events back into it
    url = f"sqlite:///{world.home / 'index.sqlite'}"
    old = Index(url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    assert "registry_accounts" not in old.tables()
    old.close()
    index = open_index(url)
    try:
        assert "registry_accounts" in index.tables()
        found = {i["name"]: i["column_names"] for i in inspect(index.engine).get_indexes(
            "proposals")}
        assert found["ix_proposals_dataset_status"] == ["dataset_id", "status", "proposal_id"]
        with index.engine.connect() as conn:
            assert conn.execute(text("SELECT market FROM sync_state")).scalar() == ""
            assert conn.execute(text("SELECT count(*) FROM registry_accounts")).scalar() == 0
    finally:
        index.close()
    assert world("index", "sync")["rebuilt"] is True
    assert _rows(world.home) == before_rows
    assert _boards(world.home, world.addresses) == before_boards


# -- property: the rows follow the contract's pull-payment arithmetic --------------------------
REGISTRY = "0x" + "ab" * 20
COMPUTE = "0x" + "c0" * 20
MARKET = "0x" + "3a" * 20
PEOPLE = ["0x" + f"{n:02x}" * 20 for n in range(1, 4)]
COMPUTE_START = 10**30  # each person's compute credit before the history (made up)


class _Ev(SimpleNamespace):
    def __init__(self, contract: str, name: str, block: int, args: dict) -> None:
        super().__init__(contract=contract, name=name, address=REGISTRY, block_number=block,
                         log_index=0, args=args)


def _applier(s):
    dep = SimpleNamespace(market=SimpleNamespace(address=MARKET), chain=None,
                          config=SimpleNamespace(contracts={"ModelRegistry": REGISTRY,
                                                            "ComputeMarket": COMPUTE}))
    return index_sync._Applier(dep, s)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    index = open_index(f"sqlite:///{tmp_path_factory.mktemp('credits') / 'index.sqlite'}")
    yield index
    index.close()


history_ops = st.lists(st.one_of(
    st.tuples(st.just("credit"), st.integers(0, 2), st.integers(1, 10**24)),
    st.tuples(st.just("withdraw"), st.integers(0, 2)),
    st.tuples(st.just("compute_withdraw"), st.integers(0, 2), st.integers(1, 10**20)),
), max_size=30)


@settings(max_examples=100, deadline=None)
@given(history=history_ops)
def test_credits_minus_withdrawals_are_what_the_registry_owes(small_index, history):
    note(f"history: {history!r}")
    owed = dict.fromkeys(PEOPLE, 0)  # the contract: owed_of
    paid = dict.fromkeys(PEOPLE, 0)
    compute_paid = dict.fromkeys(PEOPLE, 0)
    with small_index.session() as s:
        for p in PEOPLE:
            s.add(ComputeAccountRow(account=p, credited=COMPUTE_START, withdrawn=0))
        s.flush()
        applier = _applier(s)
        for n, op in enumerate(history):
            who = PEOPLE[op[1]]
            if op[0] == "credit":  # a close's payee amount / refund, or a reclaim
                owed[who] += op[2]
                applier.apply(_Ev("ModelRegistry", "Credited", n,
                                  {"account": who, "amount": op[2]}))
            elif op[0] == "withdraw":
                if not owed[who]:
                    continue  # the registry refuses a withdrawal of nothing
                amount, owed[who] = owed[who], 0
                paid[who] += amount
                applier.apply(_Ev("ModelRegistry", "Withdrawn", n,
                                  {"account": who, "amount": amount}))
            else:  # the ComputeMarket's event of the same name leaves the registry's rows alone
                compute_paid[who] += op[2]
                applier.apply(_Ev("ComputeMarket", "Withdrawn", n,
                                  {"account": who, "amount": op[2]}))
        applier.finish()
        s.flush()
        for p in PEOPLE:
            row = s.get(RegistryAccountRow, p)
            assert (row.owed if row else 0) == owed[p]
            assert (row.withdrawn if row else 0) == paid[p]
            board = dashboard(s, p, time.time())
            assert board.registry_wei == owed[p]
            assert board.compute_wei == COMPUTE_START - compute_paid[p]
            assert board.total_wei == owed[p] + board.compute_wei
        s.rollback()


def test_a_withdrawal_of_more_than_was_credited_fails_the_range(small_index):
    with small_index.session() as s:
        applier = _applier(s)
        applier.apply(_Ev("ModelRegistry", "Credited", 1, {"account": PEOPLE[0], "amount": 5}))
        with pytest.raises(IntegrityError, match="ModelRegistry"):
            applier.apply(_Ev("ModelRegistry", "Withdrawn", 2,
                              {"account": PEOPLE[0], "amount": 6}))
        s.rollback()
