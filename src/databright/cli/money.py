"""`databright shares|transfer|distribute|dividends|withdraw`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from databright.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    account_name,
    console,
    emit,
    handles_errors,
    open_deployment,
    signer,
)
from databright.market import money as svc
from databright.market.units import format_shares, format_wei, parse_shares, parse_wei


@handles_errors
def shares(home: HomeOpt = None, json_out: JsonOpt = False, as_: AsOpt = None) -> None:
    """Your shares in every dataset, with dividends waiting."""
    with open_deployment(home) as dep:
        address = dep.keystore.address_of(account_name(dep, as_))
        rows = svc.shares_of(dep, address)

    def human(d: dict) -> None:
        if not d["shares"]:
            console.print(f"{d['account']} holds no shares")
            return
        table = Table("dataset", "shares", "of supply", "dividends waiting")
        for r in d["shares"]:
            table.add_row(r["dataset"], format_shares(r["balance"]), f"{r['fraction']:.2%}",
                          format_wei(r["dividends_wei"]))
        console.print(table)

    emit({"account": address, "shares": rows}, json_out, human)


@handles_errors
def transfer(
    dataset: str,
    to: Annotated[str, typer.Argument(help="Account name or 0x address.")],
    amount: Annotated[str, typer.Argument(help="Shares, up to 18 decimals (e.g. 12.5).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Send shares of a dataset to another account."""
    units = parse_shares(amount)
    with open_deployment(home) as dep:
        out = svc.transfer(dep, signer(dep, as_), dataset, to, units)
    emit(out, json_out, lambda d: console.print(
        f"sent {format_shares(d['amount'])} {dataset} shares to {d['receiver']}; "
        f"you hold {format_shares(d['balance'])}"))


@handles_errors
def distribute(
    dataset: str,
    amount: Annotated[str, typer.Argument(help="Amount with unit: 0.5eth, 100gwei, 1000wei (bare numbers are ETH).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Distribute revenue to a dataset's shareholders: they can withdraw it as dividends."""
    wei = parse_wei(amount, default_unit="eth")
    with open_deployment(home) as dep:
        out = svc.distribute(dep, signer(dep, as_), dataset, wei)
    emit(out, json_out, lambda d: console.print(
        f"distributed {format_wei(d['amount_wei'])} to the shareholders of {dataset}; "
        "they can now withdraw it"))


@handles_errors
def dividends(home: HomeOpt = None, json_out: JsonOpt = False, as_: AsOpt = None) -> None:
    """What you can withdraw now: dividends per dataset, refunded stakes, model revenue."""
    with open_deployment(home) as dep:
        out = svc.pending(dep, dep.keystore.address_of(account_name(dep, as_)))

    def human(d: dict) -> None:
        for r in d["dividends"]:
            console.print(f"{r['dataset']}: {format_wei(r['dividends_wei'])} waiting "
                          f"({format_wei(r['withdrawn_wei'])} withdrawn before)")
        if d["refund_wei"]:
            console.print(f"refunded stakes: {format_wei(d['refund_wei'])}")
        if d["registry_wei"]:
            console.print(f"model registry (prediction revenue, channel refunds): "
                          f"{format_wei(d['registry_wei'])}")
        if d["compute_wei"]:
            console.print(f"compute market (worker fees, job refunds, slashed stakes): "
                          f"{format_wei(d['compute_wei'])}")
        console.print(f"total withdrawable: {format_wei(d['total_wei'])}")

    emit(out, json_out, human)


@handles_errors
def withdraw(
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset's dividends.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Withdraw every dividend, refunded stake and model-registry credit owed to you (or one
    dataset's dividends)."""
    with open_deployment(home) as dep:
        sender = signer(dep, as_)
        out: svc.Withdrawal | dict[str, object]
        if dataset is None:
            out = svc.withdraw(dep, sender)
        else:
            one = svc.withdraw_dividends(dep, sender, dataset)
            out = {"account": one.account, "total_wei": one.amount_wei,
                   "paid": [{"dataset": one.dataset, "kind": "dividends",
                             "amount_wei": one.amount_wei}]}

    def human(d: dict) -> None:
        if not d["paid"]:
            console.print("nothing to withdraw")
        for p in d["paid"]:
            console.print(f"withdrew {format_wei(p['amount_wei'])} ({p['kind']}"
                          + (f", {p['dataset']})" if p["dataset"] else ")"))

    emit(out, json_out, human)
