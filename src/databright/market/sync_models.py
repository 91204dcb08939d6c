"""The model market's part of the index sync: ModelRegistry events (models, checkpoints,
channels, the registry's credits and withdrawals), and dividends by source.

Every distribution to a share token gets one source (training fee, prediction royalty, rejected
stake, direct payment) from its payer; each source keeps its own running per-share total, and
a holder's sources are settled at the moments the token settles the holder, so they add up to
the token's figure to the wei (see ``docs/index.md``, "Dividends by source"). The event
handlers here are mixed into the sync's applier (``market.sync._Applier``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from databright.errors import IntegrityError
from databright.index.cache import (
    SOURCES,
    ChannelRow,
    CheckpointRow,
    DividendPaymentRow,
    DividendSourceRow,
    HolderDividendRow,
    ModelRow,
)
from databright.index.credits import RegistryAccountRow

ZERO = "0x" + "00" * 20
#: ShareToken's magnification of the per-share dividend total (its ``MAG``)
DIVIDEND_MAG = 2**32
#: ``DividendPaid.source`` of the ModelRegistry
REGISTRY_SOURCE = {1: "training_fee", 2: "prediction_royalty"}


def split_by_source(balance: int, deltas: dict[str, int]) -> dict[str, int]:
    """A holder's earnings of one settlement, by source.

    The token credits ``balance * sum(deltas) // MAG`` (floored once). Each source gets its own
    floored part and the few wei the separate floorings lose (fewer than the number of sources)
    go one each to the sources with the largest remainders (ties: in the order of ``SOURCES``),
    so the parts add up to the token's figure exactly and none is more than 1 wei from its
    exact share.
    """
    total = balance * sum(deltas.values()) // DIVIDEND_MAG
    parts: dict[str, int] = {}
    remainders: dict[str, int] = {}
    for src, delta in deltas.items():
        parts[src], remainders[src] = divmod(balance * delta, DIVIDEND_MAG)
    left = total - sum(parts.values())
    order = sorted(remainders, key=lambda k: (-remainders[k], _rank(k)))
    for src in order[:left]:
        parts[src] += 1
    return parts


def _rank(source: str) -> int:
    return SOURCES.index(source) if source in SOURCES else len(SOURCES)


def block_time(chain: Any, number: int) -> int | None:
    """The timestamp of block ``number``: the embedded chain's header read in-process (no
    JSON-RPC round trip; ``None`` past its head: only events made up by a test are), a node's
    ``eth_getBlockByNumber`` otherwise."""
    if chain.embedded is not None:
        with chain.embedded.mutex:
            evm: Any = chain.embedded.backend.chain
            if int(number) > evm.get_canonical_head().block_number:
                return None
            return int(evm.get_canonical_block_header_by_number(int(number)).timestamp)
    with chain.translating():
        return int(chain.w3.eth.get_block(int(number))["timestamp"])


def as_hex(value: Any) -> str:
    """``bytes32`` fields as 0x-hex; anything else as its string."""
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value)


class ModelMarketEvents:
    """ModelRegistry handlers and the per-source dividend accounts of the sync's applier."""

    s: Session
    dep: Any
    _sources: dict[int, dict[str, DividendSourceRow]]
    #: a registry ``distribute`` waiting for its DividendPaid: dataset, amount, per-share growth
    _unnamed: tuple[int, int, int] | None
    #: a HeldReleased waiting for its distribution: dataset, held wei by source
    _releasing: tuple[int, dict[str, int]] | None
    #: the event being applied (set by the applier's ``apply``, see ``__init_subclass__``)
    _event: Any
    #: block timestamps read for payment rows, by block number (one read per block)
    _block_times: dict[int, int | None]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the applier's ``apply`` so the dividend accounts know the event being applied:
        every payment row records the block (and its time) of the event that paid it, whichever
        handler reaches :meth:`_paid`."""
        super().__init_subclass__(**kwargs)
        apply: Callable[[Any, Any], None] | None = cls.__dict__.get("apply")
        if apply is None:
            return

        @functools.wraps(apply)
        def applying(self: Any, event: Any) -> None:
            self._event = event
            apply(self, event)

        cls.apply = applying  # type: ignore[attr-defined]

    def _init_model_market(self) -> None:
        self._sources = {}
        self._event = None
        self._block_times = {}
        # the registry's `distribute` logs come before its DividendPaid (which names the
        # source) and after its HeldReleased (whose wei may mix sources): each waits here
        self._unnamed = None
        self._releasing = None

    def finish(self) -> None:
        """Check that every registry payment was matched with its source."""
        if self._unnamed is not None or self._releasing is not None:
            raise IntegrityError("a ModelRegistry dividend without its DividendPaid or "
                                 "HeldReleased event: the index cannot name its source")

    def on_ModelRegistered(self, ev: Any, a: dict[str, Any]) -> None:
        self.s.add(ModelRow(
            model_id=int(a["model_id"]), dataset_id=int(a["dataset_id"]), owner=a["owner"],
            name=a["name"], program_digest=as_hex(a["program_digest"]),
            price_per_prediction=int(a["price_per_prediction"]),
            royalty_bps=int(a["royalty_bps"]), checkpoint_count=0, best_checkpoint=0,
            best_metric_bps=0, registered_block=ev.block_number,
        ))

    def on_CheckpointSubmitted(self, ev: Any, a: dict[str, Any]) -> None:
        model = self._model(int(a["model_id"]))
        number, metric = int(a["checkpoint"]), int(a["metric_bps"])
        attestor = None if a["attestor"] == ZERO else a["attestor"]
        self.s.add(CheckpointRow(
            model_id=model.model_id, checkpoint=number, cid=a["cid"],
            file_sha256=as_hex(a["file_sha256"]), entries=int(a["entries"]), metric_bps=metric,
            attestor=attestor, attested_metric_bps=metric if attestor else None,
            block_number=ev.block_number,
        ))
        model.checkpoint_count = max(model.checkpoint_count, number)
        if a["best"]:
            model.best_checkpoint, model.best_metric_bps = number, metric

    def on_CheckpointAttested(self, ev: Any, a: dict[str, Any]) -> None:
        """A self-reported checkpoint attested later by a trusted signer."""
        model = self._model(int(a["model_id"]))
        number, metric = int(a["checkpoint"]), int(a["metric_bps"])
        row = self.s.get(CheckpointRow, (model.model_id, number))
        if row is None:
            raise IntegrityError(f"the chain attests checkpoint {number} of model "
                                 f"{model.model_id} before submitting it")
        row.attestor, row.attested_metric_bps = a["attestor"], metric
        if a["best"]:
            model.best_checkpoint, model.best_metric_bps = number, metric

    def on_ChannelOpened(self, ev: Any, a: dict[str, Any]) -> None:
        self.s.add(ChannelRow(
            channel_id=int(a["channel_id"]), model_id=int(a["model_id"]), payer=a["payer"],
            deposit=int(a["deposit"]), expiry=int(a["expiry"]), reclaim_at=None, status="open",
            amount=0, royalty=0, payee_amount=0, refund=0, opened_block=ev.block_number,
            settled_block=None,
        ))

    def on_ChannelToppedUp(self, ev: Any, a: dict[str, Any]) -> None:
        self._channel(int(a["channel_id"])).deposit = int(a["deposit"])

    def on_ReclaimStarted(self, ev: Any, a: dict[str, Any]) -> None:
        channel = self._channel(int(a["channel_id"]))
        channel.status, channel.reclaim_at = "reclaiming", int(a["reclaim_at"])

    def on_ChannelClosed(self, ev: Any, a: dict[str, Any]) -> None:
        channel = self._channel(int(a["channel_id"]))
        channel.status, channel.settled_block = "closed", ev.block_number
        channel.amount, channel.royalty = int(a["amount"]), int(a["royalty"])
        channel.payee_amount, channel.refund = int(a["payee_amount"]), int(a["refund"])

    def on_ChannelReclaimed(self, ev: Any, a: dict[str, Any]) -> None:
        channel = self._channel(int(a["channel_id"]))
        channel.status, channel.settled_block = "reclaimed", ev.block_number
        channel.refund = int(a["refund"])

    def on_Credited(self, ev: Any, a: dict[str, Any]) -> None:
        """The registry credited an account (a channel's payee amount or refund, a reclaim)."""
        self._registry_account(a["account"]).credited += int(a["amount"])

    def on_Withdrawn(self, ev: Any, a: dict[str, Any]) -> None:
        """The registry paid an account everything credited to it (the ComputeMarket's
        same-named event goes to ``on_compute_Withdrawn``)."""
        row = self._registry_account(a["account"])
        row.withdrawn += int(a["amount"])
        if row.withdrawn > row.credited:
            raise IntegrityError(f"{row.account} withdrew more from the ModelRegistry than the "
                                 "index saw credited")

    def on_DividendPaid(self, ev: Any, a: dict[str, Any]) -> None:
        ds_id, amount = int(a["dataset_id"]), int(a["amount"])
        source = REGISTRY_SOURCE.get(int(a["source"]))
        if source is None:
            raise IntegrityError(f"the ModelRegistry paid dataset {ds_id} from an unknown "
                                 f"source {a['source']}")
        if a["held"]:  # the token refused: no distribution, the registry holds the wei
            self._source(ds_id, source).held += amount
            return
        if self._unnamed is None or self._unnamed[:2] != (ds_id, amount):
            raise IntegrityError(f"the ModelRegistry's DividendPaid of {amount} wei to dataset "
                                 f"{ds_id} follows no matching distribution")
        self._paid(ds_id, source, amount, self._unnamed[2])
        self._unnamed = None

    def on_HeldReleased(self, ev: Any, a: dict[str, Any]) -> None:
        ds_id, amount = int(a["dataset_id"]), int(a["amount"])
        held = {src: self._source(ds_id, src).held for src in REGISTRY_SOURCE.values()}
        if sum(held.values()) != amount:
            raise IntegrityError(f"the ModelRegistry released {amount} wei of dataset {ds_id}; "
                                 f"the index knows {sum(held.values())} held")
        for src in held:
            self._source(ds_id, src).held = 0
        self._releasing = (ds_id, {src: wei for src, wei in held.items() if wei})

    # -- dividends by source ------------------------------------------------------------------------
    def _settle_sources(self, ds_id: int, account: str, balance: int) -> None:
        sources = self._sources_of(ds_id)
        rows = {r.source: r for r in self.s.execute(select(HolderDividendRow).where(
            HolderDividendRow.dataset_id == ds_id, HolderDividendRow.account == account)).scalars()}
        for src in sources:
            if src not in rows:
                rows[src] = HolderDividendRow(dataset_id=ds_id, account=account, source=src,
                                              settled=0, per_share_paid=0)
                self.s.add(rows[src])
        deltas = {src: sources[src].per_share - rows[src].per_share_paid for src in sources}
        for src, earned in split_by_source(balance, deltas).items():
            rows[src].settled += earned
            rows[src].per_share_paid = sources[src].per_share

    def _paid(self, ds_id: int, source: str, amount: int, growth: int) -> None:
        """``amount`` wei of ``source`` reached the dataset's token: its totals, and one
        ``dividend_payments`` row at the paying event's block and that block's time."""
        row = self._source(ds_id, source)
        row.distributed += amount
        row.per_share += growth
        row.payments += 1
        if self._event is None:
            raise IntegrityError(f"a dividend of {amount} wei to dataset {ds_id} outside of an "
                                 "event: the index cannot date it")
        number = int(self._event.block_number)
        if number not in self._block_times:
            self._block_times[number] = block_time(self.dep.chain, number)
        self.s.add(DividendPaymentRow(dataset_id=ds_id, source=source, amount=amount,
                                      block_number=number, block_time=self._block_times[number]))

    def _paid_release(self, ds_id: int, held: dict[str, int], amount: int, growth: int) -> None:
        """A release of held registry wei: its per-share growth split in proportion to the
        sources' wei (the last source takes the rounding)."""
        if sum(held.values()) != amount:
            raise IntegrityError(f"dataset {ds_id}: the ModelRegistry released {amount} wei "
                                 f"but {sum(held.values())} were held")
        left = growth
        for n, (src, wei) in enumerate(held.items()):
            part = left if n == len(held) - 1 else growth * wei // amount
            self._paid(ds_id, src, wei, part)
            left -= part

    # -- rows --------------------------------------------------------------------------------------
    def _model(self, model_id: int) -> ModelRow:
        row = self.s.get(ModelRow, model_id)
        if row is None:
            raise IntegrityError(f"the chain names model {model_id} before registering it")
        return row

    def _channel(self, channel_id: int) -> ChannelRow:
        row = self.s.get(ChannelRow, channel_id)
        if row is None:
            raise IntegrityError(f"the chain names channel {channel_id} before opening it")
        return row

    def _registry_account(self, account: str) -> RegistryAccountRow:
        row = self.s.get(RegistryAccountRow, account)
        if row is None:
            row = RegistryAccountRow(account=account, credited=0, withdrawn=0)
            self.s.add(row)
        return row

    def _sources_of(self, ds_id: int) -> dict[str, DividendSourceRow]:
        """The dataset's dividend sources that have paid or held anything (cached per range)."""
        if ds_id not in self._sources:
            self._sources[ds_id] = {r.source: r for r in self.s.execute(
                select(DividendSourceRow).where(DividendSourceRow.dataset_id == ds_id)).scalars()}
        return self._sources[ds_id]

    def _source(self, ds_id: int, source: str) -> DividendSourceRow:
        sources = self._sources_of(ds_id)
        if source not in sources:
            sources[source] = DividendSourceRow(dataset_id=ds_id, source=source, distributed=0,
                                                held=0, payments=0, per_share=0)
            self.s.add(sources[source])
        return sources[source]
