"""The web pages' read models on a synthetic index: sorting by exact big numbers, search,
pages, a bounded number of queries at 100 datasets × 10,000 proposals, the tally rule."""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlalchemy import event, insert

from databright.errors import NotFoundError, UsageError
from databright.index.cache import (
    DatasetRow,
    DividendPaymentRow,
    EntryRow,
    HolderRow,
    ModelRow,
    ProposalRow,
)
from databright.index.db import open_index
from databright.market.views import card_of
from databright.market.views.amounts import Shares, Wei
from databright.market.views.datasets import (
    MAX_PAYMENTS,
    DatasetDetail,
    DatasetList,
    dataset_detail,
    list_datasets,
)
from databright.market.views.proposals import (
    ProposalDetail,
    decide,
    proposal_detail,
    snapshot_supply,
)
from databright.storage.cas import LocalBlobStore
from tests.index.conftest import fresh_database_url

N_DATASETS, N_PROPOSALS = 100, 10_000
ZERO = "0x" + "00" * 20


def _addr(n: int) -> str:
    return "0x" + f"{n:040x}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def big(request, tmp_path_factory):
    """An index (SQLite, and PostgreSQL when a server is given) with 100 datasets (revenues
    past 2**64, sizes that sort wrong as text) and 10,000 proposals, holders and models spread
    over them."""
    root = tmp_path_factory.mktemp("views")
    store = LocalBlobStore(root / "store")
    url, drop = fresh_database_url(request.param, root)
    index = open_index(url)
    rng = random.Random(7)
    datasets, proposals, holders, models, entries, payments = [], [], [], [], [], []
    for d in range(1, N_DATASETS + 1):
        card = store.put_bytes(json.dumps({"description": f"set {d} of {'cats' if d % 10 == 0 else 'dogs'}",
                                           "labels": ["a", "b"]}).encode())
        datasets.append({
            "dataset_id": d, "name": f"ds-{d:03d}", "symbol": f"DB{d}", "share_token": _addr(10_000 + d),
            "initiator": _addr(1), "card_cid": card, "quorum_bps": 3000, "approval_bps": 5000,
            "voting_period": 3600, "stake": 10**16, "reward_r0": 10**20, "reward_n0": 100, "evaluator": ZERO,
            "training_fee": 0, "min_royalty_bps": 0, "item_count": (d * 37) % 101 + (9 if d == 3 else 0),
            "entry_count": 1, "total_supply": 10**21, "total_distributed": d * 2**64 + (d % 7),
            "total_withdrawn": 0, "dividends_held": 0, "per_share": 0, "items_loaded": True,
            "created_block": d})
        entries.append({"dataset_id": d, "index": 0, "manifest_cid": card, "merkle_root": "0x" + "11" * 32,
                            "item_count": 10, "contributor": _addr(1), "proposal_id": 0,
                            "shares_minted": 10**21, "first_item": 0, "items_loaded": True,
                            "block_number": d})
        for h in range(d % 5):
            holders.append({"share_token": _addr(10_000 + d), "account": _addr(100 + h),
                                "dataset_id": d, "balance": (h + 1) * 10**18 if h != 1 else 0,
                                "withdrawn": 0, "owed": 0, "per_share_paid": 0})
        for m in range(d % 3):
            models.append({"model_id": len(models) + 1, "dataset_id": d, "owner": _addr(5),
                               "name": f"m{m}", "program_digest": "0x" + "22" * 32,
                               "price_per_prediction": 0, "royalty_bps": 0, "checkpoint_count": 0,
                               "best_checkpoint": 0, "best_metric_bps": 0, "registered_block": d})
        payments.append({"dataset_id": d, "source": "direct_payment", "amount": d * 2**64,
                             "block_number": d, "block_time": 1_700_000_000 + d})
    for p in range(1, N_PROPOSALS + 1):
        proposals.append({
            "proposal_id": p, "dataset_id": rng.randint(1, N_DATASETS), "proposer": _addr(2),
            "manifest_cid": datasets[0]["card_cid"], "merkle_root": "0x" + "33" * 32, "item_count": 5,
            "stake": 10**16, "snapshot": 200, "snapshot_supply": None, "deadline": 10**10, "position": 0,
            "yes": 0, "no": 0, "score_bps": None, "status": rng.choice(["open", "accepted", "rejected"]),
            "shares_minted": 0, "items_loaded": True, "created_block": 300 + p, "finalized_block": None})
    with index.session() as s:
        for table, rows in ((DatasetRow, datasets), (ProposalRow, proposals),
                            (HolderRow, holders), (ModelRow, models), (EntryRow, entries),
                            (DividendPaymentRow, payments)):
            s.execute(insert(table), rows)
    yield index, store, datasets, proposals, holders, models
    index.close()
    drop()


def _queries(index):
    seen: list[str] = []
    event.listen(index.engine, "before_cursor_execute",
                 lambda *a: seen.append(a[2]))
    return seen


def test_sorting_is_by_exact_numbers_not_text(big):
    index, store, datasets, *_ = big
    with index.session() as s:
        listed = list_datasets(s, store, sort="revenue", per_page=100).datasets
        assert [c.revenue_wei for c in listed] == sorted(
            (d["total_distributed"] for d in datasets), reverse=True)
        assert listed[0].revenue_wei > 2**64 * 99
        by_size = list_datasets(s, store, sort="size", per_page=100).datasets
        assert [c.items for c in by_size] == sorted((d["item_count"] for d in datasets),
                                                    reverse=True)
        newest = list_datasets(s, store, sort="newest", per_page=5).datasets
        assert [c.dataset_id for c in newest] == [100, 99, 98, 97, 96]
        names = list_datasets(s, store, sort="name", per_page=3).datasets
        assert [c.name for c in names] == ["ds-001", "ds-002", "ds-003"]


def test_counts_are_the_aggregates(big):
    index, store, _, proposals, holders, models = big
    with index.session() as s:
        listed = {c.dataset_id: c for c in list_datasets(s, store, per_page=100).datasets}
    for d in range(1, N_DATASETS + 1):
        c = listed[d]
        assert c.open_proposals == sum(1 for p in proposals
                                       if p["dataset_id"] == d and p["status"] == "open")
        assert c.shareholders == sum(1 for h in holders if h["dataset_id"] == d and h["balance"])
        assert c.models == sum(1 for m in models if m["dataset_id"] == d)
    with index.session() as s:
        by_holders = list_datasets(s, store, sort="shareholders", per_page=100).datasets
        assert [c.shareholders for c in by_holders] == sorted(
            (c.shareholders for c in listed.values()), reverse=True)


def test_search_and_pages(big):
    index, store, *_ = big
    with index.session() as s:
        cats = list_datasets(s, store, q="CATS", per_page=100)
        assert cats.total == 10 and all(c.dataset_id % 10 == 0 for c in cats.datasets)
        assert list_datasets(s, store, q="ds-05").total == 10  # ds-050..059 by name
        pages = [list_datasets(s, store, sort="newest", page=n, per_page=30) for n in (1, 4)]
        assert pages[0].pages == 4 and len(pages[1].datasets) == 10
        assert pages[1].datasets[-1].dataset_id == 1
        with pytest.raises(UsageError):
            list_datasets(s, store, per_page=101)
        with pytest.raises(UsageError):
            list_datasets(s, store, sort="price")
        with pytest.raises(UsageError):
            list_datasets(s, store, page=0)


def test_bounded_queries_and_fast_at_scale(big):
    index, store, *_ = big
    seen = _queries(index)
    with index.session() as s:
        list_datasets(s, store)  # warm the card cache and the statement cache
        dataset_detail(s, store, "ds-041")
        seen.clear()
        started = time.perf_counter()
        list_datasets(s, store, sort="revenue")
        listing = time.perf_counter() - started
        n_list = len(seen)
        seen.clear()
        started = time.perf_counter()
        d = dataset_detail(s, store, "ds-042")
        detail = time.perf_counter() - started
        n_detail = len(seen)
    print(f"list {1000 * listing:.1f} ms in {n_list} queries; "
          f"detail {1000 * detail:.1f} ms in {n_detail} queries")
    assert n_list <= 5 and n_detail <= 12
    assert listing < 0.1 and detail < 0.1
    assert d.proposal_total == sum(d.proposal_counts.values()) > 0
    assert d.payments[-1].cumulative_wei == 42 * 2**64 == d.total_distributed_wei


def test_payments_are_the_latest_with_exact_running_totals(big):
    index, store, *_ = big
    with index.session() as s:
        ds = s.get(DatasetRow, 9)
        amounts = [ds.total_distributed] + [3 * n + 2**70 for n in range(1, 1_500)]
        s.execute(insert(DividendPaymentRow), [
            {"dataset_id": 9, "source": "training_fee", "amount": a, "block_number": 500 + n,
             "block_time": None} for n, a in enumerate(amounts[1:])])
        ds.total_distributed = sum(amounts)
        s.flush()
        d = dataset_detail(s, store, "ds-009")
        assert len(d.payments) == MAX_PAYMENTS
        assert d.payments[-1].cumulative_wei == sum(amounts)
        assert [p.amount_wei for p in d.payments] == amounts[-MAX_PAYMENTS:]
        assert d.payments[0].cumulative_wei == sum(amounts[:len(amounts) - MAX_PAYMENTS + 1])
        s.rollback()


def test_dataset_detail_pages_open_first(big):
    index, store, _, proposals, *_ = big
    mine = [p for p in proposals if p["dataset_id"] == 7]
    want = sorted(mine, key=lambda p: (p["status"] != "open", -p["proposal_id"]))
    with index.session() as s:
        got = []
        page = 1
        while True:
            d = dataset_detail(s, store, "ds-007", page=page, per_page=13)
            got += [p.proposal_id for p in d.proposals]
            if page >= d.pages:
                break
            page += 1
        with pytest.raises(NotFoundError):
            dataset_detail(s, store, "<b>nope</b>")
    assert got == [p["proposal_id"] for p in want]


def test_snapshot_supply_before_finalize_counts_entries_up_to_the_snapshot(big):
    index, *_ = big
    with index.session() as s:
        p = s.get(ProposalRow, 1)
        ds = p.dataset_id
        s.add(EntryRow(dataset_id=ds, index=1, manifest_cid="x", merkle_root="0x",
                       item_count=1, contributor=_addr(3), proposal_id=0, shares_minted=5,
                       first_item=10, items_loaded=True, block_number=p.snapshot))
        s.add(EntryRow(dataset_id=ds, index=2, manifest_cid="x", merkle_root="0x",
                       item_count=1, contributor=_addr(3), proposal_id=0, shares_minted=7,
                       first_item=11, items_loaded=True, block_number=p.snapshot + 1))
        s.flush()
        assert snapshot_supply(s, p) == 10**21 + 5  # the mint after the snapshot is not in it
        p.snapshot_supply = 99
        assert snapshot_supply(s, p) == 99  # once finalized: the chain's figure
        s.rollback()


def test_proposal_detail_without_a_readable_manifest(big):
    index, store, _, proposals, *_ = big
    first_open = next(p["proposal_id"] for p in proposals if p["status"] == "open")
    with index.session() as s:
        d = proposal_detail(s, store, first_open, now=0, viewer=_addr(9))
        assert d.manifest_error and d.labels == {}  # the "manifest" is a card: not Parquet
        assert d.seconds_left == 10**10 and d.can_vote
        late = proposal_detail(s, store, first_open, now=10**10, viewer=_addr(9))
        assert late.seconds_left == 0 and not late.can_vote  # the deadline passed
        with pytest.raises(NotFoundError):
            proposal_detail(s, store, N_PROPOSALS + 1, now=0)


def test_unreadable_cards_are_not_cached(tmp_path):
    store = LocalBlobStore(tmp_path / "store")
    cid = store.put_bytes(b'{"description": "hi", "labels": ["x"]}')
    bad = store.put_bytes(b"[1, 2]")
    assert card_of(store, bad).ok is False
    path = store.path_of(cid)
    good = path.read_bytes()
    path.write_bytes(b"tampered")
    assert card_of(store, cid).ok is False  # corrupt: refused, not cached
    path.write_bytes(good)
    card = card_of(store, cid)
    assert card.ok and card.description == "hi" and card.labels == ("x",)



# -- amounts in JSON: exact decimal strings --------------------------------------------------------
def test_the_json_of_the_list_sorts_on_exact_numbers_and_writes_them_as_strings(big):
    """Revenues past 2**64 sort as numbers (not as text) and reach JSON as exact strings; the
    read model the pages get keeps them ``int`` (the ``eth`` filter formats ints)."""
    index, store, datasets, *_ = big
    with index.session() as s:
        listed = list_datasets(s, store, sort="revenue", per_page=100)
    assert all(type(c.revenue_wei) is int for c in listed.datasets)
    out = TypeAdapter(DatasetList).dump_python(listed, mode="json")
    revenue = {d["name"]: d["total_distributed"] for d in datasets}
    assert [c["revenue_wei"] for c in out["datasets"]] == [
        str(v) for v in sorted(revenue.values(), reverse=True)]
    assert all(c["revenue_wei"] == str(revenue[c["name"]]) for c in out["datasets"])
    assert isinstance(out["datasets"][0]["items"], int)  # counts stay numbers


def test_the_json_of_a_dataset_and_a_proposal_carries_every_amount_as_a_string(big):
    index, store, _, proposals, *_ = big
    with index.session() as s:
        d = dataset_detail(s, store, "ds-042")
        p = proposal_detail(s, store, next(q["proposal_id"] for q in proposals
                                           if q["dataset_id"] == 42), now=0)
    dj = TypeAdapter(DatasetDetail).dump_python(d, mode="json")
    assert dj["total_distributed_wei"] == str(42 * 2**64)
    assert dj["payments"][-1] == {"source": "direct_payment", "amount_wei": str(42 * 2**64),
                                  "block_number": 42, "block_time": 1_700_000_042,
                                  "cumulative_wei": str(42 * 2**64)}
    assert (dj["total_supply"], dj["rules"]["stake_wei"], dj["rules"]["reward_r0"]) == (
        str(10**21), str(10**16), str(10**20))
    assert dj["entries"][0]["shares_minted"] == str(10**21)
    assert [h["balance"] for h in dj["shareholders"]] == [str(10**18)]  # holder 1 has none
    assert {(x["yes"], x["no"]) for x in dj["proposals"]} == {("0", "0")}
    pj = TypeAdapter(ProposalDetail).dump_python(p, mode="json")
    assert (pj["stake_wei"], pj["shares_minted"]) == (str(10**16), "0")
    assert pj["tally"]["snapshot_supply"] == str(10**21)
    assert pj["tally"]["quorum_needed"] == str(3 * 10**20)
    assert type(p.tally.snapshot_supply) is int  # the page's read model: an int


@settings(max_examples=300, deadline=None)
@given(amount=st.integers(0, 2**256 - 1), kind=st.sampled_from([Wei, Shares]))
def test_an_amount_is_exact_digits_in_json_and_an_int_in_python(amount, kind):
    adapter = TypeAdapter(kind)
    assert adapter.dump_json(amount) == f'"{amount}"'.encode()
    assert adapter.dump_python(amount) == amount  # what the HTML pages get
    assert int(json.loads(adapter.dump_json(amount))) == amount
    schema = adapter.json_schema(mode="serialization")
    assert schema["type"] == "string" and "decimal string" in schema["description"]


# -- the tally rule (DataMarket._decide) ----------------------------------------------------------
votes = st.integers(0, 10**6)


@settings(max_examples=400, deadline=None)
@given(supply=st.integers(1, 10**6), quorum=st.integers(1, 10_000),
       approval=st.integers(0, 10_000), yes=votes, no=votes, more_yes=votes, more_no=votes,
       scored=st.booleans())
def test_an_early_decision_is_the_one_the_deadline_would_give(supply, quorum, approval, yes,
                                                               no, more_yes, more_no, scored):
    """The finalize button shows before the deadline only when no later votes can change
    the outcome: whatever the rest of the snapshot supply votes, the deadline decides the
    same."""
    yes, no = min(yes, supply), min(no, supply - min(yes, supply))
    left = supply - yes - no
    more_yes = min(more_yes, left)
    more_no = min(more_no, left - more_yes)
    early = decide(yes, no, supply, quorum, approval, closed=False, scored=scored,
                   has_evaluator=True)
    assert early in ("open", "accepted", "rejected")  # never expired before the deadline
    if early != "open":
        late = decide(yes + more_yes, no + more_no, supply, quorum, approval, closed=True,
                      scored=scored, has_evaluator=True)
        assert late == early
    if early == "accepted":
        assert scored  # an evaluator's dataset waits for the score


def test_the_deadline_rule():
    assert decide(0, 0, 100, 3000, 5000, closed=True, scored=False, has_evaluator=True) == \
        "expired"
    assert decide(30, 0, 100, 3000, 5000, closed=True, scored=False, has_evaluator=True) == \
        "accepted"
    assert decide(15, 15, 100, 3000, 5000, closed=True, scored=False, has_evaluator=True) == \
        "accepted"  # a tie meets a 50% approval
    assert decide(14, 16, 100, 3000, 5000, closed=True, scored=False, has_evaluator=True) == \
        "rejected"
    assert decide(29, 0, 100, 3000, 5000, closed=True, scored=True, has_evaluator=True) == \
        "expired"
    assert decide(60, 0, 100, 3000, 5000, closed=False, scored=False, has_evaluator=False) == \
        "accepted"
    assert decide(49, 0, 100, 3000, 5000, closed=False, scored=True, has_evaluator=True) == \
        "open"
