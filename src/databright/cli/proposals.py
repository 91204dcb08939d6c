"""`databright propose|proposals|proposal show|vote|finalize`."""

from __future__ import annotations

import datetime as dt
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
    progress_wanted,
    signer,
)
from databright.errors import UsageError
from databright.market import proposals as svc
from databright.market.units import format_duration, format_shares, format_wei, parse_size

proposal_app = typer.Typer(help="Read one proposal.", no_args_is_help=True)


@handles_errors
def propose(
    dataset: Annotated[str, typer.Argument(help="Dataset to add to.")],
    source: Annotated[Path, typer.Argument(help="ImageFolder DIR, DIR with labels.csv, or a CSV/Parquet table.")],
    label_column: Annotated[str | None, typer.Option(help="Label column of a CSV/Parquet table.")] = None,
    max_file_size: Annotated[str, typer.Option(help="Refuse files larger than this (K, M, G).")] = "100M",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Propose a batch of labeled items (stakes the dataset's deposit)."""
    with open_deployment(home) as dep:
        sender = signer(dep, as_)
        out = svc.propose(dep, sender, dataset, source, label_column=label_column,
                          max_file_size=parse_size(max_file_size),
                          progress=progress_wanted(json_out))

    def human(d: dict) -> None:
        console.print(
            f"proposal #{d['proposal_id']} on {d['dataset']}: {d['items']} new items "
            f"({d['duplicates']} duplicates and {d['refused']} refused left out), "
            f"stake {format_wei(d['stake'])}"
        )
        console.print(f"manifest {d['manifest_cid']}  root {d['merkle_root']}")

    emit(out, json_out, human)


@handles_errors
def proposals(
    dataset: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Only open proposals.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List proposals."""
    with open_deployment(home) as dep:
        rows = svc.list_proposals(dep, dataset, open_)

    def human(d: dict) -> None:
        if not d["proposals"]:
            console.print("no proposals")
            return
        table = Table("id", "dataset", "proposer", "items", "status", "yes", "no", "deadline")
        for r in d["proposals"]:
            table.add_row(str(r["proposal_id"]), r["dataset"], r["proposer"][:10] + "…",
                          str(r["item_count"]), r["status"], format_shares(r["yes"]),
                          format_shares(r["no"]), _when(r["deadline"]))
        console.print(table)

    emit({"proposals": rows}, json_out, human)


@proposal_app.command("show")
@handles_errors
def show(
    proposal_id: Annotated[int, typer.Argument(metavar="ID")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Everything a voter needs, with the manifest re-checked against the chain."""
    with open_deployment(home) as dep:
        out = svc.show_proposal(dep, proposal_id)
    emit(out, json_out, _show_human)


@handles_errors
def vote(
    proposal_id: Annotated[int, typer.Argument(metavar="ID")],
    choice: Annotated[str, typer.Argument(metavar="yes|no")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Vote on a proposal with your shares at its snapshot."""
    support = {"yes": True, "y": True, "no": False, "n": False}.get(choice.lower())
    if support is None:
        raise UsageError(f"vote must be yes or no, not {choice!r}")
    with open_deployment(home) as dep:
        out = svc.vote(dep, signer(dep, as_), proposal_id, support)
    emit(out, json_out, lambda d: console.print(
        f"voted {'yes' if d['support'] else 'no'} on #{d['proposal_id']} with "
        f"{format_shares(d['weight'])} shares"))


@handles_errors
def finalize(
    proposal_id: Annotated[int, typer.Argument(metavar="ID")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Close a proposal whose outcome is decided (or whose deadline passed)."""
    with open_deployment(home) as dep:
        out = svc.finalize(dep, signer(dep, as_), proposal_id)
    emit(out, json_out, lambda d: console.print(
        f"proposal #{d['proposal_id']}: {d['status']}"
        + (f", {format_shares(d['shares_minted'])} shares minted" if d["shares_minted"] else "")))


def _when(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _show_human(d: dict) -> None:
    check = d.get("check") or {}
    if check and not check.get("ok", True):
        for problem in check["problems"]:
            console.print(f"[bold red]WARNING: {problem}[/]")
    console.print(f"[bold]proposal #{d['proposal_id']}[/] on {d['dataset']} by {d['proposer']}: "
                  f"[bold]{d['status']}[/]")
    ing = d.get("ingest")
    if ing:
        console.print(f"items: {d['items']} new; {ing['duplicates']} duplicates and "
                      f"{ing['refused']} refused were left out by the proposer's ingestion")
    else:
        console.print(f"items: {d['items']}")
    labels = check.get("labels") or (ing or {}).get("labels") or {}
    if labels:
        console.print("labels: " + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())))
    console.print(f"manifest {d['manifest_cid']}  root {d['merkle_root']}")
    console.print(f"stake {format_wei(d['stake'])}; snapshot block {d['snapshot']} "
                  f"(supply {format_shares(d['snapshot_supply'])})")
    qp = d["quorum_progress"]
    ap = d["approval"]
    console.print(
        f"tally: yes {format_shares(d['yes'])}, no {format_shares(d['no'])}; quorum "
        f"{'n/a' if qp is None else f'{min(qp, 9.99):.0%}'} of the needed "
        f"{format_shares(d['quorum_needed'])}; approval "
        f"{'no votes yet' if ap is None else f'{ap:.0%}'} (needs {d['approval_needed']:.0%})"
    )
    left = d["seconds_left"]
    deadline = _when(d["deadline"])
    if d["status"] == "open":
        state = (f"ends in {format_duration(left)}" if left else
                 "deadline passed: anyone can `databright finalize`")
        console.print(f"deadline {deadline} ({state})")
    else:
        console.print(f"deadline {deadline}; shares minted {format_shares(d['shares_minted'])}")
    ev = d.get("evaluation")
    if ev:
        console.print(
            f"evaluation: accuracy {ev['accuracy_before']:.3f} → {ev['accuracy_after']:.3f} "
            f"(gain {ev['gain']:+.4f}); {ev['suspects']} suspect labels; "
            f"{ev['near_duplicates']} near-duplicates; suggested score {ev['score_bps']} bps"
        )
    else:
        console.print("evaluation: none yet (`databright evaluate ID`)")
    if check.get("ok"):
        console.print("check: manifest, Merkle root and item count agree with the chain; all blobs present")
