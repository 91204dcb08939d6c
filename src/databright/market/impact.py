"""The impact of a dataset (``databright impact``), from the index only: the models trained on
it with their metric against the snapshot they were trained on, and per contributor or holder
the items, shares, models that used their entries and dividends by source.

Dividends by source are the index's exact replay of the token: each holder's parts (training
fees, prediction royalties, rejected stakes, direct payments) add up to what the token says it
earned (``withdrawn_of + dividends_of``) to the wei (see ``market.sync.split_by_source``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from databright.errors import UsageError
from databright.index.cache import (
    SOURCES,
    DividendSourceRow,
    EntryRow,
    HolderDividendRow,
    HolderRow,
    ModelRow,
)
from databright.market.context import Deployment
from databright.market.model_listings import CheckpointView, checkpoints_of, dataset_row
from databright.market.sync import ensure_synced
from databright.market.sync_models import DIVIDEND_MAG, split_by_source


@dataclass(frozen=True)
class ModelImpact:
    """A model trained on the dataset; ``checkpoints`` give its metric per snapshot size."""

    model_id: int
    name: str
    owner: str
    best_checkpoint: int
    best_metric_bps: int | None
    #: the largest snapshot (entries) any of its checkpoints was trained on
    trained_entries: int
    checkpoints: tuple[CheckpointView, ...]


@dataclass(frozen=True)
class SourceTotal:
    """Dividends of the dataset from one source: paid to its token, and held by the payer
    because the token refused them (released later)."""

    source: str
    distributed_wei: int
    held_wei: int
    payments: int


@dataclass(frozen=True)
class ContributorImpact:
    """A contributor or holder of the dataset.

    Attributes:
        entries: indexes of the registry entries it contributed (0 is the seed).
        items: items in those entries.
        shares: shares held now; ``fraction`` of the supply.
        models: ids of the models with a checkpoint trained on a snapshot including one of
            its entries (an entry with index < the checkpoint's ``entries``).
        dividends: wei earned by source (withdrawn or waiting), every source present.
        earned_wei: their sum, equal to ``withdrawn_wei + waiting_wei``.
    """

    account: str
    entries: tuple[int, ...]
    items: int
    shares: int
    fraction: float
    models: tuple[int, ...]
    dividends: dict[str, int]
    earned_wei: int
    withdrawn_wei: int
    waiting_wei: int


@dataclass(frozen=True)
class DatasetImpact:
    """``databright impact DATASET``."""

    dataset_id: int
    dataset: str
    entry_count: int
    item_count: int
    total_supply: int
    training_fee: int
    min_royalty_bps: int
    total_distributed: int
    models: tuple[ModelImpact, ...]
    sources: tuple[SourceTotal, ...]
    contributors: tuple[ContributorImpact, ...]


def impact(dep: Deployment, dataset: str) -> DatasetImpact:
    """The impact of ``dataset`` (by name), from the index.

    Raises:
        NotFoundError: no such dataset in the index.
    """
    ensure_synced(dep)
    with dep.index.session() as s:
        ds = dataset_row(s, dataset)
        ds_id = ds.dataset_id
        model_rows = list(s.execute(select(ModelRow).where(ModelRow.dataset_id == ds_id)
                                    .order_by(ModelRow.model_id)).scalars())
        cps = checkpoints_of(s, model_rows)
        models = tuple(
            ModelImpact(m.model_id, m.name, m.owner, m.best_checkpoint,
                        m.best_metric_bps if m.best_checkpoint else None,
                        max((c.entries for c in cps[m.model_id]), default=0),
                        tuple(cps[m.model_id]))
            for m in model_rows)
        source_rows = {r.source: r for r in s.execute(
            select(DividendSourceRow).where(DividendSourceRow.dataset_id == ds_id)).scalars()}
        sources = tuple(
            SourceTotal(src, row.distributed, row.held, row.payments) if row is not None
            else SourceTotal(src, 0, 0, 0)
            for src, row in ((src, source_rows.get(src)) for src in SOURCES))
        entries: dict[str, list[tuple[int, int]]] = {}
        for account, index, count in s.execute(
                select(EntryRow.contributor, EntryRow.index, EntryRow.item_count)
                .where(EntryRow.dataset_id == ds_id).order_by(EntryRow.index)):
            entries.setdefault(account, []).append((index, count))
        holders = {h.account: h for h in s.execute(
            select(HolderRow).where(HolderRow.dataset_id == ds_id)).scalars()}
        settled: dict[str, dict[str, HolderDividendRow]] = {}
        for row in s.execute(select(HolderDividendRow)
                             .where(HolderDividendRow.dataset_id == ds_id)).scalars():
            settled.setdefault(row.account, {})[row.source] = row
        per_share, supply = ds.per_share, ds.total_supply
        out = []
        for account in dict.fromkeys([*entries, *holders]):
            mine = entries.get(account, [])
            first = min((i for i, _ in mine), default=None)
            used = tuple(m.model_id for m in models
                         if first is not None and m.trained_entries > first)
            holder = holders.get(account)
            balance = holder.balance if holder else 0
            dividends = {src: 0 for src in SOURCES}
            withdrawn = waiting = 0
            if holder is not None:
                rows = settled.get(account, {})
                deltas = {src: row.per_share - (rows[src].per_share_paid if src in rows else 0)
                          for src, row in source_rows.items()}
                pending = split_by_source(balance, deltas)
                for src in source_rows:
                    dividends[src] = (rows[src].settled if src in rows else 0) + \
                        pending.get(src, 0)
                withdrawn = holder.withdrawn
                waiting = holder.owed + balance * (per_share - holder.per_share_paid) \
                    // DIVIDEND_MAG
            if not mine and not balance and not any(dividends.values()):
                continue
            out.append(ContributorImpact(
                account, tuple(i for i, _ in mine), sum(c for _, c in mine), balance,
                balance / supply if supply else 0.0, used, dividends, sum(dividends.values()),
                withdrawn, waiting))
        out.sort(key=lambda c: (-c.shares, -c.items, c.account))
        return DatasetImpact(ds_id, ds.name, ds.entry_count, ds.item_count, supply,
                             ds.training_fee, ds.min_royalty_bps, ds.total_distributed, models,
                             sources, tuple(out))


def plot_impact(result: DatasetImpact, path: str | Path) -> Path:
    """Write a PNG of each model's metric against the dataset size it was trained on.

    Attested metrics are filled markers, self-reported ones hollow; the x axis is the item
    count of the snapshot (its entry count in the labels).

    Raises:
        UsageError: ``path`` does not end in ``.png`` or cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    target = Path(path)
    if target.suffix.lower() != ".png":
        raise UsageError(f"the plot is a PNG: name it *.png, not {target.name!r}")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        for m in result.models:
            points = sorted(m.checkpoints, key=lambda c: (c.items, c.checkpoint))
            if not points:
                continue
            xs = [c.items for c in points]
            ys = [(c.attested_metric_bps if c.attested_metric_bps is not None else c.metric_bps)
                  / 100 for c in points]
            line, = ax.plot(xs, ys, "-", label=f"#{m.model_id} {m.name}")
            for c, x, y in zip(points, xs, ys, strict=True):
                ax.plot([x], [y], "o", color=line.get_color(),
                        markerfacecolor=line.get_color() if c.attested else "white")
                ax.annotate(f"{c.entries}e", (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
        if not any(m.checkpoints for m in result.models):
            ax.text(0.5, 0.5, "no checkpoints yet", ha="center", va="center",
                    transform=ax.transAxes)
        else:
            ax.legend(fontsize=8)
        ax.set_xlabel("dataset size trained on (items; labels: entries)")
        ax.set_ylabel("metric (%)")
        ax.set_title(f"{result.dataset}: metric vs dataset size (hollow: self-reported)")
        ax.grid(alpha=0.3)
        try:
            fig.savefig(target, format="png")
        except OSError as exc:
            raise UsageError(f"cannot write the plot to {target}: {exc}") from None
    finally:
        plt.close(fig)
    return target
