"""Tables of the web app: sign-in nonces and sessions, and the discussion (comments with their
edit history). None is derived from chain events, so ``index rebuild`` never touches them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from databright.index.models import Base, _now


class SiweNonce(Base):
    """A Sign-In with Ethereum nonce the server issued: usable once, before ``expires_at``."""

    __tablename__ = "siwe_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebSession(Base):
    """A signed-in browser: the cookie's token is stored only as its sha256.

    ``kind`` is ``wallet`` (a browser wallet signed the SIWE message; it signs transactions
    too) or ``local`` (an account of the home's keystore, embedded chain only; the server
    signs for it).
    """

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    csrf: Mapped[str] = mapped_column(String(64))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: the keystore account name of a ``local`` session
    account_name: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Comment(Base):
    """A comment on a proposal (``target_kind`` ``proposal``, ``target_id`` its id) or a dataset
    (``dataset``, its name), as its author last signed it.

    ``message`` is the exact text the author signed (EIP-191 personal_sign) and ``signature``
    the 65-byte signature, hex; anyone can recover the author from them.
    """

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_target", "target_kind", "target_id", "id"),
                      Index("ix_comments_author_created", "author", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"), nullable=True)
    author: Mapped[str] = mapped_column(String(42))
    body: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(132))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    edits: Mapped[int] = mapped_column(Integer, default=0)


class CommentEdit(Base):
    """An earlier version of a comment, kept when its author edits it (the history)."""

    __tablename__ = "comment_edits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(132))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
