"""Jinja2 templates of the pages, with the filters they share (wei, addresses, basis points).

Autoescaping is on for every template: labels, file names and comments are untrusted text.
Only HTML produced by the sanitiser (comments' rendered markdown) is marked safe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def eth(wei: int | None, digits: int = 6) -> str:
    """Integer wei as ETH for people: ``1.5 ETH``, ``0.000012 ETH``, ``0 ETH``."""
    if not wei:
        return "0 ETH"
    value = Decimal(int(wei)) / Decimal(10**18)
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    if text in ("0", "-0"):
        return f"{int(wei)} wei"
    return f"{text} ETH"


def short(address: str | None, n: int = 4) -> str:
    """``0x1234…abcd``."""
    if not address:
        return ""
    return f"{address[: 2 + n]}…{address[-n:]}" if len(address) > 2 * n + 3 else address


def pct(bps: int | None) -> str:
    """Basis points as a percentage: ``5000`` → ``50%``, ``125`` → ``1.25%``."""
    if bps is None:
        return "–"
    text = f"{int(bps) / 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def when(ts: float | None) -> str:
    """A unix time as ``2026-12-02 05:10 UTC``."""
    if ts is None:
        return "–"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters.update(eth=eth, short=short, pct=pct, when=when)


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status: int = 200) -> HTMLResponse:
    """Render a page with what every page shows (the signed-in viewer, CSRF token, chain)."""
    from databright.web.app.sessions import viewer_of

    ctx = request.app.state.ctx
    viewer = viewer_of(request)
    base: dict[str, Any] = {
        "viewer": viewer,
        "csrf": viewer.csrf if viewer else "",
        "embedded": ctx.is_embedded,
        "chain_id": ctx.config.chain_id,
        "sync_error": ctx.last_sync_error,
    }
    base.update(context or {})
    return templates.TemplateResponse(request, name, base, status_code=status)


def render_error(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    try:
        return render(request, "error.html", {"status": status, "code": code,
                                              "message": message}, status=status)
    except Exception:  # noqa: BLE001 - an error page must not fail in turn
        from databright.web.app.errors import html_error_page

        return html_error_page(status, code, message)
