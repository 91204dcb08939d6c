"""`databright dataset create|list|show`."""

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
    progress_wanted,
    signer,
)
from databright.market import datasets as svc
from databright.market.rules import Rules
from databright.market.units import (
    format_shares,
    parse_duration,
    parse_fraction_bps,
    parse_shares,
    parse_size,
    parse_wei,
)

app = typer.Typer(help="Create and read datasets.", no_args_is_help=True)


@app.command("create")
@handles_errors
def create(
    name: Annotated[str, typer.Argument(help="Unique name: lowercase letters, digits, - and _.")],
    source: Annotated[Path, typer.Option("--from", help="Seed data: ImageFolder DIR, DIR with labels.csv, or a CSV/Parquet table.")],
    labels: Annotated[str | None, typer.Option(help="Comma-separated label set [default: the labels found in the seed].")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column of a CSV/Parquet seed table.")] = None,
    description: Annotated[str, typer.Option(help="One paragraph for the dataset card.")] = "",
    quorum: Annotated[str, typer.Option(help="Share of the snapshot supply that must vote.")] = "0.2",
    approval: Annotated[str, typer.Option(help="Share of the votes cast that must be yes.")] = "0.5",
    period: Annotated[str, typer.Option(help="Voting period (s, m, h, d, w).")] = "3d",
    stake: Annotated[str, typer.Option(help="Deposit a proposer stakes (eth, gwei, wei).")] = "0.01eth",
    reward: Annotated[str, typer.Option(help="Shares per item for the very first items (r0).")] = "100",
    reward_n0: Annotated[int, typer.Option("--reward-n0", help="Items after which the per-item reward has fallen to a quarter; 0: 10 × the seed size (at least 100).")] = 0,
    evaluator: Annotated[str | None, typer.Option(help="Account or address allowed to post evaluation scores and attest model metrics.")] = None,
    training_fee: Annotated[str, typer.Option("--training-fee", help="Wei each registered model and checkpoint pays the shareholders (eth, gwei, wei).")] = "0.01eth",
    min_royalty: Annotated[str, typer.Option("--min-royalty", help="Lowest share of a model's prediction revenue paid to the shareholders.")] = "10%",
    validation: Annotated[float, typer.Option(help="Fraction of the seed kept aside as the validation split.")] = 0.2,
    max_file_size: Annotated[str, typer.Option(help="Refuse files larger than this (K, M, G).")] = "100M",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Create a dataset from seed data; the initiator receives the first shares."""
    rules = Rules(
        quorum_bps=parse_fraction_bps(quorum),
        approval_bps=parse_fraction_bps(approval),
        voting_period=parse_duration(period),
        stake=parse_wei(stake, default_unit="eth"),
        reward_r0=parse_shares(reward),
        reward_n0=reward_n0,
        evaluator=evaluator,
        training_fee=parse_wei(training_fee, default_unit="eth"),
        min_royalty_bps=parse_fraction_bps(min_royalty),
    )
    label_list = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    with open_deployment(home) as dep:
        sender = signer(dep, as_)
        out = svc.create_dataset(
            dep, sender, name, source, rules=rules, labels=label_list, description=description,
            label_column=label_column, validation_fraction=validation,
            max_file_size=parse_size(max_file_size),
            progress=progress_wanted(json_out),
        )
    emit(out, json_out, _show_human)


@app.command("list")
@handles_errors
def list_(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List the datasets on this deployment."""
    with open_deployment(home) as dep:
        rows = svc.list_datasets(dep)

    def human(rows: list) -> None:
        if not rows:
            console.print("no datasets yet: create one with `databright dataset create NAME --from DIR`")
            return
        table = Table("id", "name", "items", "entries", "share token")
        for r in rows:
            table.add_row(str(r["dataset_id"]), r["name"], str(r["item_count"]),
                          str(r["entry_count"]), r["share_token"])
        console.print(table)

    emit({"datasets": rows}, json_out, lambda d: human(d["datasets"]))


@app.command("show")
@handles_errors
def show(name: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Show a dataset: rules, size, shares, labels."""
    with open_deployment(home) as dep:
        out = svc.show_dataset(dep, name)
    emit(out, json_out, _show_human)


def _show_human(d: dict) -> None:
    r = d["rules"]
    console.print(f"[bold]{d['name']}[/] (#{d['dataset_id']}, shares {d['symbol']} at {d['share_token']})")
    if d.get("description"):
        console.print(d["description"])
    console.print(f"items: {d['items']} in {d['entries']} entries; validation split: "
                  f"{d.get('validation_items')} items; labels: {', '.join(d['labels'])}")
    console.print(f"total shares: {format_shares(d['total_supply'])}; initiator {d['initiator']}")
    console.print(
        f"rules: quorum {r['quorum']:.0%}, approval {r['approval']:.0%}, voting period "
        f"{r['voting_period_text']}, stake {r['stake_text']}, reward r0 "
        f"{format_shares(r['reward_r0'])} shares/item, N0 {r['reward_n0']}, evaluator "
        f"{r['evaluator'] or 'none'}"
    )
    console.print(f"model market: training fee {r['training_fee_text']} per model and checkpoint, "
                  f"royalty at least {r['min_royalty']:.0%} of each prediction")
    if d.get("seed"):
        s = d["seed"]
        console.print(f"seed: {s['train_items']} training items, {s['validation_items']} held out; "
                      f"{len(s['refused'])} refused, {len(s['duplicates'])} duplicates")
