"""`databright verify|export|evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from databright.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    console,
    emit,
    handles_errors,
    open_deployment,
    signer,
)
from databright.errors import IntegrityError
from databright.market import data as svc
from databright.market import evaluation


@handles_errors
def verify(dataset: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Recompute every accepted entry from the store and compare with the chain."""
    with open_deployment(home) as dep:
        out = svc.verify_dataset(dep, dataset)
    emit(out, json_out, lambda d: console.print(
        f"{dataset}: {d['entries']} entries, {d['items']} items: "
        + ("all manifests, roots and blobs agree with the chain; "
           f"{len(d['onchain_proofs'])} item proofs accepted on chain" if d["ok"] else
           "PROBLEMS:\n  " + "\n  ".join(d["problems"]))))
    if not out.ok:
        raise typer.Exit(IntegrityError.exit_code)


@handles_errors
def export(
    dataset: str,
    out: Annotated[Path, typer.Argument(help="Folder to write into.")],
    format: Annotated[str, typer.Option("--format", help="folder (ImageFolder), parquet or croissant.")] = "parquet",
    entries: Annotated[int | None, typer.Option(help="Only the first N entries (a snapshot).")] = None,
    split: Annotated[str | None, typer.Option(
        "--split", help="train (the accepted entries) or validation (the held-out items); default both.",
    )] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a dataset's splits: train (accepted items) and validation (held-out items)."""
    with open_deployment(home) as dep:
        result = svc.export_dataset(dep, dataset, out, format, entries, split)
    emit(result, json_out, lambda d: console.print(
        f"exported {d['items']} items of {dataset} ({d['entry_count']} entries; "
        + ", ".join(f"{s} {n}" for s, n in d["split_items"].items())
        + f") as {format} to {out}"))


@handles_errors
def evaluate(
    proposal_id: Annotated[int, typer.Argument(metavar="ID")],
    post: Annotated[bool, typer.Option("--post", help="Post the suggested score on chain (the dataset's evaluator only).")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Recompute even if a report is stored.")] = False,
    k: Annotated[int, typer.Option("-k", help="Neighbours of the KNN utility.")] = 5,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Evaluate a proposal: accuracy gain, per-item values, suspect labels."""
    with open_deployment(home) as dep:
        evaluated = evaluation.evaluate(dep, proposal_id, refresh=refresh, k=k)
        posted = (evaluation.post_score(dep, signer(dep, as_), proposal_id,
                                        int(evaluated.report.score_bps)) if post else None)
    emit({"evaluation": evaluated, "posted": posted}, json_out, _human)


def _human(d: dict) -> None:
    ev, r = d["evaluation"], d["evaluation"]["report"]
    console.print(f"[bold]evaluation of proposal #{ev['proposal_id']}[/] (report "
                  f"{ev['report_cid']}{', stored earlier' if ev['cached'] else ''})")
    console.print(f"items: {r['new']} new, {r['duplicates']} duplicates, {r['near_duplicates']} "
                  f"near-duplicates, {r['unknown_labels']} unknown labels")
    console.print(f"accuracy on the validation split: {r['accuracy_before']:.4f} → "
                  f"{r['accuracy_after']:.4f} (gain {r['gain']:+.4f})")
    console.print(f"suspected wrong labels: {len(r['suspects'])}; suggested score "
                  f"{r['score_bps']} bps")
    worst = sorted((it for it in r["items"] if it["value"] is not None),
                   key=lambda it: it["value"])[:10]
    if worst:
        table = Table("cid", "label", "value", "suspect")
        for it in worst:
            table.add_row(it["cid"], it["label"], f"{it['value']:.2e}", "yes" if it["suspect"] else "")
        console.print(table)
    if d["posted"]:
        console.print(f"score {d['posted']['score_bps']} bps posted on chain")
