"""`databright index sync|rebuild`: the chain-event cache behind every listing."""

from __future__ import annotations

from typing import Annotated

import typer

from databright.cli.common import HomeOpt, JsonOpt, console, emit, handles_errors, open_deployment
from databright.market import sync as svc

app = typer.Typer(help="The index: a cache of the chain's events, read by every listing.",
                  no_args_is_help=True)

RangeOpt = Annotated[int, typer.Option("--range", min=1,
                                       help="Blocks read and applied per database transaction.")]


def _human(verb: str):  # type: ignore[no-untyped-def]
    def show(r: svc.SyncResult) -> None:
        if r.ranges == 0:
            console.print(f"index up to date at block {r.to_block}")
            return
        extra = f" (a reorganisation replaced {r.reorg_depth} blocks)" if r.reorg_depth else ""
        console.print(f"{verb} blocks {r.from_block}..{r.to_block}: {r.events} events in "
                      f"{r.ranges} ranges, {r.seconds:.2f} s{extra}")

    return show


@app.command("sync")
@handles_errors
def sync(range_: RangeOpt = svc.RANGE_SIZE, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Apply the chain's new events to the index (every listing does this first)."""
    with open_deployment(home) as dep:
        out = svc.sync(dep, range_size=range_)
    emit(out, json_out, _human("synced"))


@app.command("rebuild")
@handles_errors
def rebuild(range_: RangeOpt = svc.RANGE_SIZE, home: HomeOpt = None,
            json_out: JsonOpt = False) -> None:
    """Drop the chain-derived tables and rebuild them from the logs (reports are kept)."""
    with open_deployment(home) as dep:
        out = svc.sync(dep, range_size=range_, rebuild=True)
    emit(out, json_out, _human("rebuilt from"))
