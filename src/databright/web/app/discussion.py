"""The discussion of a proposal or a dataset: htmx fragments for the pages and their JSON twins.

Fragments (loaded into ``<section id="discussion">`` by the proposal and dataset pages):
``GET /proposals/{id}/discussion``, ``GET /datasets/{name}/discussion`` (``?page=&order=``).
JSON: ``GET|POST /api/proposals/{id}/comments``, ``GET|POST /api/datasets/{name}/comments``,
``POST /api/comments/draft`` (the exact message to sign), ``GET|PATCH /api/comments/{id}``,
``GET /api/comments/{id}/verify``.

Writes need a signed-in session and its CSRF token. A wallet session sends the message its
wallet signed; a local session (embedded chain) sends only the body and the server signs with
the session's unlocked keystore key. Either way the stored comment carries a signature anyone
can check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from databright.chain.signatures import sign_personal
from databright.errors import UsageError
from databright.market import discussion as dm
from databright.web.app.errors import ApiError
from databright.web.app.local_keys import signer_for
from databright.web.app.security import MAX_JSON_BYTES
from databright.web.app.sessions import Viewer, require_viewer, viewer_of
from databright.web.app.templating import render

router = APIRouter()

Page = Annotated[int, Query(ge=1, le=1_000_000, description="page number, from 1")]
PerPage = Annotated[int, Query(ge=1, le=dm.MAX_PAGE_SIZE, description="comments a page")]
Order = Annotated[str, Query(pattern="^(oldest|newest)$", description="oldest or newest first")]
CommentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a comment's id")]
ProposalId = Annotated[int, Path(ge=0, le=2**63 - 1, description="a proposal's id")]
DatasetName = Annotated[str, Path(min_length=1, max_length=64, description="a dataset's name")]
#: the body text, with room for the signed header around it
_MESSAGE_CHARS = dm.MAX_BODY_CHARS + 1_000


class NewComment(BaseModel):
    """A new comment or reply. ``message``/``signature``: what the wallet signed (leave both
    out for a local session: the server signs)."""

    body: str = Field(max_length=dm.MAX_BODY_CHARS * 2)
    parent_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    message: str | None = Field(default=None, max_length=_MESSAGE_CHARS * 2)
    signature: str | None = Field(default=None, max_length=200)


class EditComment(BaseModel):
    """A new version of a comment, signed like a new one."""

    body: str = Field(max_length=dm.MAX_BODY_CHARS * 2)
    message: str | None = Field(default=None, max_length=_MESSAGE_CHARS * 2)
    signature: str | None = Field(default=None, max_length=200)


class DraftRequest(BaseModel):
    """What to sign: a new comment on ``target`` (``proposal:2``, ``dataset:digits``) or an
    edit of ``comment_id``."""

    body: str = Field(max_length=dm.MAX_BODY_CHARS * 2)
    target: str | None = Field(default=None, max_length=80)
    parent_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    comment_id: int | None = Field(default=None, ge=1, le=2**63 - 1)


class DraftOut(BaseModel):
    message: str
    version: int
    signed_at: int


class CommentOut(BaseModel):
    """A comment: its current signed version, its author's weight, replies and history."""

    id: int
    target: str
    parent_id: int | None
    author: str
    body: str
    html: str
    message: str
    signature: str
    created_at: int
    edited_at: int | None
    version: int
    shares: str = Field(description="the author's shares of the dataset (integer, decimal)")
    weight_bps: int | None = Field(description="the author's share of the supply, bps")
    replies: list[CommentOut]
    history: list[dict[str, Any]]


class CommentPageOut(BaseModel):
    target: str
    page: int
    per_page: int
    total: int
    pages: int
    order: str
    comments: list[CommentOut]


class CreatedOut(BaseModel):
    id: int
    version: int
    comment: CommentOut


class VersionCheckOut(BaseModel):
    version: int
    signer: str | None
    valid: bool
    reason: str


class VerifyOut(BaseModel):
    id: int
    author: str
    valid: bool = Field(description="every version recovers to the author over its body")
    versions: list[VersionCheckOut]


def _limit_body(request: Request) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise ApiError(413, "request_too_large", f"the body exceeds {MAX_JSON_BYTES} bytes")


@contextmanager
def _domain(request: Request, *, write: bool = False) -> Iterator[Any]:
    """An index session; the rate limit's wait goes into the error as ``retry_after``."""
    ctx = request.app.state.ctx
    opener = ctx.dep.index.session if write else ctx.read
    try:
        with opener() as s:
            yield s
    except dm.RateLimitedError as exc:
        raise ApiError(429, "rate_limited", str(exc), retry_after=exc.retry_after) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _chain_id(request: Request) -> int:
    return int(request.app.state.ctx.config.chain_id or 0)


def _target(kind: str, ident: str | int) -> dm.Target:
    try:
        return dm.Target.parse(f"{kind}:{ident}")
    except UsageError as exc:
        raise ApiError(404, "not_found", str(exc)) from None


def _signed(request: Request, viewer: Viewer, message: str | None, signature: str | None,
            make_message: Any) -> tuple[str, str]:
    """The (message, signature) of a write: the wallet's, or the server's for a local session."""
    if message is not None and signature is not None:
        return message, signature
    if message is not None or signature is not None:
        raise ApiError(422, "invalid_request", "send both message and signature, or neither "
                       "(local sign-in: the server signs)")
    signer = signer_for(request, viewer)
    text = make_message()
    return text, sign_personal(signer.key, text)


# ---- JSON ---------------------------------------------------------------------------------

def _list(request: Request, target: dm.Target, page: int, per_page: int,
          order: str) -> dict[str, Any]:
    with _domain(request) as s:
        return dm.list_page(s, target, page=page, per_page=per_page, order=order).to_dict()


def _create(request: Request, viewer: Viewer, target: dm.Target,
            data: NewComment) -> dict[str, Any]:
    chain_id = _chain_id(request)
    with _domain(request, write=True) as s:
        def make() -> str:
            return dm.draft(s, chain_id=chain_id, author=viewer.address, body=data.body,
                            target=target, parent_id=data.parent_id, now=_now()).message

        message, signature = _signed(request, viewer, data.message, data.signature, make)
        cid = dm.post(s, chain_id=chain_id, target=target, author=viewer.address,
                      body=data.body, parent_id=data.parent_id, message=message,
                      signature=signature, now=_now())
        return {"id": cid, "version": 0, "comment": dm.get(s, cid).to_dict()}


@router.get("/api/proposals/{proposal_id}/comments", response_model=CommentPageOut,
            tags=["discussion"])
def proposal_comments(request: Request, proposal_id: ProposalId, page: Page = 1,
                      per_page: PerPage = dm.PAGE_SIZE,
                      order: Order = "oldest") -> dict[str, Any]:
    """A page of a proposal's comments (top-level, each with its replies)."""
    return _list(request, _target("proposal", proposal_id), page, per_page, order)


@router.get("/api/datasets/{name}/comments", response_model=CommentPageOut,
            tags=["discussion"])
def dataset_comments(request: Request, name: DatasetName, page: Page = 1,
                     per_page: PerPage = dm.PAGE_SIZE, order: Order = "oldest") -> dict[str, Any]:
    """A page of a dataset's comments."""
    return _list(request, _target("dataset", name), page, per_page, order)


@router.post("/api/proposals/{proposal_id}/comments", response_model=CreatedOut,
             status_code=201, tags=["discussion"], dependencies=[Depends(_limit_body)])
def post_proposal_comment(request: Request, proposal_id: ProposalId, data: NewComment,
                          viewer: Annotated[Viewer, Depends(require_viewer)]) -> dict[str, Any]:
    """Post a signed comment (or a reply: ``parent_id``) on a proposal."""
    return _create(request, viewer, _target("proposal", proposal_id), data)


@router.post("/api/datasets/{name}/comments", response_model=CreatedOut, status_code=201,
             tags=["discussion"], dependencies=[Depends(_limit_body)])
def post_dataset_comment(request: Request, name: DatasetName, data: NewComment,
                         viewer: Annotated[Viewer, Depends(require_viewer)]) -> dict[str, Any]:
    """Post a signed comment (or a reply) on a dataset."""
    return _create(request, viewer, _target("dataset", name), data)


@router.post("/api/comments/draft", response_model=DraftOut, tags=["discussion"],
             dependencies=[Depends(_limit_body)])
def draft_comment(request: Request, data: DraftRequest,
                  viewer: Annotated[Viewer, Depends(require_viewer)]) -> dict[str, Any]:
    """The exact message the signed-in viewer signs to post (or edit) this body."""
    if (data.target is None) == (data.comment_id is None):
        raise ApiError(422, "invalid_request", "name a target or the comment_id to edit")
    try:
        target = dm.Target.parse(data.target) if data.target is not None else None
    except UsageError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    with _domain(request) as s:
        d = dm.draft(s, chain_id=_chain_id(request), author=viewer.address, body=data.body,
                     target=target, parent_id=data.parent_id, comment_id=data.comment_id,
                     now=_now())
    return {"message": d.message, "version": d.version, "signed_at": int(d.signed_at.timestamp())}


@router.get("/api/comments/{comment_id}", response_model=CommentOut, tags=["discussion"])
def get_comment(request: Request, comment_id: CommentId) -> dict[str, Any]:
    """A comment with its replies and every earlier version (the edit history)."""
    with _domain(request) as s:
        return dm.get(s, comment_id).to_dict()


@router.patch("/api/comments/{comment_id}", response_model=CreatedOut, tags=["discussion"],
              dependencies=[Depends(_limit_body)])
def edit_comment(request: Request, comment_id: CommentId, data: EditComment,
                 viewer: Annotated[Viewer, Depends(require_viewer)]) -> dict[str, Any]:
    """A new signed version of the viewer's own comment (403 for anyone else's)."""
    chain_id = _chain_id(request)
    with _domain(request, write=True) as s:
        def make() -> str:
            return dm.draft(s, chain_id=chain_id, author=viewer.address, body=data.body,
                            comment_id=comment_id, now=_now()).message

        message, signature = _signed(request, viewer, data.message, data.signature, make)
        version = dm.edit(s, chain_id=chain_id, comment_id=comment_id, author=viewer.address,
                          body=data.body, message=message, signature=signature, now=_now())
        return {"id": comment_id, "version": version, "comment": dm.get(s, comment_id).to_dict()}


@router.get("/api/comments/{comment_id}/verify", response_model=VerifyOut, tags=["discussion"])
def verify_comment(request: Request, comment_id: CommentId) -> dict[str, Any]:
    """Recover the signer of the current version and of each earlier one (anyone can)."""
    with _domain(request) as s:
        view = dm.get(s, comment_id)
        checks = dm.verify_comment(s, comment_id, _chain_id(request))
    return {"id": comment_id, "author": view.author, "valid": all(c.valid for c in checks),
            "versions": [c.to_dict() for c in checks]}


# ---- HTML fragments -------------------------------------------------------------------------

Focus = Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                    description="show the page holding this comment")]


def _fragment(request: Request, target: dm.Target, page: int, per_page: int,
              order: str, base_url: str, focus: int | None) -> HTMLResponse:
    with _domain(request) as s:
        if focus is not None:
            page = dm.page_of(s, target, focus, per_page=per_page, order=order)
        listing = dm.list_page(s, target, page=page, per_page=per_page, order=order)
    viewer = viewer_of(request)
    return render(request, "_discussion.html", {
        "listing": listing, "target": str(target), "base_url": base_url, "focus": focus,
        "post_url": f"/api{base_url.removesuffix('/discussion')}/comments",
        "me": viewer.address if viewer else None,
        "max_body": dm.MAX_BODY_CHARS,
    })


@router.get("/proposals/{proposal_id}/discussion", response_class=HTMLResponse,
            tags=["pages"])
def proposal_discussion(request: Request, proposal_id: ProposalId, page: Page = 1,
                        per_page: PerPage = dm.PAGE_SIZE, order: Order = "oldest",
                        focus: Focus = None) -> HTMLResponse:
    """The discussion fragment of a proposal's page (htmx)."""
    target = _target("proposal", proposal_id)
    return _fragment(request, target, page, per_page, order,
                     f"/proposals/{target.id}/discussion", focus)


@router.get("/datasets/{name}/discussion", response_class=HTMLResponse, tags=["pages"])
def dataset_discussion(request: Request, name: DatasetName, page: Page = 1,
                       per_page: PerPage = dm.PAGE_SIZE, order: Order = "oldest",
                       focus: Focus = None) -> HTMLResponse:
    """The discussion fragment of a dataset's page (htmx)."""
    target = _target("dataset", name)
    return _fragment(request, target, page, per_page, order,
                     f"/datasets/{quote(target.id, safe='')}/discussion", focus)
