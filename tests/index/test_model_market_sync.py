"""The model market in the index: every ModelRegistry event synced, a rebuild equal to the
incremental index, dividends by source per dataset and per holder checked against the chain.

One flow per database: a dataset with two contributors (the seed and an accepted batch), a
rejected proposal (its stake becomes dividends), two models (training fees), checkpoints
self-reported, attested, and self-reported then attested later, a closed channel (royalty), a reclaimed channel, a share transfer
between payments, a direct `distribute` and a withdrawal. Synced in ranges of two blocks after
every step. Before every payment the holders' balances and the token's per-share total are read
from the chain, so each holder's exact share of each source is known independently of the
index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from databright.chain.events import ChainEvent
from databright.chain.model_registry import sign
from databright.errors import IntegrityError, NotFoundError
from databright.home import Home
from databright.index.cache import (
    CHAIN_TABLES,
    SOURCES,
    ChannelRow,
    CheckpointRow,
    DividendPaymentRow,
    DividendSourceRow,
    HolderDividendRow,
    ItemRow,
    ModelRow,
)
from databright.market import Deployment, Rules, datasets, deployment, money, proposals
from databright.market import sync as index_sync
from databright.market.impact import impact
from databright.market.model_listings import list_models, show_model
from databright.market.sync_models import split_by_source
from databright.market.units import SHARE_UNIT
from tests.index.conftest import fresh_database_url

PASSWORD = "pw"
FEE = 10**15
PRICE = 10**12
MAG = 2**32
SHA1, SHA2, SHA3 = (bytes([n]) * 32 for n in (1, 2, 3))


@dataclass
class Flow:
    dep: Deployment
    acct: dict
    ds_id: int
    token: object
    #: per payment: its source, the holders' balances just before it and its per-share growth
    payments: list = field(default_factory=list)
    results: list = field(default_factory=list)
    closed: object = None
    stake: int = 0
    direct: int = 0


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def flow(request, tmp_path_factory, digit_folder):
    root = tmp_path_factory.mktemp(f"models-{request.param}")
    url, drop = fresh_database_url(request.param, root)
    deployment.init_home(Home(root / "home"), db=url)
    with Deployment(root / "home") as dep:
        acct = {}
        for name in ("ann", "ben", "cat", "dev", "con", "eve"):
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
            acct[name] = dep.keystore.unlock(name, PASSWORD)
        ann, ben, cat, dev, con, eve = (acct[n] for n in ("ann", "ben", "cat", "dev", "con",
                                                          "eve"))
        datasets.create_dataset(dep, ann, "pics", digit_folder(root / "seed", 0, 30),
                                rules=Rules(voting_period=3600, quorum_bps=5000, evaluator="ann",
                                            training_fee=FEE, min_royalty_bps=2000))
        ds_id = dep.market.dataset_id_of("pics")
        token = dep.token(dep.market.get_dataset(ds_id).share_token)
        f = Flow(dep, acct, ds_id, token)
        registry = dep.registry

        def step() -> None:
            f.results.append(index_sync.sync(dep, range_size=2))

        def paying(source: str, action):
            """Run ``action`` (one payment of ``source``) noting balances and growth first."""
            before = {a.address: token.balanceOf(a.address) for a in acct.values()}
            ps = token.per_share()
            out = action()
            f.payments.append((source, before, token.per_share() - ps))
            step()
            return out

        step()
        accept = proposals.propose(dep, ben, "pics", digit_folder(root / "b1", 100, 10))
        reject = proposals.propose(dep, cat, "pics", digit_folder(root / "b2", 120, 8))
        f.stake = dep.market.get_proposal(reject.proposal_id).stake
        proposals.vote(dep, ann, accept.proposal_id, True)
        proposals.vote(dep, ann, reject.proposal_id, False)
        dep.chain.advance_time(3601)
        proposals.finalize(dep, cat, accept.proposal_id)  # anyone may finalize
        step()
        paying("rejected_stake", lambda: proposals.finalize(dep, ann, reject.proposal_id))
        model_a, _ = paying("training_fee", lambda: registry.register(
            dev, ds_id, "digits-cnn", SHA3, PRICE, 3_000, value=FEE))
        paying("training_fee", lambda: registry.submit_checkpoint(
            dev, model_a, "bafkreiselfreported", SHA1, 1, 8_000, b"", value=FEE))
        att = registry.attestation(model_a, SHA2, entries=2, metric_bps=9_000)
        paying("training_fee", lambda: registry.submit_checkpoint(
            dev, model_a, "bafkreiattested", SHA2, 2, 9_000, sign(att, ann), value=FEE))
        money.transfer(dep, ann, "pics", eve.address, 7 * SHARE_UNIT)  # settles mid-way
        step()
        # the self-reported checkpoint attested later, above the best: it becomes the best
        late = registry.attestation(model_a, SHA1, entries=1, metric_bps=9_500)
        registry.attest(con, model_a, 1, 9_500, sign(late, ann))  # anyone may deliver it
        step()
        model_b, _ = paying("training_fee", lambda: registry.register(
            dev, ds_id, "seed-only", SHA3, 0, 2_000, value=FEE))
        att_b = registry.attestation(model_b, SHA1, entries=1, metric_bps=7_000)
        paying("training_fee", lambda: registry.submit_checkpoint(
            dev, model_b, "bafkreiseedonly", SHA1, 1, 7_000, sign(att_b, ann), value=FEE))
        channel, _ = registry.open_channel(con, model_a, timeout=3600, deposit=10**15)
        step()
        registry.top_up(con, channel, 10**14)
        step()
        voucher = registry.voucher(channel, 37 * PRICE)
        f.closed, _ = paying("prediction_royalty", lambda: registry.close(
            dev, channel, voucher.amount, sign(voucher, con)))
        second, _ = registry.open_channel(con, model_a, timeout=60, deposit=5 * 10**13)
        dep.chain.advance_time(61)
        registry.start_reclaim(con, second)
        step()
        dep.chain.advance_time(registry.challenge_period() + 1)
        registry.reclaim(con, second)
        step()
        f.direct = 10**15 + 7
        paying("direct_payment", lambda: money.distribute(dep, eve, "pics", f.direct))
        money.withdraw(dep, ben)
        step()
        registry.withdraw(dev)
        step()
        dep.models = (model_a, model_b)
        dep.channels = (channel, second)
        yield f
    drop()  # type: ignore[operator]


#: tables keyed by an autoincrement id: a rebuild on PostgreSQL numbers them anew
SURROGATE_KEYED = (ItemRow, DividendPaymentRow)


def snapshot(dep: Deployment) -> dict[str, list[tuple]]:
    out = {}
    with dep.index.session() as s:
        for table in CHAIN_TABLES:
            cols = [c for c in table.__table__.columns if not (table in SURROGATE_KEYED and c.key == "id")]
            out[table.__tablename__] = sorted((tuple(r) for r in s.execute(select(*cols))),
                                              key=repr)
    return out


def test_every_registry_event_is_in_the_index(flow):
    dep, registry = flow.dep, flow.dep.registry
    assert sum(r.ranges for r in flow.results) > len(flow.results)
    assert not any(r.rebuilt for r in flow.results)
    with dep.index.session() as s:
        models = {m.model_id: m for m in s.execute(select(ModelRow)).scalars()}
        assert set(models) == {1, 2} == set(range(1, registry.model_count() + 1))
        for model_id, row in models.items():
            chain = registry.get_model(model_id)
            assert (row.owner, row.dataset_id, row.name, row.price_per_prediction,
                    row.royalty_bps, row.checkpoint_count, row.best_checkpoint,
                    row.best_metric_bps) == (
                chain.owner, chain.dataset_id, chain.name, chain.price_per_prediction,
                chain.royalty_bps, chain.checkpoint_count, chain.best_checkpoint,
                chain.best_metric_bps)
            assert row.program_digest == "0x" + chain.program_digest.hex()
        assert (models[1].best_checkpoint, models[1].best_metric_bps) == (1, 9_500)
        cps = list(s.execute(select(CheckpointRow)).scalars())
        assert len(cps) == 3
        for c in cps:
            chain_cp = registry.get_checkpoint(c.model_id, c.checkpoint)
            assert (c.cid, c.file_sha256, c.entries) == (
                chain_cp.cid, "0x" + chain_cp.file_sha256.hex(), chain_cp.entries)
            assert c.attestor == (chain_cp.attestor if chain_cp.attested else None)
            # the chain keeps the attested metric; the index also the one first reported
            assert (c.attested_metric_bps if c.attestor else c.metric_bps) == chain_cp.metric_bps
        later = s.get(CheckpointRow, (1, 1))
        assert (later.metric_bps, later.attested_metric_bps, later.attestor) == (
            8_000, 9_500, flow.acct["ann"].address)
        assert s.get(CheckpointRow, (1, 2)).attestor == flow.acct["ann"].address
        channels = {c.channel_id: c for c in s.execute(select(ChannelRow)).scalars()}
        for channel_id, row in channels.items():
            chain_ch = registry.get_channel(channel_id)
            assert (row.payer, row.model_id, row.deposit, row.expiry, row.status) == (
                chain_ch.payer, chain_ch.model_id, chain_ch.deposit, chain_ch.expiry,
                chain_ch.status)
            assert (row.reclaim_at or 0) == chain_ch.reclaim_at
        closed, reclaimed = (channels[c] for c in flow.dep.channels)
        assert closed.deposit == 10**15 + 10**14  # the top-up
        c = flow.closed
        assert (closed.amount, closed.royalty, closed.payee_amount, closed.refund) == (
            c.amount, c.royalty, c.payee_amount, c.refund)
        assert (reclaimed.status, reclaimed.refund) == ("reclaimed", 5 * 10**13)


def test_rebuild_gives_the_same_rows(flow):
    before = snapshot(flow.dep)
    assert before["models"] and before["channels"] and before["holder_dividends"]
    rebuilt = index_sync.sync(flow.dep, rebuild=True)
    assert rebuilt.rebuilt and rebuilt.from_block == 0
    assert snapshot(flow.dep) == before


def test_dividends_by_source_match_the_chain(flow):
    dep, token = flow.dep, flow.token
    with dep.index.session() as s:
        rows = {r.source: r for r in s.execute(select(DividendSourceRow).where(
            DividendSourceRow.dataset_id == flow.ds_id)).scalars()}
    assert rows["training_fee"].distributed == 5 * FEE  # two models, three checkpoints
    assert rows["training_fee"].payments == 5
    assert rows["prediction_royalty"].distributed == flow.closed.royalty > 0
    assert rows["rejected_stake"].distributed == flow.stake > 0
    assert rows["direct_payment"].distributed == flow.direct
    assert sum(r.distributed for r in rows.values()) == token.total_distributed()
    assert sum(r.per_share for r in rows.values()) == token.per_share()
    assert all(r.held == 0 for r in rows.values())
    assert dep.registry.held_of(flow.ds_id) == 0


def test_each_holder_sources_add_up_to_what_the_token_says_it_earned(flow):
    result = impact(flow.dep, "pics")
    token = flow.token
    people = {c.account: c for c in result.contributors}
    assert len(people) >= 3  # ann, ben, eve (a buyer)
    for account, c in people.items():
        earned = token.dividends_of(account) + token.withdrawn_of(account)
        assert sum(c.dividends.values()) == c.earned_wei == earned  # to the wei
        assert (c.waiting_wei, c.withdrawn_wei) == (token.dividends_of(account),
                                                    token.withdrawn_of(account))
        assert c.shares == token.balanceOf(account)
        # each source against the exact (unfloored) share computed from the chain's balances
        for source in SOURCES:
            exact = sum((Fraction(before.get(account, 0) * growth, MAG)
                         for src, before, growth in flow.payments if src == source), Fraction(0))
            assert abs(c.dividends[source] - exact) <= len(flow.payments), (account, source)
    assert people[flow.acct["ben"].address].withdrawn_wei > 0
    assert people[flow.acct["eve"].address].dividends["rejected_stake"] == 0  # bought later
    assert people[flow.acct["eve"].address].dividends["direct_payment"] > 0


def test_impact_models_snapshots_and_contributors(flow):
    dep = flow.dep
    result = impact(dep, "pics")
    seed, batch = dep.market.get_entry(flow.ds_id, 0), dep.market.get_entry(flow.ds_id, 1)
    assert (result.entry_count, result.item_count) == (2, seed.item_count + batch.item_count)
    assert (result.training_fee, result.min_royalty_bps) == (FEE, 2000)
    a, b = result.models
    assert [(c.entries, c.items, c.attested, c.best) for c in a.checkpoints] == [
        (1, seed.item_count, True, True), (2, seed.item_count + batch.item_count, True, False)]
    assert (a.best_checkpoint, a.best_metric_bps, a.trained_entries) == (1, 9_500, 2)
    assert [(c.entries, c.attested, c.best) for c in b.checkpoints] == [(1, True, True)]
    people = {c.account: c for c in result.contributors}
    ann, ben = people[flow.acct["ann"].address], people[flow.acct["ben"].address]
    assert (ann.entries, ann.items, ann.models) == ((0,), seed.item_count, (1, 2))
    assert (ben.entries, ben.items, ben.models) == ((1,), batch.item_count, (1,))  # not b
    eve = people[flow.acct["eve"].address]
    assert (eve.entries, eve.items, eve.models) == ((), 0, ())
    assert sum(s.distributed_wei for s in result.sources) == result.total_distributed


def test_model_list_and_show(flow):
    dep = flow.dep
    a, b = list_models(dep)
    assert (a.predictions_paid, a.paid_wei, a.royalty_wei) == (37, 37 * PRICE, flow.closed.royalty)
    assert (a.channels, a.open_channels, a.best_checkpoint, a.best_metric_bps) == (2, 0, 1, 9_500)
    assert b.predictions_paid is None and b.paid_wei == 0  # a free model
    assert [m.model_id for m in list_models(dep, "pics")] == [1, 2]
    detail = show_model(dep, 1)
    assert detail.best is not None and detail.best.file_sha256 == "0x" + SHA1.hex()
    assert (detail.best.attestor, detail.best.attested_metric_bps, detail.best.metric_bps) == (
        flow.acct["ann"].address, 9_500, 8_000)
    assert [c.attested for c in detail.checkpoints] == [True, True]
    assert [c.status for c in detail.channels] == ["closed", "reclaimed"]
    with pytest.raises(NotFoundError, match="no model 9"):
        show_model(dep, 9)
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        list_models(dep, "nope")


def _event(contract, name, address, block, index, **args):
    return ChainEvent(contract, name, address, block, index, "0x" + "00" * 32, args)


def test_held_and_released_dividends_through_the_applier(flow):
    """Paths a real ShareToken never takes here (it always has holders, so it never refuses a
    dividend): fed as decoded events to the applier of the sync, in a transaction rolled back
    afterwards."""
    dep, token = flow.dep, flow.token
    registry = dep.registry.address
    ben = flow.acct["ben"].address
    block = dep.chain.block_number() + 1
    a_wei, b_wei = 3 * 10**14 + 1, 10**14 + 2
    with dep.index.session() as s:
        applier = index_sync._Applier(dep, s)
        ds = s.get(index_sync.DatasetRow, flow.ds_id)
        ps0, supply = ds.per_share, ds.total_supply
        for n, (source, wei) in enumerate(((1, a_wei), (2, b_wei))):
            applier.apply(_event("ModelRegistry", "DividendPaid", registry, block, n,
                                 dataset_id=flow.ds_id, model_id=1, source=source, amount=wei,
                                 held=True))
        sources = applier._sources_of(flow.ds_id)
        assert (sources["training_fee"].held, sources["prediction_royalty"].held) == (a_wei,
                                                                                      b_wei)
        growth = (a_wei + b_wei) * MAG // supply
        ps_fee, ps_royalty = (sources[k].per_share for k in ("training_fee",
                                                             "prediction_royalty"))
        applier.apply(_event("ModelRegistry", "HeldReleased", registry, block, 2,
                             dataset_id=flow.ds_id, amount=a_wei + b_wei))
        applier.apply(_event("ShareToken", "DividendsDistributed", token.address, block, 3,
                             payer=registry, amount=a_wei + b_wei, per_share=ps0 + growth,
                             carried=0))
        applier.finish()
        assert sources["training_fee"].held == sources["prediction_royalty"].held == 0
        assert sum(r.per_share for r in sources.values()) == ps0 + growth
        # the release's growth split in proportion to the held wei of each source
        part = growth * a_wei // (a_wei + b_wei)
        assert part > 0
        assert sources["training_fee"].per_share - ps_fee == part
        assert sources["prediction_royalty"].per_share - ps_royalty == growth - part
        # ben withdraws: settled by source, adding up to the token's arithmetic
        holder = applier._holder(token.address, ben, flow.ds_id)
        owed_before = holder.owed + holder.balance * (ps0 - holder.per_share_paid) // MAG
        applier.apply(_event("ShareToken", "DividendsWithdrawn", token.address, block, 4,
                             account=ben, amount=0))
        settled = sum(r.settled for r in s.execute(select(HolderDividendRow).where(
            HolderDividendRow.account == ben)).scalars())
        assert settled == holder.withdrawn + owed_before + holder.balance * growth // MAG
        # a registry distribution whose DividendPaid never comes cannot be attributed
        applier.apply(_event("ShareToken", "DividendsDistributed", token.address, block, 6,
                             payer=registry, amount=5, per_share=ps0 + growth, carried=0))
        with pytest.raises(IntegrityError, match="cannot name its source"):
            applier.finish()
        s.rollback()
    assert index_sync.sync(dep).events == 0
    with dep.index.session() as s:  # rolled back
        assert all(r.held == 0 for r in s.execute(select(DividendSourceRow)).scalars())


def test_a_home_without_a_registry_keeps_working(flow):
    dep = flow.dep
    contracts = dep.config.contracts
    saved = contracts.pop("ModelRegistry")
    try:
        result = index_sync.sync(dep)
        assert result.rebuilt  # the cache named a registry: it starts over without it
        with dep.index.session() as s:
            assert s.execute(select(ModelRow)).first() is None
        got = impact(dep, "pics")
        assert got.models == ()
        by_source = {s.source: s.distributed_wei for s in got.sources}
        # the registry's payments are, to this home, payments by some account
        assert by_source["direct_payment"] == flow.direct + 5 * FEE + flow.closed.royalty
        assert by_source["rejected_stake"] == flow.stake
    finally:
        contracts["ModelRegistry"] = saved
    assert index_sync.sync(dep).rebuilt
    assert [m.model_id for m in list_models(dep)] == [1, 2]


@settings(max_examples=300, deadline=None)
@given(balance=st.integers(0, 2**88 - 1),
       deltas=st.lists(st.integers(0, 2**88 - 1), min_size=1, max_size=len(SOURCES)))
def test_a_settlement_split_by_source_adds_up_to_the_token_and_stays_within_a_wei(balance,
                                                                                  deltas):
    by_source = dict(zip(SOURCES, deltas, strict=False))
    parts = split_by_source(balance, by_source)
    assert set(parts) == set(by_source)
    assert sum(parts.values()) == balance * sum(by_source.values()) // MAG  # the token's credit
    for source, delta in by_source.items():
        assert abs(parts[source] - Fraction(balance * delta, MAG)) < 1
        if delta == 0:
            assert parts[source] == 0
