"""Integrity checks and exports of a dataset's accepted items."""

from __future__ import annotations

import random
from pathlib import Path

from databright.errors import UsageError
from databright.market.context import Deployment
from databright.market.datasets import card_of, dataset_id, entries_of

FORMATS = ("folder", "parquet", "croissant")


def verify_dataset(dep: Deployment, name: str, *, onchain_samples: int = 3) -> dict:
    """Recompute every accepted entry from the store and compare with the chain's registry;
    also prove a few random items on chain with ``verify_item``."""
    from databright.storage.cid import cid_digest
    from databright.storage.manifest import read_manifest
    from databright.storage.merkle import MerkleTree
    from databright.storage.verify import verify_entries

    ds_id = dataset_id(dep, name)
    entries = entries_of(dep, ds_id)
    report = verify_entries(dep.store, entries)
    out = report.to_dict()
    proofs = []
    if report.ok:
        rng = random.Random(0)
        for index, entry in enumerate(entries):
            items = read_manifest(dep.store, entry.manifest_cid)
            tree = MerkleTree.from_items(items)
            for pos in rng.sample(range(len(items)), min(onchain_samples, len(items))):
                item = items[pos]
                ok = dep.market.verify_item(ds_id, index, cid_digest(item.cid), item.label,
                                            tree.proof(pos))
                proofs.append({"entry": index, "cid": item.cid, "verified_on_chain": ok})
        if not all(p["verified_on_chain"] for p in proofs):
            out["ok"] = False
            out.setdefault("problems", []).append("an item proof was refused by the contract")
    out.update({"dataset": name, "entries": len(entries),
                "items": sum(e.item_count for e in entries), "onchain_proofs": proofs})
    return out


def export_dataset(dep: Deployment, name: str, out: Path, fmt: str,
                   upto_entries: int | None = None, split: str | None = None) -> dict:
    """Write the dataset's splits (``train``: the accepted items, optionally of the first
    ``upto_entries`` entries; ``validation``: the card's held-out items), or ``split`` alone.

    Every entry's manifest is checked against the chain and every blob against its CID as it is
    read (once); a disagreement is an :class:`IntegrityError` and leaves nothing behind.
    """
    from databright.storage import export

    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if split is not None and split not in export.SPLITS:
        raise UsageError(f"unknown split {split!r}: use one of {', '.join(export.SPLITS)}")
    ds_id = dataset_id(dep, name)
    entries = entries_of(dep, ds_id, upto_entries)
    card = card_of(dep, ds_id)
    snap = export.Snapshot(dep.store, name, entries,
                           validation_manifest=card.get("validation_manifest"),
                           validation_count=card.get("validation_items"),
                           labels=card.get("labels"))
    if fmt == "folder":
        info = snap.export_folder(Path(out), split=split)
    elif fmt == "parquet":
        info = snap.export_parquet(Path(out), split=split)
    else:
        info = snap.export_croissant(Path(out), split=split, license=card.get("license"))
    # the keys of databright-export.json (``entry_count``, ``entries`` as the list of entries),
    # plus ``out``, ``items`` (all exported) and ``split_items`` (per split)
    return {**info, "out": str(out), "items": info["item_count"],
            "split_items": {s: v["item_count"] for s, v in info["splits"].items()}}
