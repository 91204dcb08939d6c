"""`databright model serve`, `databright predict`, `databright channel open|list|close|reclaim`."""

from __future__ import annotations

import sys
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
from databright.errors import UsageError
from databright.home import Home
from databright.market import channels as svc
from databright.market.predict_client import DEFAULT_URL, predict_files
from databright.market.units import format_wei, parse_duration, parse_size, parse_wei

channel_app = typer.Typer(help="Payment channels that pay for predictions.", no_args_is_help=True)

ModelArg = Annotated[int, typer.Argument(help="Model id (`databright model list`).")]


@handles_errors
def serve(
    model: ModelArg,
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8700,
    max_body: Annotated[str, typer.Option("--max-body", help="Largest request body (K, M, G).")] = "8M",
    max_items: Annotated[int, typer.Option("--max-items", help="Most images or rows in one request.")] = 64,
    voucher_sync: Annotated[str, typer.Option("--voucher-sync", help="full: each accepted voucher is on disk before the answer; normal: it survives a crash of the server, not of the machine (faster).")] = "full",
    no_close: Annotated[bool, typer.Option("--no-close", help="Leave channels open on shutdown (close later with `channel close`).")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Serve a model's best checkpoint over HTTP, paid per prediction through channels.

    On shutdown (Ctrl-C) every channel is closed with the highest voucher received.
    """
    import uvicorn

    from databright.market.predictions import PredictionService
    from databright.web.predict_server import create_app

    if max_items < 1:
        raise UsageError("--max-items must be at least 1")
    with open_deployment(home) as dep:
        owner = signer(dep, as_)
        home_path = dep.home
    service = PredictionService.load(Home(home_path.path), model, owner,
                                     max_body_bytes=parse_size(max_body), max_items=max_items,
                                     sync=voucher_sync)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: reachable from other machines", file=sys.stderr)
    info = service.info
    if json_out:  # one line for a supervisor: where, what, at which price
        emit({"url": f"http://{host}:{port}", **info}, True)
    print(f"serving model {model} ({info['name']}, {info['family']}) at http://{host}:{port} "
          f"for {format_wei(service.price)} a prediction; Ctrl-C stops and closes channels",
          file=sys.stderr)
    uvicorn.run(create_app(service, close_on_shutdown=not no_close), host=host, port=port,
                log_level="warning")


@handles_errors
def predict(
    model: ModelArg,
    files: Annotated[list[Path], typer.Argument(help="Image files, or one-row JSON/CSV/Parquet files for a table model.")],
    url: Annotated[str, typer.Option(help="The model's prediction server.")] = DEFAULT_URL,
    deposit: Annotated[str | None, typer.Option(help="Deposit of a new channel (eth, gwei, wei) [default: 100 predictions].")] = None,
    timeout: Annotated[str, typer.Option(help="A new channel's lifetime before the deposit can be reclaimed.")] = "7d",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Predict files on a model's server, paying through a channel (opened or reused)."""
    wei = parse_wei(deposit, default_unit="eth") if deposit is not None else None
    with open_deployment(home) as dep:
        payer, where = signer(dep, as_), dep.home  # unlocking a key needs no chain
    out = predict_files(where, payer, model, files, url=url, deposit=wei,
                        timeout=parse_duration(timeout))

    def human(d: dict) -> None:
        for p in d["predictions"]:
            console.print(f"{p['file']}\t{p['label']}")
        how = "opened" if d["opened"] else "reused"
        console.print(f"paid {format_wei(d['charged'])} through channel {d['channel_id']} "
                      f"({how}; {format_wei(d['deposit'] - d['accepted'])} left)", style="dim")

    emit(out, json_out, human)


@channel_app.command("open")
@handles_errors
def open_(
    model: ModelArg,
    deposit: Annotated[str, typer.Option(help="Wei to deposit (eth, gwei, wei; bare numbers are ETH).")],
    timeout: Annotated[str, typer.Option(help="Lifetime before the deposit can be reclaimed.")] = "7d",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Open a channel: a deposit that pays for a model's predictions."""
    wei = parse_wei(deposit, default_unit="eth")
    with open_deployment(home) as dep:
        ch = svc.open_channel(dep, signer(dep, as_), model, wei, parse_duration(timeout))
    emit(ch, json_out, lambda d: console.print(
        f"opened channel {d['channel_id']} for model {d['model_id']} with "
        f"{format_wei(d['deposit'])}"))


@channel_app.command("list")
@handles_errors
def list_(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Channels this home pays for, and vouchers its prediction servers received."""
    with open_deployment(home) as dep:
        paying, received = svc.list_channels(dep)

    def human(d: dict) -> None:
        if not d["paying"] and not d["received"]:
            console.print("no channels")
        if d["paying"]:
            table = Table("channel", "model", "payer", "deposit", "accepted", "status",
                          title="paying")
            for c in d["paying"]:
                table.add_row(str(c["channel_id"]), str(c["model_id"]), c["payer"],
                              format_wei(c["deposit"]), format_wei(c["accepted"]), c["status"])
            console.print(table)
        if d["received"]:
            table = Table("channel", "model", "payer", "highest voucher", "status",
                          title="received")
            for v in d["received"]:
                table.add_row(str(v["channel_id"]), str(v["model_id"]), v["payer"],
                              format_wei(v["amount"]), v["status"])
            console.print(table)

    emit({"paying": paying, "received": received}, json_out, human)


@channel_app.command("close")
@handles_errors
def close(
    channel: Annotated[int | None, typer.Argument(help="Channel id [default: with --all, every open one].")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Close every channel with a voucher received.")] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Close channels with the highest vouchers received (the model owner signs)."""
    if (channel is None) == (not all_):
        raise UsageError("give a channel id or --all")
    with open_deployment(home) as dep:
        owner = signer(dep, as_)
        ids = [channel] if channel is not None else [
            v.channel_id for v in svc.open_vouchers(dep)]
        done = [svc.close_channel(dep, owner, c) for c in ids]

    def human(d: list) -> None:
        if not d:
            console.print("no channel to close")
        for s in d:
            console.print(f"closed channel {s['channel_id']}: {format_wei(s['amount'])} paid, "
                          f"{format_wei(s['royalty'])} royalty to the shareholders, "
                          f"{format_wei(s['refund'])} back to the payer")

    emit(done, json_out, human)


@channel_app.command("reclaim")
@handles_errors
def reclaim(
    channel: Annotated[int, typer.Argument(help="Channel id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Take an expired channel's deposit back: the first run starts the challenge window, a run
    after it ends credits the deposit (then `databright withdraw` pays it out)."""
    with open_deployment(home) as dep:
        out = svc.reclaim(dep, signer(dep, as_), channel)

    def human(d: dict) -> None:
        if d["status"] == "reclaiming":
            console.print(f"reclaim of channel {d['channel_id']} started: run again after "
                          f"timestamp {d['reclaim_at']} (the payee may still close until then)")
        else:
            console.print(f"channel {d['channel_id']} reclaimed: {format_wei(d['refund'])} "
                          "credited")

    emit(out, json_out, human)
