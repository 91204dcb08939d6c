"""What training and serving read from a dataset: its entries' items, its validation split, and
checkpoints from the store (verified against the sha256 the chain records)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from databright.errors import IntegrityError, NotFoundError, UsageError
from databright.market.context import Deployment
from databright.market.datasets import card_of, entries_of

if TYPE_CHECKING:
    from databright.training import Checkpoint, Record


def training_records(dep: Deployment, ds_id: int, snapshot: int | None = None) -> list[Record]:
    """The items of the dataset's first ``snapshot`` registry entries (default: all of them).

    Raises:
        UsageError: ``snapshot`` is not 1..entry count.
    """
    from databright.storage.manifest import read_manifest
    from databright.training import records_from

    info = dep.market.get_dataset(ds_id)
    upto = info.entry_count if snapshot is None else int(snapshot)
    if not 1 <= upto <= info.entry_count:
        raise UsageError(f"{info.name} has {info.entry_count} entries: the snapshot must be "
                         f"1..{info.entry_count}, not {upto}")
    items = [it for e in entries_of(dep, ds_id, upto=upto)
             for it in read_manifest(dep.store, e.manifest_cid)]
    return records_from(items, dep.store.get)


def validation_records(dep: Deployment, ds_id: int) -> list[Record]:
    """The dataset's validation split (in its card): never trained on.

    Raises:
        IntegrityError: the card names no validation split.
    """
    from databright.storage.manifest import read_manifest
    from databright.training import records_from

    manifest = card_of(dep, ds_id).get("validation_manifest")
    if not manifest:
        raise IntegrityError(f"the card of dataset #{ds_id} names no validation split")
    return records_from(read_manifest(dep.store, manifest), dep.store.get)


def load_stored_checkpoint(dep: Deployment, cid: str, sha256: str) -> Checkpoint:
    """A checkpoint from the store, its bytes checked against ``sha256`` before parsing.

    Raises:
        NotFoundError: the store lacks the file. IntegrityError: its bytes or format are wrong.
    """
    from databright.training import load_checkpoint

    if not dep.store.has(cid):
        raise NotFoundError(f"the checkpoint {cid} is not in this home's store")
    return load_checkpoint(dep.store, cid, sha256)


def best_checkpoint(dep: Deployment, model_id: int) -> tuple[int, Checkpoint]:
    """``(checkpoint number, checkpoint)`` of a model's attested best, verified by sha256.

    Raises:
        NotFoundError: no such model, or no attested checkpoint yet.
    """
    from databright.market.models import get_model

    m = get_model(dep, model_id)
    if m.best is None:
        raise NotFoundError(f"model #{model_id} has no attested checkpoint yet: its dataset's "
                            "evaluator attests one with `databright model attest`")
    return m.best.checkpoint, load_stored_checkpoint(dep, m.best.cid, m.best.sha256)
