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
from databright.errors import IntegrityError, UsageError
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
    featurizer: Annotated[str, typer.Option(
        "--featurizer", help="auto (efficientnet-lite0 for images when installed, else pixels; "
        "tabular for rows), pixels, efficientnet-lite0 or tabular.")] = "auto",
    model: Annotated[int | None, typer.Option(
        "--model", help="Also fine-tune this model's attested best checkpoint on the batch and "
        "report its validation accuracy before and after.")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Fine-tuning epochs with --model (default: the checkpoint's).")] = None,
    compute: Annotated[str, typer.Option(
        "--compute", help="'here', or 'local': a compute-market job run by this home's "
        "coordinator (paid, receipted; with --post its enclave key posts the score as the "
        "dataset's evaluator).")] = "here",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Evaluate a proposal: accuracy gain, per-item values, suspect labels (and, with --model,
    the gain of fine-tuning the model's best checkpoint on it)."""
    if compute not in ("here", "local"):
        raise UsageError(f"--compute is 'here' or 'local', not {compute!r}")
    if compute == "local":
        from databright.market.compute.evaluate_job import run_evaluate_job

        with open_deployment(home) as dep:
            job = run_evaluate_job(dep, signer(dep, as_), proposal_id, post=post, k=k,
                                   featurizer=featurizer)
        emit({"evaluation": job.evaluation, "embedding": job.evaluation.embedding,
              "model": None, "posted": job.posted, "job": job.job_id,
              "receipt": job.receipt}, json_out, _human)
        return
    with open_deployment(home) as dep:
        evaluated = evaluation.evaluate(dep, proposal_id, refresh=refresh, k=k,
                                        featurizer=featurizer)
        measured = (evaluation.evaluate_model(dep, proposal_id, model, epochs=epochs)
                    if model is not None else None)
        posted = (evaluation.post_score(dep, signer(dep, as_), proposal_id,
                                        int(evaluated.report.score_bps)) if post else None)
    emit({"evaluation": evaluated, "embedding": evaluated.embedding, "model": measured,
          "posted": posted}, json_out, _human)


def _human(d: dict) -> None:
    ev, r = d["evaluation"], d["evaluation"]["report"]
    console.print(f"[bold]evaluation of proposal #{ev['proposal_id']}[/] (report "
                  f"{ev['report_cid']}{', stored earlier' if ev['cached'] else ''})")
    console.print(f"embedding: {d['embedding']} ({ev['params']['featurizer']})")
    console.print(f"items: {r['new']} new, {r['duplicates']} duplicates, {r['near_duplicates']} "
                  f"near-duplicates, {r['unknown_labels']} unknown labels")
    console.print(f"KNN accuracy on the validation split: {r['accuracy_before']:.4f} → "
                  f"{r['accuracy_after']:.4f} (gain {r['gain']:+.4f})")
    m = d["model"]
    if m:
        which = f"model #{m['model_id']}" if m["model_id"] is not None else "the checkpoint"
        console.print(
            f"{which} ({m['family']} on {m['embedding']}, best checkpoint "
            f"{m['checkpoint_cid'] or m['checkpoint_sha256'][:16]}, {m['checkpoint_entries']} "
            f"entries) fine-tuned on {m['batch_items']} items for {m['epochs']} epochs: "
            f"{m['before_bps']} → {m['after_bps']} bps (gain {m['gain_bps']:+d} bps) on "
            f"{m['validation_items']} validation items"
            + (f"; {m['skipped']} items not trained on" if m["skipped"] else ""))
    console.print(f"suspected wrong labels: {len(r['suspects'])}; suggested score "
                  f"{r['score_bps']} bps")
    worst = sorted((it for it in r["items"] if it["value"] is not None),
                   key=lambda it: it["value"])[:10]
    if worst:
        table = Table("cid", "label", "value", "suspect")
        for it in worst:
            table.add_row(it["cid"], it["label"], f"{it['value']:.2e}", "yes" if it["suspect"] else "")
        console.print(table)
    if d.get("job") is not None:
        console.print(f"compute job #{d['job']} (receipt {d['receipt']})"
                      + ("; the coordinator posted the score as the evaluator"
                         if d["posted"] else ""))
    elif d["posted"]:
        console.print(f"score {d['posted']['score_bps']} bps posted on chain")
