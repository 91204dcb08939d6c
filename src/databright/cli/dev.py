"""`databright dev advance DURATION`: move the embedded chain's clock (tests and demos)."""

from __future__ import annotations

import typer

from databright.cli.common import HomeOpt, JsonOpt, console, emit, handles_errors, open_deployment
from databright.errors import UsageError
from databright.market.units import format_duration, parse_duration

app = typer.Typer(help="Developer tools for the embedded chain.", no_args_is_help=True)


@app.command("advance")
@handles_errors
def advance(duration: str, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Move the embedded chain's clock forward (refused on a real network)."""
    seconds = parse_duration(duration)
    if seconds <= 0:
        raise UsageError("duration must be positive")
    with open_deployment(home) as dep:
        if not dep.chain.is_embedded:
            raise UsageError(
                f"`dev advance` only works on the embedded chain; this home uses {dep.config.chain}"
            )
        before = dep.chain.next_block_time()
        dep.chain.advance_time(seconds)
        out = {"advanced": seconds, "before": before, "now": dep.chain.next_block_time()}
    emit(out, json_out, lambda d: console.print(
        f"chain clock moved forward {format_duration(d['advanced'])} (now {d['now']})"))
