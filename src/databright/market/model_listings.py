"""Models of the model market, read from the index (synced from the chain first): ``model list``
and ``model show``.

A model's best checkpoint is the one its registry names best (always attested); every other
checkpoint is listed too, self-reported ones marked as such. Predictions paid so far are the
closed channels' amounts divided by the model's price per prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from databright.errors import NotFoundError
from databright.index.cache import ChannelRow, CheckpointRow, DatasetRow, EntryRow, ModelRow
from databright.market.context import Deployment
from databright.market.sync import ensure_synced


@dataclass(frozen=True)
class CheckpointView:
    """One checkpoint. ``entries`` is the dataset snapshot it was trained on (its first entries)
    and ``items`` the item count of that snapshot; ``attested`` False means self-reported."""

    model_id: int
    checkpoint: int
    cid: str
    file_sha256: str
    entries: int
    items: int
    metric_bps: int
    attested: bool
    attestor: str | None
    attested_metric_bps: int | None
    best: bool
    block_number: int


@dataclass(frozen=True)
class ChannelView:
    """A payment channel of a model; the split (``amount`` = ``royalty`` + ``payee_amount``)
    is filled once it is closed."""

    channel_id: int
    model_id: int
    payer: str
    deposit: int
    expiry: int
    reclaim_at: int | None
    status: str
    amount: int
    royalty: int
    payee_amount: int
    refund: int


@dataclass(frozen=True)
class ModelSummary:
    """One line of ``model list``.

    Attributes:
        best_checkpoint: 0 until a checkpoint's metric is attested.
        best_metric_bps: the attested metric of the best checkpoint (``None`` without one).
        predictions_paid: closed channels' amounts // price (``None`` for a free model).
        paid_wei: wei consumers paid through closed channels (royalty included).
        royalty_wei: of which the dataset's shareholders received.
    """

    model_id: int
    name: str
    dataset_id: int
    dataset: str
    owner: str
    price_per_prediction: int
    royalty_bps: int
    checkpoint_count: int
    best_checkpoint: int
    best_metric_bps: int | None
    predictions_paid: int | None
    paid_wei: int
    royalty_wei: int
    channels: int
    open_channels: int


@dataclass(frozen=True)
class ModelDetail:
    """``model show``: the summary, the best checkpoint, every checkpoint and every channel."""

    model: ModelSummary
    program_digest: str
    best: CheckpointView | None
    checkpoints: tuple[CheckpointView, ...]
    channels: tuple[ChannelView, ...]


def list_models(dep: Deployment, dataset: str | None = None) -> list[ModelSummary]:
    """Every model (of ``dataset``, by name, if given), by id.

    Raises:
        NotFoundError: ``dataset`` is not in the index.
    """
    ensure_synced(dep)
    with dep.index.session() as s:
        query = select(ModelRow).order_by(ModelRow.model_id)
        if dataset is not None:
            query = query.where(ModelRow.dataset_id == dataset_row(s, dataset).dataset_id)
        models = list(s.execute(query).scalars())
        return [_summary(s, m) for m in models]


def show_model(dep: Deployment, model_id: int) -> ModelDetail:
    """One model with its checkpoints and channels.

    Raises:
        NotFoundError: no such model in the index.
    """
    ensure_synced(dep)
    with dep.index.session() as s:
        model = s.get(ModelRow, int(model_id))
        if model is None:
            count = s.execute(select(func.count()).select_from(ModelRow)).scalar_one()
            hint = f"models are 1..{count}" if count else "no model is registered yet"
            raise NotFoundError(f"no model {model_id} in the index ({hint})")
        checkpoints = tuple(checkpoints_of(s, [model])[model.model_id])
        channels = tuple(_channel(c) for c in s.execute(
            select(ChannelRow).where(ChannelRow.model_id == model.model_id)
            .order_by(ChannelRow.channel_id)).scalars())
        best = next((c for c in checkpoints if c.best), None)
        return ModelDetail(_summary(s, model), model.program_digest, best, checkpoints, channels)


def dataset_row(s: Session, name: str) -> DatasetRow:
    """The indexed dataset called ``name`` (or a NotFoundError listing what exists)."""
    row = s.execute(select(DatasetRow).where(DatasetRow.name == name)).scalar_one_or_none()
    if row is None:
        known = list(s.execute(select(DatasetRow.name).order_by(DatasetRow.dataset_id)
                               .limit(10)).scalars())
        hint = f"; known: {', '.join(known)}" if known else "; create one with `dataset create`"
        raise NotFoundError(f"no dataset named {name!r}{hint}")
    return row


def snapshot_items(s: Session, dataset_id: int) -> list[int]:
    """``out[k]``: the item count of the dataset's first ``k`` entries (``out[0] == 0``)."""
    out = [0]
    for count in s.execute(select(EntryRow.item_count).where(EntryRow.dataset_id == dataset_id)
                           .order_by(EntryRow.index)).scalars():
        out.append(out[-1] + count)
    return out


def checkpoints_of(s: Session, models: list[ModelRow]) -> dict[int, list[CheckpointView]]:
    """The checkpoints of ``models`` (all of one dataset or not), by model id, in order."""
    out: dict[int, list[CheckpointView]] = {m.model_id: [] for m in models}
    if not models:
        return out
    best = {m.model_id: m.best_checkpoint for m in models}
    items: dict[int, list[int]] = {}
    for m in models:
        if m.dataset_id not in items:
            items[m.dataset_id] = snapshot_items(s, m.dataset_id)
    dataset_of = {m.model_id: m.dataset_id for m in models}
    rows = s.execute(select(CheckpointRow).where(CheckpointRow.model_id.in_(list(out)))
                     .order_by(CheckpointRow.model_id, CheckpointRow.checkpoint)).scalars()
    for c in rows:
        sizes = items[dataset_of[c.model_id]]
        out[c.model_id].append(CheckpointView(
            c.model_id, c.checkpoint, c.cid, c.file_sha256, c.entries,
            sizes[min(c.entries, len(sizes) - 1)], c.metric_bps, c.attestor is not None,
            c.attestor, c.attested_metric_bps, c.checkpoint == best[c.model_id],
            c.block_number))
    return out


def _summary(s: Session, m: ModelRow) -> ModelSummary:
    name = s.execute(select(DatasetRow.name).where(DatasetRow.dataset_id == m.dataset_id)
                     ).scalar_one()
    paid = royalty = channels = open_channels = 0
    for status, amount, cut in s.execute(select(ChannelRow.status, ChannelRow.amount,
                                                ChannelRow.royalty)
                                         .where(ChannelRow.model_id == m.model_id)):
        channels += 1
        open_channels += status in ("open", "reclaiming")
        if status == "closed":
            paid += amount
            royalty += cut
    price = m.price_per_prediction
    return ModelSummary(
        m.model_id, m.name, m.dataset_id, name, m.owner, price, m.royalty_bps,
        m.checkpoint_count, m.best_checkpoint, m.best_metric_bps if m.best_checkpoint else None,
        paid // price if price else None, paid, royalty, channels, open_channels)


def _channel(c: ChannelRow) -> ChannelView:
    return ChannelView(c.channel_id, c.model_id, c.payer, c.deposit, c.expiry, c.reclaim_at,
                       c.status, c.amount, c.royalty, c.payee_amount, c.refund)

