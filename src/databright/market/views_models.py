"""The model registry page's read model, from the index only (no chain call, no sync).

A card per model: its *shown* checkpoint (the registry's best, which is always attested; a
model without one shows its latest checkpoint, marked self-reported), its price, royalty, and
the predictions paid so far: closed channels' settled amounts divided by the price (open
channels have paid nothing yet). A fixed number of queries per page, whatever the number of
models or channels: no per-row lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from databright.errors import NotFoundError
from databright.index.cache import ChannelRow, CheckpointRow, DatasetRow, EntryRow, ModelRow
from databright.market.model_listings import ChannelView, CheckpointView, dataset_row

#: models per page of ``/models``
PAGE_SIZE = 50


@dataclass(frozen=True)
class ModelCard:
    """One model as the registry page shows it.

    Attributes:
        shown: the best checkpoint, else the latest one (``None``: no checkpoint yet).
        predictions_paid: settled wei // price (``None`` for a free model).
        paid_wei: wei consumers paid through closed channels (royalty included).
        royalty_wei: of which the dataset's shareholders received.
    """

    model_id: int
    name: str
    dataset_id: int
    dataset: str
    owner: str
    program_digest: str
    price_per_prediction: int
    royalty_bps: int
    checkpoint_count: int
    shown: CheckpointView | None
    predictions_paid: int | None
    paid_wei: int
    royalty_wei: int
    channels: int
    open_channels: int

    def to_json(self) -> dict[str, Any]:
        """JSON with every wei amount as a decimal string."""
        return {
            "model_id": self.model_id, "name": self.name, "dataset_id": self.dataset_id,
            "dataset": self.dataset, "owner": self.owner, "program_digest": self.program_digest,
            "price_per_prediction_wei": str(self.price_per_prediction),
            "royalty_bps": self.royalty_bps, "checkpoint_count": self.checkpoint_count,
            "best_checkpoint": checkpoint_json(self.shown) if self.shown else None,
            "predictions_paid": self.predictions_paid, "paid_wei": str(self.paid_wei),
            "royalty_wei": str(self.royalty_wei), "channels": self.channels,
            "open_channels": self.open_channels,
        }


@dataclass(frozen=True)
class ModelPage:
    """A model with every checkpoint and channel."""

    card: ModelCard
    checkpoints: tuple[CheckpointView, ...]
    channels: tuple[ChannelView, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.card.to_json(),
                "checkpoints": [checkpoint_json(c) for c in self.checkpoints],
                "channels": [channel_json(c) for c in self.channels]}


@dataclass(frozen=True)
class ModelList:
    """One page of models: ``total`` models match, ``cards`` from ``offset``."""

    cards: tuple[ModelCard, ...]
    total: int
    offset: int
    limit: int
    dataset: str | None


def model_list(s: Session, dataset: str | None = None, *, offset: int = 0,
               limit: int = PAGE_SIZE) -> ModelList:
    """Models by id (of ``dataset``, by name, if given), one page.

    Raises:
        NotFoundError: ``dataset`` is not in the index.
    """
    query = select(ModelRow)
    count = select(func.count()).select_from(ModelRow)
    if dataset is not None:
        ds_id = dataset_row(s, dataset).dataset_id
        query, count = query.where(ModelRow.dataset_id == ds_id), count.where(
            ModelRow.dataset_id == ds_id)
    total = int(s.execute(count).scalar_one())
    models = list(s.execute(query.order_by(ModelRow.model_id).offset(offset).limit(limit))
                  .scalars())
    return ModelList(tuple(_cards(s, models)), total, offset, limit, dataset)


def model_page(s: Session, model_id: int) -> ModelPage:
    """One model with all its checkpoints and channels.

    Raises:
        NotFoundError: no such model in the index.
    """
    model = s.get(ModelRow, model_id)
    if model is None:
        raise NotFoundError(f"no model {model_id} in the index")
    card = _cards(s, [model])[0]
    rows = list(s.execute(select(CheckpointRow).where(CheckpointRow.model_id == model_id)
                          .order_by(CheckpointRow.checkpoint)).scalars())
    checkpoints = tuple(_views(s, rows, {model_id: model}))
    channels = tuple(
        ChannelView(c.channel_id, c.model_id, c.payer, c.deposit, c.expiry, c.reclaim_at,
                    c.status, c.amount, c.royalty, c.payee_amount, c.refund)
        for c in s.execute(select(ChannelRow).where(ChannelRow.model_id == model_id)
                           .order_by(ChannelRow.channel_id)).scalars())
    return ModelPage(card, checkpoints, channels)


def _cards(s: Session, models: list[ModelRow]) -> list[ModelCard]:
    if not models:
        return []
    ids = [m.model_id for m in models]
    names: dict[int, str] = {ds: name for ds, name in s.execute(
        select(DatasetRow.dataset_id, DatasetRow.name)
        .where(DatasetRow.dataset_id.in_({m.dataset_id for m in models})))}
    money: dict[int, list[int]] = {i: [0, 0, 0, 0] for i in ids}  # paid, royalty, all, open
    for model_id, status, amount, royalty in s.execute(
            select(ChannelRow.model_id, ChannelRow.status, ChannelRow.amount, ChannelRow.royalty)
            .where(ChannelRow.model_id.in_(ids))):
        tally = money[model_id]
        tally[2] += 1
        tally[3] += status in ("open", "reclaiming")
        if status == "closed":  # amounts are wei strings on SQLite: summed here, exactly
            tally[0] += amount
            tally[1] += royalty
    # the shown checkpoint only: the best (attested) one, else the latest
    wanted = [(m.model_id, m.best_checkpoint or m.checkpoint_count) for m in models
              if m.checkpoint_count]
    rows = list(s.execute(select(CheckpointRow).where(
        tuple_(CheckpointRow.model_id, CheckpointRow.checkpoint).in_(wanted))).scalars()
                ) if wanted else []
    shown_of = {c.model_id: c for c in _views(s, rows, {m.model_id: m for m in models})}
    cards = []
    for m in models:
        shown = shown_of.get(m.model_id)
        paid, royalty, channels, open_channels = money[m.model_id]
        price = m.price_per_prediction
        cards.append(ModelCard(
            m.model_id, m.name, m.dataset_id, names.get(m.dataset_id, "?"), m.owner,
            m.program_digest, price, m.royalty_bps, m.checkpoint_count, shown,
            paid // price if price else None, paid, royalty, channels, open_channels))
    return cards


def _views(s: Session, rows: list[CheckpointRow], models: dict[int, ModelRow]
           ) -> list[CheckpointView]:
    """Checkpoints with the item count of their snapshot: the first ``k`` entries hold
    ``first_item + item_count`` of entry ``k - 1`` items (one indexed lookup per snapshot)."""
    last = {(models[c.model_id].dataset_id, c.entries - 1) for c in rows if c.entries > 0}
    sizes: dict[tuple[int, int], int] = {}
    if last:
        for ds, index, first, count in s.execute(
                select(EntryRow.dataset_id, EntryRow.index, EntryRow.first_item,
                       EntryRow.item_count)
                .where(tuple_(EntryRow.dataset_id, EntryRow.index).in_(list(last)))):
            sizes[(ds, index)] = first + count
    return [CheckpointView(
        c.model_id, c.checkpoint, c.cid, c.file_sha256, c.entries,
        sizes.get((models[c.model_id].dataset_id, c.entries - 1), 0), c.metric_bps,
        c.attestor is not None, c.attestor, c.attested_metric_bps,
        c.checkpoint == models[c.model_id].best_checkpoint, c.block_number) for c in rows]


def checkpoint_json(c: CheckpointView) -> dict[str, Any]:
    """A checkpoint; ``attested_by`` is ``None`` for a self-reported metric."""
    return {"checkpoint": c.checkpoint, "cid": c.cid, "file_sha256": c.file_sha256,
            "snapshot_entries": c.entries, "snapshot_items": c.items,
            "metric_bps": c.metric_bps, "attested": c.attested, "attested_by": c.attestor,
            "attested_metric_bps": c.attested_metric_bps, "best": c.best,
            "block_number": c.block_number}


def channel_json(c: ChannelView) -> dict[str, Any]:
    return {"channel_id": c.channel_id, "payer": c.payer, "deposit_wei": str(c.deposit),
            "expiry": c.expiry, "reclaim_at": c.reclaim_at, "status": c.status,
            "amount_wei": str(c.amount), "royalty_wei": str(c.royalty),
            "payee_amount_wei": str(c.payee_amount), "refund_wei": str(c.refund)}
