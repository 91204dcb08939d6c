"""Keeping the index's chain-event cache in step with the chain.

Algorithm (see ``docs/index.md``):

1. Check the last synced block: if the chain no longer has it with the stored hash (a
   reorganisation, or another chain behind the same URL), the cache is cleared and rebuilt.
2. From the last synced block + 1 to the head, in ranges of ``range_size`` blocks: read the
   DataMarket's logs (and the ModelRegistry's and ComputeMarket's, when the home names them),
   learn the share tokens of datasets created in the range, read every share token's logs, and
   apply all of them in chain order in ONE database transaction that also moves the sync state. A range is applied at most once: the transaction starts by moving the
   state forward only if it still names the range's first block - 1 (another process that synced
   it first wins, this one starts again from there).
3. Record the hashes of the last ``confirmations`` blocks, to report how deep a reorg went.

Dividends are kept by source (training fee, prediction royalty, rejected stake, direct
payment) per dataset and per holder, settled with the token's own integer arithmetic, so the
sources of a holder add up to what the token says it earned, to the wei.

Manifests are read once, when the event that names them is applied: a proposal's items go to
the ``items`` table as pending, become accepted when it is accepted, and are deleted when it is
rejected or expires.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from databright.errors import ChainError, IntegrityError, StorageError
from databright.index.cache import (
    CHAIN_TABLES,
    DatasetRow,
    EntryRow,
    HolderRow,
    ItemRow,
    ProposalRow,
    RefundRow,
    SyncedBlock,
    SyncState,
    VoteRow,
)
from databright.index.compute import COMPUTE_TABLES
from databright.index.credits import RegistryAccountRow
from databright.index.withdrawals import HolderSourceWithdrawnRow
from databright.market.context import Deployment
from databright.market.sync_compute import ComputeMarketEvents
from databright.market.sync_models import (
    DIVIDEND_MAG,
    ZERO,
    ModelMarketEvents,
    as_hex,
)
from databright.market.sync_withdrawals import record_withdrawal

RANGE_SIZE = 2_000
CONFIRMATIONS = 12
#: every chain-derived table: ``clear`` (a rebuild, a reorg) deletes them all
REBUILT_TABLES = CHAIN_TABLES + COMPUTE_TABLES + (HolderSourceWithdrawnRow, RegistryAccountRow)
STATUS = {1: "open", 2: "accepted", 3: "rejected", 4: "expired"}


@dataclass(frozen=True)
class SyncResult:
    """What one sync did.

    Attributes:
        from_block, to_block: the blocks applied (``from_block > to_block``: nothing new).
        events: logs applied.
        ranges: database transactions (one per block range).
        rebuilt: the cache was cleared first (``index rebuild``, a reorg, another market).
        reorg_depth: blocks that a reorganisation replaced (0: none seen).
        seconds: wall time.
    """

    from_block: int
    to_block: int
    events: int
    ranges: int
    rebuilt: bool
    reorg_depth: int
    seconds: float


def ensure_synced(dep: Deployment) -> SyncResult:
    """Bring the cache up to the chain's head (two RPC calls when nothing changed)."""
    return sync(dep)


def registry_address(dep: Deployment) -> str | None:
    """The home's ModelRegistry, or ``None`` (a home without one syncs the market alone)."""
    return dep.config.contracts.get("ModelRegistry") or None


def compute_address(dep: Deployment) -> str | None:
    """The home's ComputeMarket, or ``None`` (homes made before the compute market)."""
    return dep.config.contracts.get("ComputeMarket") or None


def sync(dep: Deployment, *, range_size: int = RANGE_SIZE, confirmations: int = CONFIRMATIONS,
         rebuild: bool = False) -> SyncResult:
    """Apply every new DataMarket, ShareToken, ModelRegistry and ComputeMarket log to the index.

    Args:
        dep: the open deployment.
        range_size: blocks read and applied per database transaction.
        confirmations: how many recent block hashes to keep for reorg detection.
        rebuild: clear the chain-derived tables first and read the chain from block 0.

    Raises:
        ChainError: the chain kept reorganising under the sync (five attempts).
    """
    started = time.perf_counter()
    rebuilt, reorg_depth = rebuild, 0
    total = ranges = 0
    first, last_applied = -1, -1
    for _attempt in range(5):
        last, depth = _check_state(dep, rebuild)
        rebuild = False
        rebuilt = rebuilt or depth is not None
        reorg_depth = max(reorg_depth, depth or 0)
        first = last + 1 if not ranges else first
        head = dep.chain.block_number()
        start, complete = last + 1, True
        while start <= head:
            end = min(start + range_size - 1, head)
            applied = _apply_range(dep, start, end)
            if applied is None:  # another process synced it first, or the chain moved: recheck
                complete = False
                break
            total += applied
            ranges += 1
            last_applied = end
            start = end + 1
        if complete:
            if ranges:
                _remember_hashes(dep, confirmations)
            return SyncResult(first, max(last_applied, first - 1), total, ranges, rebuilt,
                              reorg_depth, time.perf_counter() - started)
    raise ChainError("the chain kept changing while the index was syncing: try again")


def _check_state(dep: Deployment, rebuild: bool) -> tuple[int, int | None]:
    """The last synced block, after clearing the cache when it no longer matches the chain.

    Returns ``(last_block, depth)``: ``depth`` is ``None`` when nothing was cleared, else how
    many recent blocks a reorganisation replaced (0 for a rebuild asked for, or another market).
    """
    from databright.chain.events import block_hash

    market, chain_id, registry = dep.market.address, dep.chain.chain_id, registry_address(dep)
    with dep.index.session() as s:
        state = s.get(SyncState, 1)
    depth: int | None = None
    if state is not None and (rebuild or state.market != market or state.chain_id != chain_id
                              or state.model_registry != registry):
        depth = 0
    elif (state is not None and state.last_block >= 0
          and block_hash(dep.chain, state.last_block) != state.last_block_hash):
        depth = _reorg_depth(dep)
    if depth is not None:
        clear(dep)
        state = None
    if state is None:
        _start(dep, chain_id, market, registry)
        return -1, depth if depth is not None else (0 if rebuild else None)
    return state.last_block, None


def clear(dep: Deployment) -> None:
    """Delete every chain-derived row (one transaction); off-chain tables are kept."""
    with dep.index.session() as s:
        for table in reversed(REBUILT_TABLES):
            s.execute(delete(table))


def _start(dep: Deployment, chain_id: int, market: str, registry: str | None) -> None:
    try:
        with dep.index.session() as s:
            s.add(SyncState(id=1, chain_id=chain_id, market=market, model_registry=registry,
                            last_block=-1, last_block_hash=""))
    except DbIntegrityError:
        pass  # another process started the cache at the same moment


def _reorg_depth(dep: Deployment) -> int:
    """How many of the remembered recent blocks the chain has replaced."""
    from databright.chain.events import block_hash

    with dep.index.session() as s:
        known = s.execute(select(SyncedBlock).order_by(SyncedBlock.block_number.desc())).scalars()
        depth = 0
        for row in known:
            if block_hash(dep.chain, row.block_number) == row.block_hash:
                return depth
            depth += 1
        return depth


def _remember_hashes(dep: Deployment, confirmations: int) -> None:
    from databright.chain.events import block_hash

    with dep.index.session() as s:
        last = s.get(SyncState, 1).last_block  # type: ignore[union-attr]
        rows = []
        for number in range(max(0, last - confirmations + 1), last + 1):
            found = block_hash(dep.chain, number)
            if found is not None:
                rows.append({"block_number": number, "block_hash": found})
        s.execute(delete(SyncedBlock))
        if rows:
            s.execute(insert(SyncedBlock), rows)


def _apply_range(dep: Deployment, start: int, end: int) -> int | None:
    """Read and apply ``[start, end]`` in one transaction; ``None`` if another process did."""
    from databright.chain.events import block_hash, in_order

    decoder = _decoder(dep)
    end_hash = block_hash(dep.chain, end)
    market_events = decoder.read("DataMarket", [dep.market.address], start, end)
    registry = registry_address(dep)
    registry_events = decoder.read("ModelRegistry", [registry], start, end) if registry else []
    compute = compute_address(dep)
    compute_events = decoder.read("ComputeMarket", [compute], start, end) if compute else []
    with dep.index.session() as s:
        tokens = list(s.execute(select(DatasetRow.share_token)).scalars())
    tokens += [e.args["share_token"] for e in market_events if e.name == "DatasetCreated"]
    token_events = decoder.read("ShareToken", tokens, start, end)
    if block_hash(dep.chain, end) != end_hash:
        return None  # the chain reorganised while the range was read
    events = in_order(market_events + registry_events + compute_events + token_events)
    with dep.index.session() as s:
        moved = s.execute(
            update(SyncState)
            .where(SyncState.id == 1, SyncState.last_block == start - 1)
            .values(last_block=end, last_block_hash=end_hash)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            s.rollback()
            return None
        applier = _Applier(dep, s)
        for event in events:
            applier.apply(event)
        applier.finish()
    return len(events)


def _decoder(dep: Deployment) -> Any:
    from databright.chain.events import EventDecoder

    if "_event_decoder" not in dep.__dict__:
        dep.__dict__["_event_decoder"] = EventDecoder(dep.chain)
    return dep.__dict__["_event_decoder"]


class _Applier(ModelMarketEvents, ComputeMarketEvents):
    """Applies decoded events to the rows of one transaction."""

    def __init__(self, dep: Deployment, session: Session) -> None:
        self.dep = dep
        self.s = session
        self.by_token = {t: d for t, d in session.execute(
            select(DatasetRow.share_token, DatasetRow.dataset_id))}
        self.market = dep.market.address.lower()
        self.registry = (registry_address(dep) or "").lower()
        # the compute market pays datasets only training fees (a job's, or held ones released)
        self.compute = (dep.config.contracts.get("ComputeMarket") or "").lower()
        self._init_model_market()

    def apply(self, event: Any) -> None:
        # the ComputeMarket's DividendPaid, HeldReleased, Withdrawn share names with the registry's
        prefix = "on_compute_" if event.contract == "ComputeMarket" else "on_"
        handler = getattr(self, f"{prefix}{event.name}", None)
        if handler is not None:
            handler(event, dict(event.args))

    # -- DataMarket -------------------------------------------------------------------------------
    def on_DatasetCreated(self, ev: Any, a: dict[str, Any]) -> None:
        ds_id = int(a["dataset_id"])
        row = DatasetRow(
            dataset_id=ds_id, name=a["name"], symbol=a["symbol"], share_token=a["share_token"],
            initiator=a["initiator"], card_cid=a["card_cid"], quorum_bps=int(a["quorum_bps"]),
            approval_bps=int(a["approval_bps"]), voting_period=int(a["voting_period"]),
            stake=int(a["stake"]), reward_r0=int(a["reward_r0"]), reward_n0=int(a["reward_n0"]),
            evaluator=a["evaluator"], training_fee=int(a["training_fee"]),
            min_royalty_bps=int(a["min_royalty_bps"]), item_count=0, entry_count=0, total_supply=0,
            total_distributed=0, total_withdrawn=0, dividends_held=0, per_share=0,
            validation_manifest_cid=None, items_loaded=False, created_block=ev.block_number,
        )
        self.s.add(row)
        self.by_token[a["share_token"]] = ds_id
        load_validation_items(self.dep, self.s, row)

    def on_EntryAdded(self, ev: Any, a: dict[str, Any]) -> None:
        ds = self._dataset(int(a["dataset_id"]))
        pid = int(a["proposal_id"])
        entry = EntryRow(
            dataset_id=ds.dataset_id, index=int(a["index"]), manifest_cid=a["manifest_cid"],
            merkle_root=as_hex(a["merkle_root"]), item_count=int(a["item_count"]),
            contributor=a["contributor"], proposal_id=pid, shares_minted=int(a["shares_minted"]),
            first_item=int(a["first_item"]), items_loaded=False, block_number=ev.block_number,
        )
        ds.entry_count += 1
        ds.item_count += entry.item_count
        self.s.add(entry)
        if pid == 0:
            entry.items_loaded = _load_items(self.dep, self.s, ds.dataset_id, entry.manifest_cid,
                                             0, "accepted")
        else:  # the proposal's items are in the table already (pending until it is finalized)
            proposal = self.s.get(ProposalRow, pid)
            entry.items_loaded = bool(proposal and proposal.items_loaded)

    def on_ProposalCreated(self, ev: Any, a: dict[str, Any]) -> None:
        pid, ds_id = int(a["proposal_id"]), int(a["dataset_id"])
        row = ProposalRow(
            proposal_id=pid, dataset_id=ds_id, proposer=a["proposer"],
            manifest_cid=a["manifest_cid"], merkle_root=as_hex(a["merkle_root"]),
            item_count=int(a["item_count"]), stake=int(a["stake"]), snapshot=int(a["snapshot"]),
            snapshot_supply=None, deadline=int(a["deadline"]),
            position=None if a.get("position") is None else int(a["position"]),
            yes=0, no=0, score_bps=None, status="open", shares_minted=0, items_loaded=False,
            created_block=ev.block_number, finalized_block=None,
        )
        self.s.add(row)
        row.items_loaded = _load_items(self.dep, self.s, ds_id, row.manifest_cid, pid, "pending")

    def on_Voted(self, ev: Any, a: dict[str, Any]) -> None:
        p = self._proposal(int(a["proposal_id"]))
        weight = int(a["weight"])
        if a["support"]:
            p.yes += weight
        else:
            p.no += weight
        self.s.add(VoteRow(proposal_id=p.proposal_id, voter=a["voter"], support=bool(a["support"]),
                           weight=weight, block_number=ev.block_number))

    def on_ScorePosted(self, ev: Any, a: dict[str, Any]) -> None:
        self._proposal(int(a["proposal_id"])).score_bps = int(a["score_bps"])

    def on_ProposalFinalized(self, ev: Any, a: dict[str, Any]) -> None:
        p = self._proposal(int(a["proposal_id"]))
        p.status = STATUS.get(int(a["status"]), str(a["status"]))
        p.shares_minted = int(a["shares_minted"])
        p.snapshot_supply = int(a["snapshot_supply"])
        p.yes, p.no = int(a["yes"]), int(a["no"])
        p.finalized_block = ev.block_number
        items = ItemRow.proposal_id == p.proposal_id
        if p.status == "accepted":
            self.s.execute(update(ItemRow).where(items).values(state="accepted"))
        else:  # rejected or expired: its items may be proposed again
            self.s.execute(delete(ItemRow).where(items))

    def on_RefundCredited(self, ev: Any, a: dict[str, Any]) -> None:
        self._refund(a["account"]).credited += int(a["amount"])

    def on_RefundWithdrawn(self, ev: Any, a: dict[str, Any]) -> None:
        self._refund(a["account"]).withdrawn += int(a["amount"])

    def on_DividendsHeld(self, ev: Any, a: dict[str, Any]) -> None:
        ds = self._dataset(int(a["dataset_id"]))
        ds.dividends_held += int(a["amount"])
        self._source(ds.dataset_id, "rejected_stake").held += int(a["amount"])

    def on_DividendsReleased(self, ev: Any, a: dict[str, Any]) -> None:
        ds = self._dataset(int(a["dataset_id"]))
        ds.dividends_held -= int(a["amount"])
        self._source(ds.dataset_id, "rejected_stake").held -= int(a["amount"])
    # -- ShareToken -------------------------------------------------------------------------------
    def on_Transfer(self, ev: Any, a: dict[str, Any]) -> None:
        ds = self._dataset(self.by_token[ev.address])
        value = int(a["value"])
        if a["sender"] == ZERO:
            ds.total_supply += value
        else:
            sender = self._settled(ev.address, a["sender"], ds)
            sender.balance -= value
        if a["receiver"] == ZERO:
            ds.total_supply -= value
        else:
            self._settled(ev.address, a["receiver"], ds).balance += value

    def on_DividendsDistributed(self, ev: Any, a: dict[str, Any]) -> None:
        ds = self._dataset(self.by_token[ev.address])
        amount = int(a["amount"])
        # the token's own per-share total after this distribution (its rounding carry included)
        growth = int(a["per_share"]) - ds.per_share
        ds.total_distributed += amount
        ds.per_share = int(a["per_share"])
        payer = str(a["payer"]).lower()
        if payer == self.market:  # a rejected proposal's stake (or its release)
            self._paid(ds.dataset_id, "rejected_stake", amount, growth)
        elif payer and payer == self.registry:
            if self._releasing is not None and self._releasing[0] == ds.dataset_id:
                self._paid_release(ds.dataset_id, self._releasing[1], amount, growth)
                self._releasing = None
            else:
                self._unnamed = (ds.dataset_id, amount, growth)
        elif payer and payer == self.compute:
            self._paid(ds.dataset_id, self.compute_source(), amount, growth)
        else:  # `distribute` by anyone
            self._paid(ds.dataset_id, "direct_payment", amount, growth)

    def on_DividendsWithdrawn(self, ev: Any, a: dict[str, Any]) -> None:
        ds = self._dataset(self.by_token[ev.address])
        holder = self._settled(ev.address, a["account"], ds)
        ds.total_withdrawn += int(a["amount"])
        holder.withdrawn += int(a["amount"])
        holder.owed = 0
        record_withdrawal(self.s, ds.dataset_id, a["account"])

    def _settled(self, token: str, account: str, ds: DatasetRow) -> HolderRow:
        """The holder with its dividends since the last settlement credited, as the token does
        before every balance change and withdrawal (``DIVIDEND_MAG`` arithmetic, so
        ``dividends_of`` is answered without a call), and split by source."""
        holder = self._holder(token, account, ds.dataset_id)
        if holder.per_share_paid != ds.per_share:
            holder.owed += holder.balance * (ds.per_share - holder.per_share_paid) // DIVIDEND_MAG
            holder.per_share_paid = ds.per_share
            self._settle_sources(ds.dataset_id, account, holder.balance)
        return holder

    # -- rows -------------------------------------------------------------------------------------
    def _dataset(self, ds_id: int) -> DatasetRow:
        row = self.s.get(DatasetRow, ds_id)
        if row is None:
            raise IntegrityError(f"the chain names dataset {ds_id} before creating it")
        return row

    def _proposal(self, pid: int) -> ProposalRow:
        row = self.s.get(ProposalRow, pid)
        if row is None:
            raise IntegrityError(f"the chain names proposal #{pid} before creating it")
        return row

    def _holder(self, token: str, account: str, ds_id: int) -> HolderRow:
        row = self.s.get(HolderRow, (token, account))
        if row is None:
            row = HolderRow(share_token=token, account=account, dataset_id=ds_id, balance=0,
                            withdrawn=0, owed=0, per_share_paid=0)
            self.s.add(row)
        return row

    def _refund(self, account: str) -> RefundRow:
        row = self.s.get(RefundRow, account)
        if row is None:
            row = RefundRow(account=account, credited=0, withdrawn=0)
            self.s.add(row)
        return row




def _load_items(dep: Deployment, s: Session, ds_id: int, manifest_cid: str,
                proposal_id: int | None, state: str) -> bool:
    """Insert the manifest's CIDs as item rows; False when it cannot be read from the store."""
    from databright.storage.manifest import read_manifest_table

    try:
        cids = read_manifest_table(dep.store, manifest_cid).column("cid").to_pylist()
    except StorageError:
        return False
    if cids:
        s.execute(insert(ItemRow), [
            {"dataset_id": ds_id, "cid": cid, "proposal_id": proposal_id, "state": state}
            for cid in cids
        ])
    return True


def load_validation_items(dep: Deployment, s: Session, ds: DatasetRow) -> None:
    """Read the dataset card and its validation manifest into the item table (once)."""
    try:
        card = json.loads(dep.store.get(ds.card_cid))
    except (StorageError, ValueError):
        return
    val = card.get("validation_manifest") if isinstance(card, dict) else None
    ds.validation_manifest_cid = val
    ds.items_loaded = True if not val else _load_items(dep, s, ds.dataset_id, val, None,
                                                        "validation")


def reload_missing(dep: Deployment, s: Session, ds_id: int) -> None:
    """Retry the manifests of ``ds_id`` that could not be read when their event was synced.

    Raises:
        IntegrityError: the validation split or an accepted entry's manifest is still missing
            (its items could otherwise be proposed and paid for again).
    """
    ds = s.get(DatasetRow, ds_id)
    if ds is None:
        return
    if not ds.items_loaded:
        load_validation_items(dep, s, ds)
        if not ds.items_loaded:
            raise IntegrityError(
                f"dataset {ds.name}: its card {ds.card_cid} or validation manifest is missing "
                "from the store"
            )
    for p in s.execute(select(ProposalRow).where(
            ProposalRow.dataset_id == ds_id, ProposalRow.status.in_(("open", "accepted")),
            ProposalRow.items_loaded.is_(False))).scalars():
        state = "pending" if p.status == "open" else "accepted"
        p.items_loaded = _load_items(dep, s, ds_id, p.manifest_cid, p.proposal_id, state)
    for e in s.execute(select(EntryRow).where(EntryRow.dataset_id == ds_id,
                                              EntryRow.items_loaded.is_(False))).scalars():
        if e.proposal_id == 0:
            e.items_loaded = _load_items(dep, s, ds_id, e.manifest_cid, 0, "accepted")
        else:
            source = s.get(ProposalRow, e.proposal_id)
            e.items_loaded = bool(source and source.items_loaded)
        if not e.items_loaded:
            raise IntegrityError(
                f"dataset {ds.name}: the manifest {e.manifest_cid} of accepted entry {e.index} "
                "is missing from the store; its items could be proposed and paid for again"
            )
