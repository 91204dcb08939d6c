"""`databright init` and `databright account new|list|show`."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from databright.cli.common import (
    HomeOpt,
    JsonOpt,
    console,
    emit,
    handles_errors,
    open_deployment,
    password_for,
)
from databright.errors import UsageError
from databright.home import Home
from databright.market import deployment as svc
from databright.market.units import format_wei

app = typer.Typer(help="Accounts in the home's encrypted keystore.", no_args_is_help=True)


@handles_errors
def init(
    chain: Annotated[str | None, typer.Option(help="JSON-RPC URL of a node [default: the embedded chain].")] = None,
    market: Annotated[str | None, typer.Option(help="Attach to this DataMarket address instead of deploying.")] = None,
    registry: Annotated[str | None, typer.Option(help="With --market: attach this ModelRegistry too.")] = None,
    store: Annotated[str | None, typer.Option(help="Blob store URL (fsspec) [default: HOME/store].")] = None,
    db: Annotated[str | None, typer.Option(help="Index database URL [default: sqlite HOME/index.sqlite].")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a home (embedded chain with contracts deployed) or attach to a deployment."""
    out = svc.init_home(Home(home), chain=chain, market=market, registry=registry, store=store, db=db)

    def human(d: dict) -> None:
        verb = "created" if d["created"] else "already initialised:"
        console.print(f"{verb} {d['home']}")
        console.print(f"chain: {d['chain']} (id {d['chain_id']}, block {d['block']})")
        console.print(f"DataMarket: {d['contracts'].get('DataMarket')}")
        console.print(f"store: {d['store']}\nindex: {d['db']}")
        console.print(f"{len(d['accounts'])} accounts, {d['datasets']} datasets, "
                      f"{d['proposals']} proposals")
        if not d["accounts"]:
            console.print("next: `databright account new NAME`")

    emit(out, json_out, human)


@app.command("new")
@handles_errors
def new(
    name: str,
    fast_kdf: Annotated[bool, typer.Option("--fast-kdf", help="Cheaper key derivation (pbkdf2, 2048 rounds): for throwaway dev accounts only.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an account (funded by the dev faucet on the embedded chain)."""
    with open_deployment(home) as dep:
        password = password_for(name, confirm=True)
        out = svc.new_account(dep, name, password, fast_kdf=fast_kdf)
    emit(out, json_out, lambda d: console.print(
        f"account {d['name']}: {d['address']}"
        + (f" (funded with {format_wei(d['funded_wei'])})" if d["funded_wei"] else "")
        + (" — the default signer" if d["default"] else "")))


@app.command("import")
@handles_errors
def import_(
    name: str,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import an existing private key (from DATABRIGHT_PRIVATE_KEY or a prompt)."""
    key = os.environ.get("DATABRIGHT_PRIVATE_KEY")
    if key is None:
        if not sys.stdin.isatty():
            raise UsageError("set DATABRIGHT_PRIVATE_KEY to the 0x… key to import (no terminal to prompt on)")
        key = typer.prompt("private key (0x…)", hide_input=True)
    with open_deployment(home) as dep:
        out = svc.import_account(dep, name, key, password_for(name, confirm=True))
    emit(out, json_out, lambda d: console.print(
        f"account {d['name']}: {d['address']}, balance {format_wei(d['balance_wei'])}"))


@app.command("list")
@handles_errors
def list_(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List accounts with their balances."""
    with open_deployment(home) as dep:
        rows = [svc.account_info(dep, name) for name, _ in dep.keystore.list()]

    def human(d: dict) -> None:
        table = Table("name", "address", "balance", "default")
        for r in d["accounts"]:
            table.add_row(r["name"], r["address"], format_wei(r["balance_wei"]),
                          "*" if r["default"] else "")
        console.print(table)

    emit({"accounts": rows}, json_out, human)


@app.command("show")
@handles_errors
def show(name: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Show one account's address and balance."""
    with open_deployment(home) as dep:
        out = svc.account_info(dep, name)
    emit(out, json_out, lambda d: console.print(
        f"{d['name']}: {d['address']}, balance {format_wei(d['balance_wei'])}"))
