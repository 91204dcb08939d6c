"""The discussion of a proposal or a dataset: comments signed by their author, stored in the
index (tables ``comments`` and ``comment_edits``, which ``index rebuild`` never touches).

What a user relies on:

* **Signed.** A comment's author ``personal_sign``-s the exact text :func:`comment_message`
  builds: a domain-separating header, the chain id, the target, the comment (``new`` or its id),
  the parent, the version, the author, a time the server checks (±5 minutes) and the body. The
  server stores that message and signature; anyone can recover the author
  (:func:`verify_comment`). A message for another target, parent, version or body is refused.
* **Edits keep history.** An edit is a new signed version (``version`` = edits so far + 1); the
  previous version moves to ``comment_edits`` with its own message and signature, which still
  verify. Nothing is deleted.
* **Replies are one level deep**: a reply's parent is a top-level comment of the same target.
* **Pages**: top-level comments, oldest or newest first, 20 a page (at most 100), each with all
  its replies (oldest first), read in a fixed number of queries whatever the page size.
* **Limits**: bodies of 1–10,000 characters (after stripping), and per author 5 writes (new
  comments and edits) a minute and 100 a day, counted from the tables, so every server
  process behind a proxy agrees.
* **Weight**: each comment shows its author's current share of the dataset's supply (the
  proposal's dataset for a proposal), in basis points, read in one query per page.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from databright.chain.signatures import BadSignature, recover_personal
from databright.errors import DataBrightError, NotFoundError, UsageError
from databright.index.cache import DatasetRow, HolderRow, ProposalRow
from databright.index.web import Comment, CommentEdit
from databright.market.markdown import render_markdown

HEADER = "DataBright signed comment (v1)"
#: seconds a signed message's time may differ from the server's clock
MAX_SKEW = 300
MAX_BODY_CHARS = 10_000
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
#: (window in seconds, writes allowed in it) per author
RATE_LIMITS = ((60, 5), (86_400, 100))
KINDS = ("proposal", "dataset")

_TIME = re.compile(r"^time: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class MessageMismatchError(DataBrightError):
    """The signed message is not the one for this comment (target, parent, version, body)."""


class StaleMessageError(DataBrightError):
    """The signed message's time is more than five minutes from the server's clock."""


class WrongSignerError(DataBrightError):
    """The signature recovers an account other than the signed-in author."""

    http_status = 401


class NotAuthorError(DataBrightError):
    """Only a comment's author may edit it."""

    http_status = 403


class InvalidBodyError(DataBrightError):
    """A comment body is empty, too long or holds control characters."""


class InvalidReplyError(DataBrightError):
    """A reply's parent is not a top-level comment of the same target."""


class DuplicateCommentError(DataBrightError):
    """This signed message was already posted (a double submit or a replay)."""

    http_status = 409


class EditConflictError(DataBrightError):
    """Another edit of the comment landed first: draft the edit again."""

    http_status = 409


class RateLimitedError(DataBrightError):
    """Too many writes by this author; ``retry_after`` seconds until the next is allowed."""

    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Target:
    """What a comment is about: ``proposal`` with its id, or ``dataset`` with its name."""

    kind: str
    id: str

    @classmethod
    def parse(cls, text: str) -> Target:
        """``proposal:2`` or ``dataset:digits``."""
        kind, sep, ident = text.partition(":")
        if not sep or kind not in KINDS or not ident or len(ident) > 64 or _CONTROL.search(ident):
            raise UsageError("a target is 'proposal:<id>' or 'dataset:<name>'")
        if kind == "proposal":
            if not ident.isdigit() or len(ident) > 18:
                raise UsageError("a proposal's id is a number")
            ident = str(int(ident))
        return cls(kind, ident)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _iso(ts: datetime) -> str:
    return _utc(ts).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_body(body: str) -> str:
    """The body as stored and signed (``\\r\\n`` → ``\\n``), or :class:`InvalidBodyError`."""
    if not isinstance(body, str):
        raise InvalidBodyError("a comment's body is text")
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InvalidBodyError("a comment cannot be empty")
    if len(text) > MAX_BODY_CHARS:
        raise InvalidBodyError(f"a comment is at most {MAX_BODY_CHARS} characters "
                               f"(this one has {len(text)})")
    if _CONTROL.search(text):
        raise InvalidBodyError("a comment cannot hold control characters")
    return text


def comment_message(*, chain_id: int, target: Target, author: str, comment_id: int | None,
                    parent_id: int | None, version: int, signed_at: datetime,
                    body: str) -> str:
    """The exact text an author signs for a new comment (``comment_id`` None) or an edit."""
    return "\n".join((
        HEADER,
        "Signing publishes this text under your address; it sends no transaction.",
        f"chain: {chain_id}",
        f"target: {target}",
        f"comment: {'new' if comment_id is None else comment_id}",
        f"parent: {'none' if parent_id is None else parent_id}",
        f"version: {version}",
        f"author: {author}",
        f"time: {_iso(signed_at)}",
        "",
        body,
    ))


def signed_time(message: str) -> datetime:
    """The ``time:`` line of a signed message (:class:`MessageMismatchError` if it has none)."""
    head = message.split("\n\n", 1)[0]
    found = _TIME.search(head)
    if found is None:
        raise MessageMismatchError("the signed message has no 'time:' line: draft it first")
    return datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def check_signed(expected: str, message: str, signature: str, author: str,
                 now: datetime) -> None:
    """Refuse unless ``message`` is ``expected``, recent, and signed by ``author``."""
    if message != expected:
        raise MessageMismatchError("the signed message is not the one for this comment "
                                   "(draft it with POST /api/comments/draft)")
    skew = abs((signed_time(message) - _utc(now)).total_seconds())
    if skew > MAX_SKEW:
        raise StaleMessageError(f"the signed time is {int(skew)} s from the server's clock "
                                f"(at most {MAX_SKEW} s): sign it again")
    signer = recover_personal(message, signature)
    if signer.lower() != author.lower():
        raise WrongSignerError(f"the signature is by {signer}, not by the signed-in {author}")


@dataclass(frozen=True)
class TargetInfo:
    """A target that exists, with the dataset whose shares weigh its comments."""

    target: Target
    dataset_id: int
    total_supply: int


def resolve(s: Session, target: Target) -> TargetInfo:
    """The target's dataset, or :class:`NotFoundError` for an unknown proposal or dataset."""
    if target.kind == "proposal":
        row = s.execute(select(DatasetRow.dataset_id, DatasetRow.total_supply)
                        .join(ProposalRow, ProposalRow.dataset_id == DatasetRow.dataset_id)
                        .where(ProposalRow.proposal_id == int(target.id))).first()
    else:
        row = s.execute(select(DatasetRow.dataset_id, DatasetRow.total_supply)
                        .where(DatasetRow.name == target.id)).first()
    if row is None:
        raise NotFoundError(f"no {target.kind} {target.id!r}")
    return TargetInfo(target, int(row[0]), int(row[1] or 0))


def write_times(s: Session, author: str, since: datetime) -> list[datetime]:
    """When ``author`` wrote (posted or edited a comment) since ``since``, oldest first."""
    posted = s.scalars(select(Comment.created_at)
                       .where(Comment.author == author, Comment.created_at >= since))
    last_edits = s.scalars(select(Comment.edited_at)
                           .where(Comment.author == author, Comment.edited_at >= since))
    # version k ≥ 1 was written by an edit when it was signed; the current one is edited_at
    old_edits = s.scalars(select(CommentEdit.signed_at)
                          .join(Comment, Comment.id == CommentEdit.comment_id)
                          .where(Comment.author == author, CommentEdit.version >= 1,
                                 CommentEdit.signed_at >= since))
    times = [_utc(t) for t in (*posted, *last_edits, *old_edits) if t is not None]
    return sorted(times)


def check_rate(s: Session, author: str, now: datetime) -> None:
    """:class:`RateLimitedError` when one more write would pass a limit of :data:`RATE_LIMITS`."""
    now = _utc(now)
    longest = max(window for window, _ in RATE_LIMITS)
    times = write_times(s, author, now - timedelta(seconds=longest))
    for window, limit in RATE_LIMITS:
        recent = [t for t in times if t > now - timedelta(seconds=window)]
        if len(recent) >= limit:
            frees_at = recent[len(recent) - limit] + timedelta(seconds=window)
            wait = max(1, math.ceil((frees_at - now).total_seconds()))
            raise RateLimitedError(f"at most {limit} comments or edits per {window} s: "
                                   f"retry in {wait} s", retry_after=wait)


@dataclass(frozen=True)
class Draft:
    """The message to sign for a new comment or an edit."""

    message: str
    version: int
    signed_at: datetime


def draft(s: Session, *, chain_id: int, author: str, body: str, target: Target | None = None,
          parent_id: int | None = None, comment_id: int | None = None,
          now: datetime) -> Draft:
    """The message ``author`` signs to post ``body`` on ``target`` (or edit ``comment_id``)."""
    text = normalise_body(body)
    now = _utc(now).replace(microsecond=0)
    if comment_id is not None:
        row = _editable(s, comment_id, author)
        return Draft(comment_message(chain_id=chain_id, target=Target(row.target_kind,
                                                                      row.target_id),
                                     author=row.author, comment_id=row.id,
                                     parent_id=row.parent_id, version=row.edits + 1,
                                     signed_at=now, body=text), row.edits + 1, now)
    if target is None:
        raise UsageError("a draft names its target, or the comment it edits")
    resolve(s, target)
    _check_parent(s, target, parent_id)
    return Draft(comment_message(chain_id=chain_id, target=target, author=author,
                                 comment_id=None, parent_id=parent_id, version=0,
                                 signed_at=now, body=text), 0, now)


def _check_parent(s: Session, target: Target, parent_id: int | None) -> None:
    if parent_id is None:
        return
    parent = s.get(Comment, parent_id)
    if parent is None or (parent.target_kind, parent.target_id) != (target.kind, target.id):
        raise InvalidReplyError(f"comment {parent_id} is not on {target}")
    if parent.parent_id is not None:
        raise InvalidReplyError("replies are one level deep: reply to the top-level comment")


def _editable(s: Session, comment_id: int, author: str) -> Comment:
    row = s.get(Comment, comment_id)
    if row is None:
        raise NotFoundError(f"no comment {comment_id}")
    if row.author.lower() != author.lower():
        raise NotAuthorError("only its author can edit a comment")
    return row


def post(s: Session, *, chain_id: int, target: Target, author: str, body: str,
         parent_id: int | None, message: str, signature: str, now: datetime) -> int:
    """Store a new signed comment (or reply); returns its id.

    Raises:
        NotFoundError, InvalidBodyError, InvalidReplyError, MessageMismatchError,
        StaleMessageError, WrongSignerError, BadSignature, DuplicateCommentError,
        RateLimitedError.
    """
    text = normalise_body(body)
    resolve(s, target)
    _check_parent(s, target, parent_id)
    expected = comment_message(chain_id=chain_id, target=target, author=author,
                               comment_id=None, parent_id=parent_id, version=0,
                               signed_at=signed_time(message), body=text)
    check_signed(expected, message, signature, author, now)
    recent = _utc(now) - timedelta(seconds=4 * MAX_SKEW)
    if s.scalar(select(Comment.id).where(Comment.author == author,
                                         Comment.created_at >= recent,
                                         Comment.signature == signature)) is not None:
        raise DuplicateCommentError("this signed comment is already posted")
    check_rate(s, author, now)
    row = Comment(target_kind=target.kind, target_id=target.id, parent_id=parent_id,
                  author=author, body=text, message=message, signature=signature,
                  created_at=_utc(now), edits=0)
    s.add(row)
    s.flush()
    return int(row.id)


def edit(s: Session, *, chain_id: int, comment_id: int, author: str, body: str, message: str,
         signature: str, now: datetime) -> int:
    """Replace a comment by a new signed version, keeping the old one; returns the version."""
    text = normalise_body(body)
    row = _editable(s, comment_id, author)
    version = row.edits + 1
    expected = comment_message(chain_id=chain_id, target=Target(row.target_kind, row.target_id),
                               author=row.author, comment_id=row.id, parent_id=row.parent_id,
                               version=version, signed_at=signed_time(message), body=text)
    check_signed(expected, message, signature, author, now)
    check_rate(s, author, now)
    old = (row.body, row.message, row.signature, row.edited_at or row.created_at)
    done = s.execute(update(Comment)
                     .where(Comment.id == comment_id, Comment.edits == row.edits)
                     .values(body=text, message=message, signature=signature,
                             edited_at=_utc(now), edits=version)
                     .execution_options(synchronize_session=False))
    if getattr(done, "rowcount", 1) != 1:
        raise EditConflictError("the comment was edited meanwhile: draft the edit again")
    s.add(CommentEdit(comment_id=comment_id, version=version - 1, body=old[0], message=old[1],
                      signature=old[2], signed_at=_utc(old[3])))
    s.flush()
    return version


@dataclass(frozen=True)
class Version:
    """One signed version of a comment (0 is the first)."""

    version: int
    body: str
    html: str
    message: str
    signature: str
    signed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "body": self.body, "html": self.html,
                "message": self.message, "signature": self.signature,
                "signed_at": int(self.signed_at.timestamp())}


@dataclass
class CommentView:
    """A comment as pages show it (``weight_bps``: the author's share of the dataset)."""

    id: int
    target: Target
    parent_id: int | None
    author: str
    body: str
    html: str
    message: str
    signature: str
    created_at: datetime
    edited_at: datetime | None
    version: int
    shares: int = 0
    weight_bps: int | None = None
    replies: list[CommentView] = field(default_factory=list)
    history: list[Version] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "target": str(self.target), "parent_id": self.parent_id,
            "author": self.author, "body": self.body, "html": self.html,
            "message": self.message, "signature": self.signature,
            "created_at": int(self.created_at.timestamp()),
            "edited_at": int(self.edited_at.timestamp()) if self.edited_at else None,
            "version": self.version, "shares": str(self.shares),
            "weight_bps": self.weight_bps,
            "replies": [r.to_dict() for r in self.replies],
            "history": [v.to_dict() for v in self.history],
        }


def _view(row: Comment) -> CommentView:
    return CommentView(row.id, Target(row.target_kind, row.target_id), row.parent_id,
                       row.author, row.body, render_markdown(row.body), row.message,
                       row.signature, _utc(row.created_at),
                       _utc(row.edited_at) if row.edited_at else None, row.edits)


@dataclass(frozen=True)
class CommentPage:
    """One page of a target's top-level comments, each with its replies."""

    target: Target
    comments: list[CommentView]
    page: int
    per_page: int
    total: int
    order: str

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def to_dict(self) -> dict[str, Any]:
        return {"target": str(self.target), "page": self.page, "per_page": self.per_page,
                "total": self.total, "pages": self.pages, "order": self.order,
                "comments": [c.to_dict() for c in self.comments]}


def _weigh(s: Session, info: TargetInfo, views: list[CommentView]) -> None:
    authors = {v.author for v in views}
    if not authors:
        return
    rows = s.execute(select(HolderRow.account, HolderRow.balance)
                     .where(HolderRow.dataset_id == info.dataset_id,
                            HolderRow.account.in_(authors)))
    balances = {account: balance for account, balance in rows}
    for v in views:
        v.shares = int(balances.get(v.author) or 0)
        if v.shares and info.total_supply:
            v.weight_bps = v.shares * 10_000 // info.total_supply


def _versions(s: Session, comment_ids: list[int]) -> dict[int, list[Version]]:
    found: dict[int, list[Version]] = {}
    for e in s.scalars(select(CommentEdit).where(CommentEdit.comment_id.in_(comment_ids))
                       .order_by(CommentEdit.comment_id, CommentEdit.version)):
        found.setdefault(e.comment_id, []).append(
            Version(e.version, e.body, render_markdown(e.body), e.message, e.signature,
                    _utc(e.signed_at)))
    return found


def _add_history(s: Session, edited: list[CommentView]) -> None:
    """The earlier versions of the edited comments of a page, in one query."""
    if edited:
        found = _versions(s, [v.id for v in edited])
        for v in edited:
            v.history = found.get(v.id, [])


def list_page(s: Session, target: Target, *, page: int = 1, per_page: int = PAGE_SIZE,
              order: str = "oldest") -> CommentPage:
    """Page ``page`` (from 1) of ``target``'s top-level comments with their replies and weights.

    Four queries whatever the page holds (the target, the count, the page with its replies,
    the authors' holdings), and one more for the earlier versions when some were edited.
    """
    if page < 1 or not 1 <= per_page <= MAX_PAGE_SIZE:
        raise UsageError(f"page ≥ 1 and 1 ≤ per_page ≤ {MAX_PAGE_SIZE}")
    if order not in ("oldest", "newest"):
        raise UsageError("order is 'oldest' or 'newest'")
    info = resolve(s, target)
    on_target = (Comment.target_kind == target.kind, Comment.target_id == target.id)
    total = int(s.scalar(select(func.count()).select_from(Comment)
                         .where(*on_target, Comment.parent_id.is_(None))) or 0)
    sort = Comment.id.asc() if order == "oldest" else Comment.id.desc()
    top = (select(Comment.id).where(*on_target, Comment.parent_id.is_(None)).order_by(sort)
           .limit(per_page).offset((page - 1) * per_page))
    rows = s.scalars(select(Comment).where(*on_target).where(
        Comment.id.in_(top) | Comment.parent_id.in_(top)).order_by(Comment.id)).all()
    views = [_view(r) for r in rows]
    by_id = {v.id: v for v in views if v.parent_id is None}
    for v in views:
        if v.parent_id is not None and v.parent_id in by_id:
            by_id[v.parent_id].replies.append(v)
    tops = sorted(by_id.values(), key=lambda v: v.id, reverse=order == "newest")
    _weigh(s, info, views)
    _add_history(s, [v for v in views if v.version])
    return CommentPage(target, tops, page, per_page, total, order)


def page_of(s: Session, target: Target, comment_id: int, *, per_page: int = PAGE_SIZE,
            order: str = "oldest") -> int:
    """The page of ``target``'s listing that shows ``comment_id`` (a reply: its parent's);
    1 for a comment not on ``target``."""
    row = s.get(Comment, comment_id)
    if row is None or (row.target_kind, row.target_id) != (target.kind, target.id):
        return 1
    top = row.parent_id if row.parent_id is not None else row.id
    before = Comment.id < top if order == "oldest" else Comment.id > top
    ahead = int(s.scalar(select(func.count()).select_from(Comment).where(
        Comment.target_kind == target.kind, Comment.target_id == target.id,
        Comment.parent_id.is_(None), before)) or 0)
    return ahead // per_page + 1


def get(s: Session, comment_id: int) -> CommentView:
    """A comment with its replies, its author's weight and its earlier versions."""
    row = s.get(Comment, comment_id)
    if row is None:
        raise NotFoundError(f"no comment {comment_id}")
    view = _view(row)
    view.replies = [_view(r) for r in s.scalars(select(Comment)
                                                .where(Comment.parent_id == comment_id)
                                                .order_by(Comment.id))]
    view.history = _versions(s, [comment_id]).get(comment_id, [])
    _weigh(s, resolve(s, view.target), [view, *view.replies])
    return view


@dataclass(frozen=True)
class VersionCheck:
    """Whether one stored version's signature recovers the author over the stored body."""

    version: int
    signer: str | None
    valid: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "signer": self.signer, "valid": self.valid,
                "reason": self.reason}


def _check_version(chain_id: int, view: CommentView, version: int, body: str, message: str,
                   signature: str) -> VersionCheck:
    try:
        signer = recover_personal(message, signature)
    except BadSignature as exc:
        return VersionCheck(version, None, False, str(exc))
    try:
        expected = comment_message(chain_id=chain_id, target=view.target, author=view.author,
                                   comment_id=None if version == 0 else view.id,
                                   parent_id=view.parent_id, version=version,
                                   signed_at=signed_time(message), body=body)
    except MessageMismatchError as exc:
        return VersionCheck(version, signer, False, str(exc))
    if message != expected:
        return VersionCheck(version, signer, False, "the signed message does not match the "
                            "stored comment")
    if signer.lower() != view.author.lower():
        return VersionCheck(version, signer, False, f"signed by {signer}, not the author")
    return VersionCheck(version, signer, True, "signed by the author")


def verify_comment(s: Session, comment_id: int, chain_id: int) -> list[VersionCheck]:
    """Re-recover the signer of every version of a comment, oldest first."""
    view = get(s, comment_id)
    checks = [_check_version(chain_id, view, v.version, v.body, v.message, v.signature)
              for v in view.history]
    checks.append(_check_version(chain_id, view, view.version, view.body, view.message,
                                 view.signature))
    return checks
