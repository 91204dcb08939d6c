"""The datasets list (``/``), a dataset (``/datasets/{name}``), a proposal (``/proposals/{id}``)
with its item gallery, each with a JSON twin under ``/api``, and item thumbnails (``/blobs``).

Pages read the index only (``ctx.read()``) and blobs from the store, verified by CID. In the
JSON twins every amount of wei or shares is a string of decimal digits (the numbers pass 2**53,
which ``JSON.parse`` would round: read them with ``BigInt``), typed so in ``/openapi.json``
(market/views/amounts.py), as the dashboard, model and compute twins carry them; the HTML
pages get the same read models with exact ``int`` amounts. Every address is EIP-55 checksummed.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from databright.errors import StorageError
from databright.market.views.datasets import (
    MAX_PER_PAGE,
    SORTS,
    DatasetDetail,
    DatasetList,
    dataset_detail,
    list_datasets,
)
from databright.market.views.proposals import (
    Gallery,
    ProposalDetail,
    gallery,
    proposal_detail,
)
from databright.storage.cid import is_cid
from databright.web.app import charts
from databright.web.app.errors import ApiError
from databright.web.app.sessions import viewer_of
from databright.web.app.templating import render

router = APIRouter()

#: largest blob ``/blobs`` serves (thumbnails; a bigger one is refused, never streamed
#: unverified)
MAX_BLOB_BYTES = 16 * 1024 * 1024
#: what ``/blobs`` serves inline, by magic bytes (anything else is an attachment)
_IMAGES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
           (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
IMMUTABLE = "public, max-age=31536000, immutable"

Name = Annotated[str, Path(min_length=1, max_length=200, description="The dataset's name.")]
ProposalId = Annotated[int, Path(ge=0, le=2**63 - 1, description="The proposal's id.")]
PageQ = Annotated[int, Query(ge=1, le=1_000_000)]
PerPageQ = Annotated[int, Query(ge=1, le=MAX_PER_PAGE)]
SortQ = Annotated[str, Query(pattern="^(" + "|".join(SORTS) + ")$")]
SearchQ = Annotated[str, Query(max_length=200)]
LabelQ = Annotated[str | None, Query(max_length=512)]


def chain_now(request: Request) -> int:
    """The chain's clock without a chain call: the embedded chain's wall clock plus its
    offset (``dev advance`` moves it), this machine's clock on a real network (the chain
    decides deadlines; the page only says how long is left)."""
    chain = request.app.state.ctx.dep.__dict__.get("chain")
    embedded = getattr(chain, "embedded", None)
    if embedded is not None:
        return int(embedded.backend.chain_time())
    return int(time.time())


# -- the datasets list ------------------------------------------------------------------------
def _datasets(request: Request, q: str, sort: str, page: int, per_page: int) -> DatasetList:
    ctx = request.app.state.ctx
    with ctx.read() as s:
        return list_datasets(s, ctx.dep.store, q=q, sort=sort, page=page, per_page=per_page)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index_page(request: Request, q: SearchQ = "", sort: SortQ = "newest", page: PageQ = 1,
               per_page: PerPageQ = 20) -> HTMLResponse:
    found = _datasets(request, q, sort, page, per_page)
    return render(request, "index.html", {"found": found, "sorts": SORTS})


@router.get("/api/datasets", response_model=DatasetList, tags=["datasets"])
def datasets_api(request: Request, q: SearchQ = "", sort: SortQ = "newest", page: PageQ = 1,
                 per_page: PerPageQ = 20) -> DatasetList:
    """Datasets matching ``q`` (name or description), sorted (descending) by ``sort``."""
    return _datasets(request, q, sort, page, per_page)


# -- one dataset ------------------------------------------------------------------------------
def _dataset(request: Request, name: str, page: int, per_page: int) -> DatasetDetail:
    ctx = request.app.state.ctx
    with ctx.read() as s:
        return dataset_detail(s, ctx.dep.store, name, page=page, per_page=per_page)


def _impact_chart(d: DatasetDetail) -> Any:
    by_model: dict[int, list[charts.Point]] = {}
    names: dict[int, str] = {}
    for p in sorted(d.impact, key=lambda p: (p.model_id, p.items, p.checkpoint)):
        names[p.model_id] = f"#{p.model_id} {p.model}"
        tip = (f"model #{p.model_id} {p.model}, checkpoint {p.checkpoint}: {p.metric_bps / 100:.2f}%"
               f" on {p.items} items ({p.entries} entries)"
               + ("" if p.attested else ", self-reported"))
        by_model.setdefault(p.model_id, []).append(
            charts.Point(p.items, p.metric_bps / 100, tip, p.attested))
    series = [charts.Series(names[m], tuple(pts)) for m, pts in by_model.items()]
    return charts.line_chart(series, title=f"{d.name}: metric vs dataset size",
                             x_label="items trained on", y_label="metric (%)",
                             empty="no model has a checkpoint yet", y_range=(0.0, 100.0))


def _dividend_chart(d: DatasetDetail) -> Any:
    timed = all(p.block_time is not None for p in d.payments)
    pts = tuple(charts.Point(float(p.block_time if timed and p.block_time is not None
                                   else p.block_number), float(p.cumulative_wei),
                             f"{charts.eth_text(p.amount_wei)} ETH ({p.source}) at block "
                             f"{p.block_number}; total {charts.eth_text(p.cumulative_wei)} ETH")
                for p in d.payments)
    return charts.line_chart([charts.Series("", pts)] if pts else [],
                             title=f"{d.name}: dividends distributed over time",
                             x_label="time (UTC)" if timed else "block",
                             y_label="ETH (cumulative)", empty="no dividends paid yet",
                             y_text=charts.eth_text,
                             x_text=charts.date_text if timed else charts.number_text,
                             step=True)


@router.get("/datasets/{name}", response_class=HTMLResponse, include_in_schema=False)
def dataset_page(request: Request, name: Name, page: PageQ = 1,
                 per_page: PerPageQ = 20) -> HTMLResponse:
    d = _dataset(request, name, page, per_page)
    return render(request, "dataset.html", {
        "d": d, "impact_chart": _impact_chart(d), "dividend_chart": _dividend_chart(d),
        "now": chain_now(request)})


@router.get("/api/datasets/{name}", response_model=DatasetDetail, tags=["datasets"])
def dataset_api(request: Request, name: Name, page: PageQ = 1,
                per_page: PerPageQ = 20) -> DatasetDetail:
    """A dataset: card, rules incl. fees, entries, shareholders, models, impact points,
    proposals (``page``: open ones first), dividends by source and over time."""
    return _dataset(request, name, page, per_page)


# -- one proposal -----------------------------------------------------------------------------
def _proposal(request: Request, s: Session, proposal_id: int) -> ProposalDetail:
    viewer = viewer_of(request)
    return proposal_detail(s, request.app.state.ctx.dep.store, proposal_id,
                           now=chain_now(request), viewer=viewer.address if viewer else None)


def _gallery(request: Request, s: Session, proposal_id: int, label: str | None,
             suspects: bool, page: int, per_page: int) -> Gallery:
    try:
        return gallery(s, request.app.state.ctx.dep.store, proposal_id, label=label or None,
                       suspects_only=suspects, page=page, per_page=per_page)
    except StorageError as exc:
        raise ApiError(502, "manifest_unreadable",
                       f"the proposal's manifest cannot be read from the store: {exc}") from None


@router.get("/proposals/{proposal_id}", response_class=HTMLResponse, include_in_schema=False)
def proposal_page(request: Request, proposal_id: ProposalId, label: LabelQ = None,
                  suspects: bool = False, page: PageQ = 1) -> HTMLResponse:
    viewer_of(request)  # looked up before the page's session (it opens its own)
    with request.app.state.ctx.read() as s:  # one session: the rows are read once
        p = _proposal(request, s, proposal_id)
        g = None if p.manifest_error else _gallery(request, s, proposal_id, label, suspects,
                                                   page, 60)
    t = p.tally
    return render(request, "proposal.html", {
        "p": p, "g": g,
        "quorum_bar": charts.progress_bar(
            (t.yes + t.no) / t.snapshot_supply if t.snapshot_supply else None,
            target=t.quorum_bps / 10_000, label="votes cast of the snapshot supply"),
        "approval_bar": charts.progress_bar(t.approval, target=t.approval_bps / 10_000,
                                            label="yes of the votes cast"),
    })


@router.get("/proposals/{proposal_id}/items", response_class=HTMLResponse,
            include_in_schema=False)
def gallery_fragment(request: Request, proposal_id: ProposalId, label: LabelQ = None,
                     suspects: bool = False, page: PageQ = 1) -> HTMLResponse:
    """The gallery alone (htmx swaps it in when the label filter changes)."""
    with request.app.state.ctx.read() as s:
        g = _gallery(request, s, proposal_id, label, suspects, page, 60)
    return render(request, "_ds_gallery.html", {"g": g})


@router.get("/api/proposals/{proposal_id}", response_model=ProposalDetail, tags=["proposals"])
def proposal_api(request: Request, proposal_id: ProposalId) -> ProposalDetail:
    """A proposal: record, evaluation report, tally against quorum and approval (and
    whether ``finalize`` would pass now), votes, label counts, the viewer's own vote."""
    viewer_of(request)
    with request.app.state.ctx.read() as s:
        return _proposal(request, s, proposal_id)


@router.get("/api/proposals/{proposal_id}/items", response_model=Gallery, tags=["proposals"])
def gallery_api(request: Request, proposal_id: ProposalId, label: LabelQ = None,
                suspects: bool = False, page: PageQ = 1,
                per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 60) -> Gallery:
    """A page of the proposal's items (suspects first): CID, label, file name, suspect flag;
    ``label`` keeps one label, ``suspects`` only the flagged items."""
    with request.app.state.ctx.read() as s:
        return _gallery(request, s, proposal_id, label, suspects, page, per_page)


# -- blobs ------------------------------------------------------------------------------------
@router.get("/blobs/{cid}", tags=["blobs"], response_class=Response,
            responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}})
def blob(request: Request, cid: Annotated[str, Path(max_length=100)]) -> Response:
    """A blob of the store, verified against its CID before a byte is sent: images (by their
    magic bytes) inline, anything else as an attachment; immutable, so cached for a year."""
    if not is_cid(cid):
        raise ApiError(404, "not_found", "not a CID")
    if request.headers.get("if-none-match") == f'"{cid}"':
        return Response(status_code=304, headers={"ETag": f'"{cid}"',
                                                  "Cache-Control": IMMUTABLE})
    store = request.app.state.ctx.dep.store
    try:
        size = store.path_of(cid).stat().st_size
    except (StorageError, OSError):
        size = None
    if size is not None and size > MAX_BLOB_BYTES:
        raise ApiError(413, "blob_too_large",
                       f"blob {cid} has {size} bytes; thumbnails stop at {MAX_BLOB_BYTES}")
    data = store.get(cid)  # MissingBlobError 404, CorruptBlobError 500: never the bad bytes
    media = next((m for magic, m in _IMAGES if data.startswith(magic)), None)
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{cid}"',
               "Content-Security-Policy": "default-src 'none'; sandbox"}
    if media is None:
        headers["Content-Disposition"] = f'attachment; filename="{cid}"'
        media = "application/octet-stream"
    return Response(content=data, media_type=media, headers=headers)
