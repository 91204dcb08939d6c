"""Creating, listing and reading datasets."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import NotFoundError, UsageError
from databright.index.models import DatasetMeta
from databright.market.context import Deployment
from databright.market.rules import Rules

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.chain.data_market import EntryInfo
    from databright.market.listings import DatasetSummary

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ZERO = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class SeedReport:
    """How the seed data was split, and what ingestion refused or found twice (name, reason)."""

    train_items: int
    validation_items: int
    refused: tuple[tuple[str, ...], ...]
    duplicates: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class DatasetView:
    """Everything about one dataset: rules, size, shares, card (``seed`` right after creation)."""

    dataset_id: int
    name: str
    symbol: str
    initiator: str
    share_token: str
    items: int
    entries: int
    total_supply: int
    labels: tuple[str, ...]
    validation_items: int | None
    description: str
    card_cid: str
    rules: Rules
    seed: SeedReport | None = None


def create_dataset(
    dep: Deployment,
    sender: Signer,
    name: str,
    source: Path,
    *,
    rules: Rules,
    labels: list[str] | None = None,
    description: str = "",
    label_column: str | None = None,
    validation_fraction: float = 0.2,
    max_file_size: int | None = None,
    progress: bool = False,
) -> DatasetView:
    """Ingest the seed data, keep a validation split aside, and create the dataset on chain.

    The seed's training part becomes entry 0 and earns the initiator the first shares; the
    validation part is never trained on and is recorded in the dataset card.
    """
    from databright.storage.ingest import ingest
    from databright.storage.manifest import write_manifest
    from databright.storage.merkle import merkle_root

    if not NAME.match(name):
        raise UsageError(
            f"bad dataset name {name!r}: use 1-64 lowercase letters, digits, '-' or '_'"
        )
    if dep.market.dataset_id_of(name):
        raise UsageError(f"a dataset named {name!r} exists already")
    if not 0.0 < validation_fraction < 0.9:
        raise UsageError("validation fraction must be in (0, 0.9)")
    label_set = set(labels) if labels else None
    limits: dict[str, Any] = {"max_file_size": max_file_size} if max_file_size else {}
    result = ingest(
        Path(source), dep.store, label_column=label_column, label_set=label_set, progress=progress,
        **limits,
    )
    if not result.items:
        raise UsageError(f"no usable items in {source}: {_refusal_summary(result)}")
    train, validation = split_validation(result.items, validation_fraction)
    if not train:
        raise UsageError("the seed data is too small to keep a validation split aside")
    label_list = sorted(label_set or {item.label for item in result.items})
    seed_cid = write_manifest(dep.store, train)
    val_cid = write_manifest(dep.store, validation) if validation else None
    checked = rules.validated(len(train))
    card = {
        "name": name,
        "description": description,
        "labels": label_list,
        "validation_manifest": val_cid,
        "validation_items": len(validation),
        "seed_manifest": seed_cid,
        "media_types": sorted({item.media_type for item in result.items}),
        "label_column": label_column,
    }
    card_cid = dep.store.put_bytes(json.dumps(card, sort_keys=True, indent=1).encode())
    evaluator = dep.resolve_address(checked.evaluator) if checked.evaluator else ZERO
    dataset_id, _receipt = dep.market.create_dataset(
        sender,
        name=name,
        symbol=_symbol(name),
        card_cid=card_cid,
        seed_cid=seed_cid,
        seed_root=merkle_root(train),
        seed_count=len(train),
        quorum_bps=checked.quorum_bps,
        approval_bps=checked.approval_bps,
        voting_period=checked.voting_period,
        stake=checked.stake,
        reward_r0=checked.reward_r0,
        reward_n0=checked.reward_n0,
        evaluator=evaluator,
        training_fee=checked.training_fee,
        min_royalty_bps=checked.min_royalty_bps,
    )
    _remember(dep, dataset_id, name, card_cid, card)
    seed = SeedReport(
        train_items=len(train),
        validation_items=len(validation),
        refused=tuple(tuple(r) for r in result.refused),
        duplicates=tuple(tuple(d) for d in result.duplicates),
    )
    return replace(show_dataset(dep, name), seed=seed)


def split_validation(items: list, fraction: float) -> tuple[list, list]:
    """A deterministic stratified split: per label, the items whose hashed CID sorts first.

    Labels with a single item keep it in training.
    """
    by_label: dict[str, list] = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    train, validation = [], []
    for group in by_label.values():
        group.sort(key=lambda it: hashlib.sha256(it.cid.encode()).digest())
        take = round(len(group) * fraction) if len(group) > 1 else 0
        take = min(max(take, 1 if len(group) > 1 else 0), len(group) - 1)
        validation.extend(group[:take])
        train.extend(group[take:])
    train.sort(key=lambda it: it.cid)
    validation.sort(key=lambda it: it.cid)
    return train, validation


def dataset_id(dep: Deployment, name: str) -> int:
    """The on-chain id of dataset ``name`` (or a NotFoundError that lists what exists)."""
    ds_id = dep.market.dataset_id_of(name)
    if not ds_id:
        known = [d.name for d in list_datasets(dep)][:10]
        hint = f"; known: {', '.join(known)}" if known else "; create one with `dataset create`"
        raise NotFoundError(f"no dataset named {name!r}{hint}")
    return ds_id


def card_of(dep: Deployment, ds_id: int) -> dict:
    """The dataset card (labels, validation split) from the index, else from the store."""
    with dep.index.session() as s:
        meta = s.get(DatasetMeta, ds_id)
        if meta is not None:
            return {
                "labels": meta.labels,
                "validation_manifest": meta.validation_manifest_cid,
                "card_cid": meta.card_cid,
            } | _card_blob(dep, meta.card_cid, strict=False)
    info = dep.market.get_dataset(ds_id)
    card = _card_blob(dep, info.card_cid, strict=True)
    _remember(dep, ds_id, info.name, info.card_cid, card)
    return card | {"card_cid": info.card_cid}


def show_dataset(dep: Deployment, name: str) -> DatasetView:
    """Everything about one dataset: rules, size, shares, card."""
    ds_id = dataset_id(dep, name)
    info = dep.market.get_dataset(ds_id)
    token = dep.token(info.share_token)
    card = card_of(dep, ds_id)
    return DatasetView(
        dataset_id=ds_id,
        name=info.name,
        symbol=info.symbol,
        initiator=info.initiator,
        share_token=info.share_token,
        items=info.item_count,
        entries=info.entry_count,
        total_supply=token.totalSupply(),
        labels=tuple(card.get("labels", [])),
        validation_items=card.get("validation_items"),
        description=card.get("description", ""),
        card_cid=info.card_cid,
        rules=Rules.of_dataset(info),
    )


def list_datasets(dep: Deployment) -> list[DatasetSummary]:
    """Every dataset on the deployment, from the index."""
    from databright.market.listings import dataset_summaries

    return dataset_summaries(dep)


def entries_of(dep: Deployment, ds_id: int, upto: int | None = None) -> list[EntryInfo]:
    """The dataset's accepted registry entries (optionally only the first ``upto``)."""
    count = dep.market.get_dataset(ds_id).entry_count
    if upto is not None:
        if not 0 < upto <= count:
            raise UsageError(f"the dataset has {count} entries; --entries must be 1..{count}")
        count = upto
    return [dep.market.get_entry(ds_id, i) for i in range(count)]


def _card_blob(dep: Deployment, cid: str, *, strict: bool) -> dict:
    from databright.errors import StorageError

    try:
        card = json.loads(dep.store.get(cid))
        return card if isinstance(card, dict) else {}
    except (StorageError, ValueError):
        if strict:
            raise
        return {}


def _remember(dep: Deployment, ds_id: int, name: str, card_cid: str, card: dict) -> None:
    with dep.index.session() as s:
        s.merge(
            DatasetMeta(
                dataset_id=ds_id,
                name=name,
                card_cid=card_cid,
                labels=list(card.get("labels", [])),
                validation_manifest_cid=card.get("validation_manifest"),
            )
        )


def _symbol(name: str) -> str:
    letters = re.sub(r"[^a-z0-9]", "", name).upper()
    return ("DB" + letters)[:12] or "DBSHARE"


def _refusal_summary(result: Any) -> str:
    if result.refused:
        name, reason = result.refused[0][0], result.refused[0][-1]
        return f"{len(result.refused)} refused (first: {name}: {reason})"
    if result.duplicates:
        return f"all {len(result.duplicates)} items are duplicates"
    return "the input holds no items"
