"""The chain-event cache: synced range by range it equals a rebuild from logs, and the chain.

One realistic flow per database (SQLite, PostgreSQL): two datasets, proposals accepted, rejected
and expired, a scored one, votes both ways, share transfers, a revenue payment, withdrawals, and
one proposal left open. The index is synced after every step in ranges of two blocks.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from databright.home import Home
from databright.index.cache import (
    CHAIN_TABLES,
    DatasetRow,
    DividendPaymentRow,
    HolderRow,
    ItemRow,
    ProposalRow,
    RefundRow,
    SyncedBlock,
    SyncState,
)
from databright.index.models import IngestReport
from databright.market import Deployment, Rules, datasets, deployment, evaluation, money, proposals
from databright.market import sync as index_sync
from databright.market.listings import held_tokens
from databright.market.units import SHARE_UNIT
from tests.index.conftest import fresh_database_url

PASSWORD = "pw"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def flow(request, tmp_path_factory, digit_folder):
    """A home on each database after the whole flow, synced incrementally all along."""
    root = tmp_path_factory.mktemp(f"flow-{request.param}")
    url, drop = fresh_database_url(request.param, root)
    deployment.init_home(Home(root / "home"), db=url)
    with Deployment(root / "home") as dep:
        acct = {}
        for name in ("ann", "ben", "cat", "dan"):
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
            acct[name] = dep.keystore.unlock(name, PASSWORD)
        ann, ben, cat, dan = (acct[n] for n in ("ann", "ben", "cat", "dan"))
        results = []

        def step() -> None:
            results.append(index_sync.sync(dep, range_size=2))

        def batch(name: str, start: int, count: int):
            return digit_folder(root / name, start, count)

        datasets.create_dataset(dep, ann, "pics", batch("seed1", 0, 50),
                                rules=Rules(voting_period=3600, quorum_bps=5000, evaluator="ann"))
        step()
        datasets.create_dataset(dep, ben, "more", batch("seed2", 300, 30),
                                rules=Rules(voting_period=3600, quorum_bps=2000))
        step()
        accept = proposals.propose(dep, ben, "pics", batch("b1", 100, 10)).proposal_id
        reject = proposals.propose(dep, cat, "pics", batch("b2", 120, 8)).proposal_id
        expire = proposals.propose(dep, dan, "pics", batch("b3", 140, 6)).proposal_id
        step()
        evaluation.post_score(dep, ann, accept, 15_000)
        proposals.vote(dep, ann, accept, True)
        proposals.vote(dep, ann, reject, False)
        step()
        money.transfer(dep, ann, "pics", cat.address, 3 * SHARE_UNIT)
        money.transfer(dep, ben, "more", dan.address, 5 * SHARE_UNIT)
        dep.chain.advance_time(3601)
        for pid in (accept, reject, expire):
            proposals.finalize(dep, dan, pid)
            step()
        money.distribute(dep, dan, "more", 10**15)
        step()
        money.transfer(dep, dan, "more", cat.address, 2 * SHARE_UNIT)  # settles after a payment
        step()
        money.withdraw(dep, ann)  # dividends of the rejected stake
        money.withdraw(dep, ben)  # refunded stake
        step()
        pending = proposals.propose(dep, cat, "more", batch("b4", 400, 7)).proposal_id
        step()
        dep.outcome = {"accept": accept, "reject": reject, "expire": expire, "pending": pending}
        dep.results = results
        dep.acct = acct
        yield dep
    drop()  # type: ignore[operator]


#: tables keyed by an autoincrement id: a rebuild on PostgreSQL numbers them anew
SURROGATE_KEYED = (ItemRow, DividendPaymentRow)


def snapshot(dep: Deployment) -> dict[str, list[tuple]]:
    """Every chain-derived table as sorted rows (without surrogate keys)."""
    out = {}
    with dep.index.session() as s:
        for table in CHAIN_TABLES:
            cols = [c for c in table.__table__.columns if not (table in SURROGATE_KEYED and c.key == "id")]
            rows = s.execute(select(*cols)).all()
            out[table.__tablename__] = sorted((tuple(r) for r in rows), key=repr)
    return out


def test_the_flow_synced_in_ranges(flow):
    assert sum(r.ranges for r in flow.results) > len(flow.results)  # ranges of two blocks
    assert not any(r.rebuilt for r in flow.results)
    again = index_sync.sync(flow)
    assert (again.ranges, again.events) == (0, 0)  # nothing new: nothing applied


def test_rebuild_equals_the_incremental_index(flow):
    before = snapshot(flow)
    with flow.index.session() as s:
        reports = s.query(IngestReport).count()
    assert reports >= 4 and before["proposals"] and before["items"]
    rebuilt = index_sync.sync(flow, rebuild=True)
    assert rebuilt.rebuilt and rebuilt.from_block == 0 and rebuilt.ranges == 1
    assert snapshot(flow) == before
    with flow.index.session() as s:  # off-chain tables survive a rebuild
        assert s.query(IngestReport).count() == reports


def test_the_index_agrees_with_the_chain(flow):
    market = flow.market
    with flow.index.session() as s:
        rows = {r.dataset_id: r for r in s.execute(select(DatasetRow)).scalars()}
        assert set(rows) == set(range(1, market.dataset_count() + 1))
        for ds_id, row in rows.items():
            info = market.get_dataset(ds_id)
            token = flow.token(info.share_token)
            for field in ("name", "symbol", "share_token", "initiator", "card_cid", "quorum_bps",
                          "approval_bps", "voting_period", "stake", "reward_r0", "reward_n0",
                          "evaluator", "item_count", "entry_count"):
                assert getattr(row, field) == getattr(info, field), field
            assert row.total_supply == token.totalSupply()
            assert row.total_distributed == token.total_distributed()
            assert row.total_withdrawn == token.total_withdrawn()
        for p in s.execute(select(ProposalRow)).scalars():
            chain = market.get_proposal(p.proposal_id)
            for field in ("dataset_id", "proposer", "manifest_cid", "item_count", "stake",
                          "snapshot", "deadline", "yes", "no", "status", "shares_minted"):
                assert getattr(p, field) == getattr(chain, field), field
            assert p.merkle_root == "0x" + chain.merkle_root.hex()
            assert p.score_bps == (chain.score_bps if chain.scored else None)
            if chain.status != "open":
                assert p.snapshot_supply == chain.snapshot_supply
        holders = list(s.execute(select(HolderRow)).scalars())
        assert len(holders) >= 5
        for h in holders:
            token = flow.token(h.share_token)
            assert (h.balance, h.withdrawn) == (token.balanceOf(h.account),
                                                token.withdrawn_of(h.account))
        for account in {h.account for h in holders}:  # dividends settled as the token does
            live = {h.share_token: flow.token(h.share_token).dividends_of(account)
                    for h in holders if h.account == account}
            indexed = {t.share_token: t.dividends_wei for t in held_tokens(flow, account)}
            assert indexed == live
        assert any(t.dividends_wei for h in holders for t in held_tokens(flow, h.account))
        for r in s.execute(select(RefundRow)).scalars():
            assert r.credited - r.withdrawn == market.refund_of(r.account)


def test_item_table_follows_outcomes(flow):
    o = flow.outcome
    with flow.index.session() as s:
        def states(pid):
            return set(s.execute(select(ItemRow.state).where(ItemRow.proposal_id == pid)).scalars())

        assert states(o["accept"]) == {"accepted"}
        assert states(o["pending"]) == {"pending"}
        assert states(o["reject"]) == states(o["expire"]) == set()  # free to propose again
        seeds = s.execute(select(ItemRow.dataset_id, ItemRow.state).where(
            ItemRow.proposal_id == 0)).all()
        assert {d for d, _ in seeds} == {1, 2} and {st for _, st in seeds} == {"accepted"}
        val = s.execute(select(ItemRow.dataset_id).where(ItemRow.state == "validation")).scalars()
        assert set(val) == {1, 2}
        accepted = s.execute(select(ItemRow).where(ItemRow.dataset_id == 1,
                                                   ItemRow.state == "accepted")).scalars().all()
        assert len(accepted) == flow.market.get_dataset(1).item_count


def test_a_replaced_block_makes_the_next_sync_rebuild(flow):
    # what a reorganisation of the last three blocks looks like to the cache: their stored
    # hashes are not the chain's any more
    before = snapshot(flow)
    with flow.index.session() as s:
        state = s.get(SyncState, 1)
        state.last_block_hash = "0x" + "ab" * 32
        recent = s.execute(select(SyncedBlock).order_by(SyncedBlock.block_number.desc())).scalars()
        for row in list(recent)[:3]:
            row.block_hash = "0x" + "ab" * 32
    result = index_sync.sync(flow)
    assert result.rebuilt and result.from_block == 0 and result.reorg_depth == 3
    assert snapshot(flow) == before


def test_another_market_behind_the_home_starts_over(flow):
    with flow.index.session() as s:
        s.get(SyncState, 1).market = "0x" + "11" * 20
    result = index_sync.sync(flow)
    assert result.rebuilt and result.from_block == 0


def test_a_range_is_applied_once_when_two_processes_sync(flow):
    # the other process moved the state on while this one read the range: nothing applied twice
    flow.chain.advance_time(1)  # a new block to sync
    with flow.index.session() as s:
        state = s.get(SyncState, 1)
        start = state.last_block + 1
        before = snapshot(flow)
        state.last_block += 1  # as if the other process committed the range
    assert index_sync._apply_range(flow, start, start) is None
    with flow.index.session() as s:
        s.get(SyncState, 1).last_block = start - 1
    assert snapshot(flow)["proposals"] == before["proposals"]
    assert index_sync.sync(flow).ranges == 1


def test_the_duplicate_check_reads_no_manifest(flow, monkeypatch):
    from databright.storage import manifest

    index_sync.sync(flow)
    with flow.index.session() as s:
        accepted = list(s.execute(select(ItemRow.cid).where(
            ItemRow.dataset_id == 1, ItemRow.state == "accepted")).scalars())
        pending = list(s.execute(select(ItemRow.cid).where(ItemRow.state == "pending")).scalars())

    def no_reads(*args, **kwargs):
        raise AssertionError("the duplicate check read a blob")

    monkeypatch.setattr(manifest, "read_manifest_table", no_reads)
    monkeypatch.setattr(flow.store, "get", no_reads)
    new = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert proposals.existing_cids(flow, 1, [*accepted, new]) == set(accepted)
    assert proposals.existing_cids(flow, 2, pending) == set(pending)
    assert proposals.existing_cids(flow, 2, pending, include_open=False) == set()


def test_embedded_logs_equal_the_nodes_get_logs(flow):
    from databright.chain.events import _embedded_logs

    addresses = [flow.market.address] + [flow.market.get_dataset(i).share_token for i in (1, 2)]
    head = flow.chain.block_number()
    ours = _embedded_logs(flow.chain, set(addresses), 0, head)
    theirs = flow.chain.w3.eth.get_logs({"address": addresses, "fromBlock": 0, "toBlock": head})

    def key(log):
        return (int(log["blockNumber"]), bytes(log["transactionHash"]), log["address"],
                tuple(bytes(t) for t in log["topics"]), bytes(log["data"]))

    assert len(ours) > 30
    assert sorted(map(key, ours)) == sorted(map(key, theirs))
