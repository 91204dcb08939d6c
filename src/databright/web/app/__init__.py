"""``databright serve``: the web app (FastAPI + Jinja2 + htmx; the vendored ethers and htmx
files are its only JavaScript libraries, with no build step).

Every page has a JSON twin under ``/api`` (schema at ``/openapi.json``). Pages read the index;
writes are transactions the viewer's wallet signs (or, for a local sign-in on the embedded
chain, the server with the home's keystore), and the discussion, stored in the index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from databright.home import Home
from databright.web.app import errors, security
from databright.web.app.context import WebContext
from databright.web.app.page_cache import PageCache, PageCacheMiddleware

STATIC = Path(__file__).resolve().parent.parent / "static"

__all__ = ["WebContext", "create_app"]


def create_app(ctx: WebContext, *, manage: bool = True, page_cache_ttl: float = 10.0) -> FastAPI:
    """The app over ``ctx``; with ``manage`` it starts and stops the context with the server.

    ``page_cache_ttl``: seconds an anonymous visitor's page may be served from the page cache
    (0: no cache; page_cache.py says what is cached and when it is dropped).
    """
    from databright.web.app import (
        auth,
        compute_pages,
        dataset_pages,
        discussion,
        model_pages,
        rpc,
        tx,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage:
            ctx.start()
        try:
            yield
        finally:
            if manage:
                ctx.stop()

    app = FastAPI(title="DataBright", version="1", lifespan=lifespan, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/openapi.json")
    app.state.ctx = ctx
    errors.install(app)
    security.install(app)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for module in (auth, discussion, tx, rpc, dataset_pages, model_pages, compute_pages):
        app.include_router(module.router)
    app.state.page_cache = PageCache(ttl=page_cache_ttl)
    app.add_middleware(PageCacheMiddleware, cache=app.state.page_cache, version=ctx.version,
                       on_write=ctx.wrote)
    app.add_middleware(security.BodyLimitMiddleware)  # outermost: before anything reads
    return app


def app_from_env() -> FastAPI:
    """An app for ``uvicorn --factory databright.web.app:app_from_env`` (several workers on a
    real node): the home is ``$DATABRIGHT_HOME``, the page cache's seconds
    ``$DATABRIGHT_PAGE_CACHE_TTL`` (default 10)."""
    import os

    ttl = float(os.environ.get("DATABRIGHT_PAGE_CACHE_TTL") or 10.0)
    app = create_app(WebContext(Home()), page_cache_ttl=ttl)
    app.add_middleware(security.HeadersMiddleware, headers=security.served_by())
    return app
