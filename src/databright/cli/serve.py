"""``databright serve``: the web app on 127.0.0.1 (by default)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from databright.cli.common import HomeOpt, JsonOpt, emit, err_console, handles_errors
from databright.errors import UsageError


@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(
        help="Server processes (a real node and a PostgreSQL index; the embedded chain has "
             "one writer, so one).")] = 1,
    sync_seconds: Annotated[float, typer.Option(
        help="Seconds between index syncs with the chain.")] = 1.0,
    page_cache_ttl: Annotated[float, typer.Option(
        help="Seconds a page stays in the cache for visitors who are not signed in (any sync "
             "or write drops it sooner; 0: no cache).")] = 10.0,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve the web app: datasets, proposals and their discussion, models, the shareholder
    dashboard and the compute market, with Sign-In with Ethereum; Ctrl-C stops it."""
    import uvicorn

    from databright.home import Home
    from databright.web.app import WebContext, create_app

    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be 1..65535, not {port}")
    if page_cache_ttl < 0:
        raise UsageError(f"--page-cache-ttl must be ≥ 0 seconds, not {page_cache_ttl}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    the_home = Home(home)
    config = the_home.load()
    url = f"http://{host}:{port}"
    if json_out:
        emit({"url": url, "chain": config.chain, "workers": workers}, True)
    if workers > 1:
        if config.chain == "embedded":
            raise UsageError("the embedded chain has a single writer: serve it with --workers 1 "
                             "(several workers need a real node and a PostgreSQL index)")
        if (config.db or "sqlite").startswith("sqlite"):
            err_console.print("several workers on a SQLite index: writes queue on its lock; "
                              "PostgreSQL suits them better")
        os.environ["DATABRIGHT_HOME"] = str(the_home.path)
        os.environ["DATABRIGHT_PAGE_CACHE_TTL"] = str(page_cache_ttl)
        err_console.print(f"DataBright on {url} ({workers} workers)")
        uvicorn.run("databright.web.app:app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level="warning")
        return
    ctx = WebContext(the_home, sync_seconds=sync_seconds)
    err_console.print(f"DataBright on {url}" + (
        " (embedded chain: this server is its single writer; other commands on this home wait "
        "for it)" if config.chain == "embedded" else ""))
    uvicorn.run(create_app(ctx, page_cache_ttl=page_cache_ttl), host=host, port=port,
                log_level="warning")
