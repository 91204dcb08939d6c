"""The model registry (``/models``, ``/models/{id}``) and the shareholder dashboard
(``/dashboard``), each page with its JSON twin under ``/api``.

Handlers read the index only (``ctx.read()``); wei amounts in JSON are decimal strings.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from databright.market.units import format_shares
from databright.market.views_dashboard import Dashboard, dashboard
from databright.market.views_models import PAGE_SIZE, model_list, model_page
from databright.web.app.errors import ApiError
from databright.web.app.sessions import viewer_of
from databright.web.app.templating import render

router = APIRouter()

DatasetQ = Annotated[str | None, Query(max_length=64, description="Only this dataset's models.")]
PageQ = Annotated[int, Query(ge=1, le=100_000, description="Page number (50 models a page).")]
ModelId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The model's registry id.")]


def _list(request: Request, dataset: str | None, page: int) -> Any:
    with request.app.state.ctx.read() as s:
        return model_list(s, dataset or None, offset=(page - 1) * PAGE_SIZE)


@router.get("/api/models", tags=["models"], summary="The model registry")
def api_models(request: Request, dataset: DatasetQ = None, page: PageQ = 1) -> dict[str, Any]:
    """Every model (of ``dataset``) with its best checkpoint (else its latest, self-reported),
    price, royalty and predictions paid through settled channels."""
    found = _list(request, dataset, page)
    return {"models": [c.to_json() for c in found.cards], "total": found.total, "page": page,
            "per_page": found.limit}


@router.get("/api/models/{model_id}", tags=["models"], summary="A model")
def api_model(request: Request, model_id: ModelId) -> dict[str, Any]:
    """One model with every checkpoint and every payment channel."""
    with request.app.state.ctx.read() as s:
        return model_page(s, model_id).to_json()


@router.get("/models", response_class=HTMLResponse, include_in_schema=False)
def models_page(request: Request, dataset: DatasetQ = None, page: PageQ = 1) -> HTMLResponse:
    found = _list(request, dataset, page)
    pages = max(1, -(-found.total // found.limit))
    return render(request, "models.html", {"found": found, "page": page, "pages": pages})


@router.get("/models/{model_id}", response_class=HTMLResponse, include_in_schema=False)
def model_html(request: Request, model_id: ModelId) -> HTMLResponse:
    with request.app.state.ctx.read() as s:
        shown = model_page(s, model_id)
    return render(request, "model.html", {"page_model": shown, "model": shown.card})


AddressQ = Annotated[str | None, Query(max_length=42, description=(
    "Any account, read-only [default: the signed-in viewer]."))]


def _address(request: Request, address: str | None) -> str | None:
    """The account to show: ``?address=`` (checksummed), else the signed-in viewer."""
    from databright.chain.wrapper import checksum
    from databright.errors import UsageError

    if address:
        try:
            return checksum(address)
        except UsageError:
            raise ApiError(400, "bad_address", f"not an Ethereum address: {address!r}") from None
    viewer = viewer_of(request)
    return viewer.address if viewer else None


def _dashboard(request: Request, address: str) -> Dashboard:
    with request.app.state.ctx.read() as s:
        return dashboard(s, address, time.time())


@router.get("/api/dashboard", tags=["dashboard"], summary="A shareholder's dashboard")
def api_dashboard(request: Request, address: AddressQ = None) -> dict[str, Any]:
    """Holdings, dividends waiting (by source), refunds and compute credits waiting, proposals
    waiting for the account's vote, and its contributions with their impact. Without
    ``address`` the signed-in viewer's; neither: 401."""
    shown = _address(request, address)
    if shown is None:
        raise ApiError(401, "not_signed_in", "sign in, or name an account with ?address=0x...")
    return _dashboard(request, shown).to_json()


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page(request: Request, address: AddressQ = None) -> HTMLResponse:
    shown = _address(request, address)
    if shown is None:
        return render(request, "dashboard.html", {"board": None, "own": False,
                                                  "shares": format_shares, "now": time.time()})
    viewer = viewer_of(request)
    own = viewer is not None and viewer.address == shown
    return render(request, "dashboard.html", {"board": _dashboard(request, shown), "own": own,
                                              "shares": format_shares, "now": time.time()})
