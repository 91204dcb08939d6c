"""Payment channels for paid predictions, and the two voucher books a home keeps.

A channel is a deposit for one model (``ModelRegistry.open_channel``); each request to the
model's prediction server carries a **cumulative** voucher, signed by the payer, for everything
owed so far. Only the model's owner can settle (``close``) with one voucher; the payer can take
the deposit back after the channel expires and a challenge window passes (``start_reclaim``,
then ``reclaim``).

Both sides keep a book in the home (``channels.sqlite``, one SQLite transaction per change, WAL
with ``synchronous=FULL`` by default, so a change is on disk before the call returns):

- the **payer's book** (``payer_channels``): per channel, the highest amount ever signed
  (``signed``, written *before* a voucher leaves the process) and the highest the server
  confirmed (``accepted``); the next voucher is ``accepted + price × n``.
- the **payee's book** (``received_vouchers``): per channel, the highest voucher the prediction
  server accepted, and whether it is closing or closed. A server may trade the fsync of each
  commit (about 4 ms on a cloud disk) for speed with ``sync="normal"``: a voucher then survives
  a crash or kill of the server but may be lost with the machine (the payee's risk only: the
  previous voucher, also cumulative, stays valid). The server raises it only through
  :meth:`PayeeBook.raise_to`; closing (by the server or ``databright channel close``) marks it
  ``closing`` first, so no process accepts a voucher for a channel being settled.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import DataBrightError, NotFoundError, UsageError
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

BOOK_FILE = "channels.sqlite"
DEFAULT_TIMEOUT = 7 * 86_400  # a week: long enough for a session, short enough to reclaim
#: a channel this close to its expiry is not reused (the server refuses an expired one)
REUSE_MARGIN = 600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payer_channels (
    chain_id INTEGER NOT NULL, registry TEXT NOT NULL, channel_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL, payer TEXT NOT NULL, deposit TEXT NOT NULL, expiry INTEGER NOT NULL,
    signed TEXT NOT NULL, signature TEXT NOT NULL, accepted TEXT NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (chain_id, registry, channel_id));
CREATE TABLE IF NOT EXISTS received_vouchers (
    chain_id INTEGER NOT NULL, registry TEXT NOT NULL, channel_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL, payer TEXT NOT NULL, amount TEXT NOT NULL, signature TEXT NOT NULL,
    status TEXT NOT NULL, PRIMARY KEY (chain_id, registry, channel_id));
"""


class ChannelError(DataBrightError):
    """A channel cannot be used for this (closed, expired, too small, another model's...)."""

    exit_code = 13
    http_status = 402


@dataclass(frozen=True)
class PayerChannel:
    """A channel as the payer's book has it (amounts in wei, ``status`` as last seen)."""

    chain_id: int
    registry: str
    channel_id: int
    model_id: int
    payer: str
    deposit: int
    expiry: int
    signed: int
    signature: str
    accepted: int
    status: str

    @property
    def remaining(self) -> int:
        """What the deposit still covers beyond the accepted vouchers."""
        return self.deposit - self.accepted


@dataclass(frozen=True)
class ReceivedVoucher:
    """The highest voucher a prediction server accepted for a channel."""

    chain_id: int
    registry: str
    channel_id: int
    model_id: int
    payer: str
    amount: int
    signature: str
    status: str  # open | closing | closed


#: ``full``: a commit is on disk (fsync) before it returns, so it survives a power loss;
#: ``normal``: it is in the OS (survives a crash or kill of the process, not of the machine)
SYNC_MODES = ("full", "normal")


class _Book:
    """One SQLite file under the home; each write is one transaction, durable per ``sync``."""

    def __init__(self, path: Path, sync: str = "full") -> None:
        if sync not in SYNC_MODES:
            raise UsageError(f"the voucher book's sync mode is one of {SYNC_MODES}, not {sync!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # other processes wait: read-check-write is atomic
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PayerBook(_Book):
    """The payer's side: channels opened from this home and the vouchers signed on them."""

    @staticmethod
    def _of(row: tuple[Any, ...]) -> PayerChannel:
        c, r, ch, m, p, dep, exp, signed, sig, acc, st = row
        return PayerChannel(int(c), r, int(ch), int(m), p, int(dep), int(exp), int(signed), sig,
                            int(acc), st)

    def add(self, ch: PayerChannel) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO payer_channels VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (ch.chain_id, ch.registry, ch.channel_id, ch.model_id, ch.payer,
                        str(ch.deposit), ch.expiry, str(ch.signed), ch.signature,
                        str(ch.accepted), ch.status))

    def get(self, chain_id: int, registry: str, channel_id: int) -> PayerChannel:
        rows = self._rows("SELECT * FROM payer_channels WHERE chain_id=? AND registry=? AND "
                          "channel_id=?", (chain_id, registry, channel_id))
        if not rows:
            raise NotFoundError(f"channel {channel_id} is not in this home's book")
        return self._of(rows[0])

    def list(self, chain_id: int, registry: str) -> list[PayerChannel]:
        rows = self._rows("SELECT * FROM payer_channels WHERE chain_id=? AND registry=? "
                          "ORDER BY channel_id", (chain_id, registry))
        return [self._of(r) for r in rows]

    def record_signed(self, ch: PayerChannel, amount: int, signature: str) -> None:
        """Note a voucher about to be sent (before it leaves, so it is never forgotten)."""
        with self._tx() as db:
            db.execute("UPDATE payer_channels SET signed=?, signature=? WHERE chain_id=? AND "
                       "registry=? AND channel_id=? AND CAST(signed AS INTEGER) < ?",
                       (str(amount), signature, ch.chain_id, ch.registry, ch.channel_id, amount))

    def set_accepted(self, ch: PayerChannel, amount: int) -> None:
        """The server holds a voucher of ``amount``: the next one builds on it."""
        with self._tx() as db:
            db.execute("UPDATE payer_channels SET accepted=? WHERE chain_id=? AND registry=? AND "
                       "channel_id=?", (str(amount), ch.chain_id, ch.registry, ch.channel_id))

    def set_state(self, ch: PayerChannel, status: str, deposit: int | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE payer_channels SET status=?, deposit=? WHERE chain_id=? AND "
                       "registry=? AND channel_id=?",
                       (status, str(ch.deposit if deposit is None else deposit), ch.chain_id,
                        ch.registry, ch.channel_id))


class PayeeBook(_Book):
    """The payee's side: the highest voucher accepted per channel."""

    @staticmethod
    def _of(row: tuple[Any, ...]) -> ReceivedVoucher:
        c, r, ch, m, p, amount, sig, st = row
        return ReceivedVoucher(int(c), r, int(ch), int(m), p, int(amount), sig, st)

    def get(self, chain_id: int, registry: str, channel_id: int) -> ReceivedVoucher | None:
        rows = self._rows("SELECT * FROM received_vouchers WHERE chain_id=? AND registry=? AND "
                          "channel_id=?", (chain_id, registry, channel_id))
        return self._of(rows[0]) if rows else None

    def list(self, chain_id: int, registry: str, model_id: int | None = None
             ) -> list[ReceivedVoucher]:
        rows = self._rows("SELECT * FROM received_vouchers WHERE chain_id=? AND registry=? "
                          "ORDER BY channel_id", (chain_id, registry))
        out = [self._of(r) for r in rows]
        return [v for v in out if model_id is None or v.model_id == model_id]

    def raise_to(self, v: ReceivedVoucher, minimum: int) -> None:
        """Store ``v`` as the channel's highest voucher if the stored one is still below
        ``minimum`` (re-checked inside the transaction) and the channel is not being settled.

        Raises:
            ChannelError: another process raised the voucher or started closing meanwhile.
        """
        with self._tx() as db:
            row = db.execute("SELECT amount, status FROM received_vouchers WHERE chain_id=? AND "
                             "registry=? AND channel_id=?",
                             (v.chain_id, v.registry, v.channel_id)).fetchone()
            if row is not None and row[1] != "open":
                raise ChannelError(f"channel {v.channel_id} is {row[1]}")
            if row is not None and int(row[0]) + minimum > v.amount:
                raise ChannelError(f"channel {v.channel_id}'s voucher changed meanwhile")
            db.execute("INSERT OR REPLACE INTO received_vouchers VALUES (?,?,?,?,?,?,?,?)",
                       (v.chain_id, v.registry, v.channel_id, v.model_id, v.payer, str(v.amount),
                        v.signature, "open"))

    def mark(self, chain_id: int, registry: str, channel_id: int, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE received_vouchers SET status=? WHERE chain_id=? AND registry=? "
                       "AND channel_id=?", (status, chain_id, registry, channel_id))


def payer_book(dep: Deployment) -> PayerBook:
    return PayerBook(dep.home.path / BOOK_FILE)


def payee_book(dep: Deployment) -> PayeeBook:
    return PayeeBook(dep.home.path / BOOK_FILE)


def _here(dep: Deployment) -> tuple[int, str]:
    return int(dep.config.chain_id or dep.registry.chain_id()), dep.registry.address


# -- the payer -----------------------------------------------------------------------------------


def open_channel(dep: Deployment, payer: Signer, model_id: int, deposit: int,
                 timeout: int = DEFAULT_TIMEOUT) -> PayerChannel:
    """Deposit ``deposit`` wei for ``model_id``'s predictions and note the channel in the book."""
    if deposit <= 0:
        raise UsageError("the deposit must be positive")
    dep.registry.get_model(model_id)  # an unknown model fails before any value moves
    balance = dep.chain.balance(payer.address)
    if balance < deposit:
        from databright.errors import InsufficientFundsError

        raise InsufficientFundsError(
            f"{payer.address} has {balance} wei, cannot deposit {deposit} wei (plus gas)")
    channel_id, _ = dep.registry.open_channel(payer, model_id, timeout, deposit)
    info = dep.registry.get_channel(channel_id)
    chain_id, registry = _here(dep)
    ch = PayerChannel(chain_id, registry, channel_id, model_id, payer.address, info.deposit,
                      info.expiry, 0, "", 0, info.status)
    book = payer_book(dep)
    try:
        book.add(ch)
    finally:
        book.close()
    return ch


def reusable_channel(dep: Deployment, payer: str, model_id: int, needed: int
                     ) -> PayerChannel | None:
    """An open channel of ``payer`` for ``model_id`` whose deposit still covers ``needed`` wei
    and that does not expire soon (its state re-read from the chain)."""
    chain_id, registry = _here(dep)
    book = payer_book(dep)
    try:
        now = dep.chain.next_block_time()
        for ch in book.list(chain_id, registry):
            if ch.model_id != model_id or ch.payer != payer or ch.status != "open":
                continue
            info = dep.registry.get_channel(ch.channel_id)
            if info.status != ch.status or info.deposit != ch.deposit:
                book.set_state(ch, info.status, info.deposit)
                ch = book.get(chain_id, registry, ch.channel_id)
            if ch.status == "open" and ch.expiry > now + REUSE_MARGIN and ch.remaining >= needed:
                return ch
        return None
    finally:
        book.close()


def sign_next(dep_or_book: PayerBook, ch: PayerChannel, payer: Signer, price: int, n: int
              ) -> tuple[int, str]:
    """The next cumulative voucher for ``n`` predictions: ``(amount, 0x-signature)``.

    The amount is recorded as signed before it is returned.

    Raises:
        ChannelError: the deposit does not cover it.
    """
    from databright.chain.model_registry import Voucher, sign

    amount = ch.accepted + price * n
    if amount > ch.deposit:
        raise ChannelError(
            f"channel {ch.channel_id} has {ch.deposit - ch.accepted} wei left, "
            f"{price * n} wei needed: open another channel (or top it up)")
    signature = "0x" + sign(Voucher(ch.chain_id, ch.registry, ch.channel_id, amount),
                            payer).hex()
    dep_or_book.record_signed(ch, amount, signature)
    return amount, signature


def list_channels(dep: Deployment, *, refresh: bool = True) -> tuple[list[PayerChannel],
                                                                     list[ReceivedVoucher]]:
    """Channels this home pays for and vouchers it received (statuses re-read from the chain)."""
    chain_id, registry = _here(dep)
    payer, payee = payer_book(dep), payee_book(dep)
    try:
        if refresh:
            for ch in payer.list(chain_id, registry):
                if ch.status in ("open", "reclaiming"):
                    info = dep.registry.get_channel(ch.channel_id)
                    if (info.status, info.deposit) != (ch.status, ch.deposit):
                        payer.set_state(ch, info.status, info.deposit)
        return payer.list(chain_id, registry), payee.list(chain_id, registry)
    finally:
        payer.close()
        payee.close()


@dataclass(frozen=True)
class Reclaim:
    """Where a reclaim stands: ``reclaim_at`` (started) or ``refund`` (done, credited)."""

    channel_id: int
    status: str
    reclaim_at: int
    refund: int


def reclaim(dep: Deployment, payer: Signer, channel_id: int) -> Reclaim:
    """Start reclaiming an expired channel, or finish once its challenge window has passed (the
    refund is credited to the payer's ``owed_of``; ``withdraw`` pays it out)."""
    info = dep.registry.get_channel(channel_id)
    chain_id, registry = _here(dep)
    book = payer_book(dep)
    try:
        if info.status == "open":
            at, _ = dep.registry.start_reclaim(payer, channel_id)
            status, refund = "reclaiming", 0
        elif info.status == "reclaiming":
            refund, _ = dep.registry.reclaim(payer, channel_id)
            at, status = info.reclaim_at, "reclaimed"
        else:
            raise ChannelError(f"channel {channel_id} is {info.status}: nothing to reclaim")
        try:
            book.set_state(book.get(chain_id, registry, channel_id), status)
        except NotFoundError:
            pass  # a channel opened from another home: nothing to note here
        return Reclaim(channel_id, status, at, refund)
    finally:
        book.close()


# -- the payee -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settlement:
    """A channel closed with the highest voucher received (wei)."""

    channel_id: int
    amount: int
    royalty: int
    payee_amount: int
    refund: int


def close_channel(dep: Deployment, payee: Signer, channel_id: int) -> Settlement:
    """Close a channel with the highest voucher the home's prediction server accepted.

    The book marks the channel ``closing`` first, so no server of this home accepts another
    voucher for it; a failed close puts it back to ``open``.

    Raises:
        NotFoundError: no voucher was received for this channel.
        ChannelError: the channel was settled already.
    """
    chain_id, registry = _here(dep)
    book = payee_book(dep)
    try:
        v = book.get(chain_id, registry, channel_id)
        if v is None:
            raise NotFoundError(f"no voucher was received for channel {channel_id}")
        if v.status == "closed":
            raise ChannelError(f"channel {channel_id} is closed already")
        book.mark(chain_id, registry, channel_id, "closing")
        try:
            closed, _ = dep.registry.close(payee, channel_id, v.amount,
                                           bytes.fromhex(v.signature.removeprefix("0x")))
        except BaseException:
            if dep.registry.get_channel(channel_id).status not in ("closed", "reclaimed"):
                book.mark(chain_id, registry, channel_id, "open")
            raise
        book.mark(chain_id, registry, channel_id, "closed")
        return Settlement(channel_id, closed.amount, closed.royalty, closed.payee_amount,
                          closed.refund)
    finally:
        book.close()


def open_vouchers(dep: Deployment, model_id: int | None = None) -> list[ReceivedVoucher]:
    """Received vouchers of channels not yet closed (of one model, or all)."""
    chain_id, registry = _here(dep)
    book = payee_book(dep)
    try:
        return [v for v in book.list(chain_id, registry, model_id) if v.status != "closed"]
    finally:
        book.close()
