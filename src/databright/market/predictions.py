"""The prediction server's side of paid predictions: the model, its inputs, voucher acceptance.

:class:`PredictionService` loads a model's best checkpoint (its bytes checked against the sha256
the chain records), predicts on image files or table rows, and accepts a request only with a
voucher that pays for it. The acceptance rule (:func:`check_voucher`, pure) for a request of
``n`` items at price ``p``, given the highest voucher ``stored`` accepted so far on the channel:

- the voucher names this chain and this registry, its channel exists, is for this model, is
  open in the book and on chain, and has not expired;
- it is signed (EIP-712 ``Voucher(channelId, amount)``) by the channel's payer, with a
  signature the contract accepts too (low ``s``: see :mod:`databright.chain.vouchers`);
- ``amount > stored`` (else it is replayed or decreasing) and ``amount ≥ stored + p·n`` and
  ``amount ≤ deposit``.

Only then are the items predicted, and the voucher becomes the channel's highest in the payee's
book (a durable SQLite commit) before the answer leaves; any refusal changes nothing. The server
holds the chain only while it reads a new channel or closes one, so the home stays usable by
other commands while it runs.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from databright.errors import DataBrightError, UsageError
from databright.home import Home
from databright.market.channels import ChannelError, PayeeBook, ReceivedVoucher, Settlement
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.chain.vouchers import VoucherVerifier
    from databright.training.checkpoint import Checkpoint
    from databright.training.families import Family

VOUCHER_HEADER = "X-DataBright-Voucher"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ITEMS = 64

#: every refusal of the prediction server: code → (HTTP status, meaning)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "voucher_required": (402, "the request carries no voucher"),
    "bad_voucher_header": (400, "the voucher header is not the JSON object described"),
    "wrong_chain": (403, "the voucher is for another chain"),
    "wrong_registry": (403, "the voucher is for another ModelRegistry"),
    "unknown_channel": (402, "no such channel on this registry"),
    "wrong_model": (403, "the channel pays for another model"),
    "channel_closed": (402, "the channel is closed, closing or being reclaimed"),
    "channel_expired": (402, "the channel is past its expiry"),
    "bad_signature": (401, "the voucher is not signed by the channel's payer"),
    "voucher_replayed": (409, "the amount equals the highest voucher already accepted"),
    "voucher_decreasing": (409, "the amount is below the highest voucher already accepted"),
    "insufficient_voucher": (402, "the amount does not cover the price of these items"),
    "voucher_exceeds_deposit": (402, "the amount is above the channel's deposit"),
    "malformed_input": (422, "an image does not decode, or a row is not a row of this model"),
    "no_items": (422, "the request holds no image or row"),
    "wrong_media": (415, "images sent to a table model, rows to an image model, or another type"),
    "request_too_large": (413, "the body exceeds the server's limit"),
    "too_many_items": (413, "more items than the server takes in one request"),
}


class PredictionRefused(DataBrightError):
    """A request refused by the prediction server; ``code`` is a key of :data:`ERROR_CODES`,
    ``details`` goes into the JSON body beside the error."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = ERROR_CODES[code][0]
        self.details = details


@dataclass(frozen=True)
class VoucherClaim:
    """A voucher as a request carries it (not yet checked)."""

    chain_id: int
    registry: str
    channel_id: int
    amount: int
    signature: str


def parse_voucher_header(text: str) -> VoucherClaim:
    """``{"chain_id", "registry", "channel_id", "amount", "signature"}`` (amount: a decimal
    string or an integer, in wei). Raises PredictionRefused ``bad_voucher_header``."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        ints = {k: raw[k] for k in ("chain_id", "channel_id", "amount")}
        for k, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int | str) or int(v) < 0:
                raise ValueError(f"{k} must be a non-negative integer")
        sig, registry = raw["signature"], raw["registry"]
        if not isinstance(sig, str) or len(sig.removeprefix("0x")) != 130:
            raise ValueError("signature must be 65 bytes of 0x-hex")
        bytes.fromhex(sig.removeprefix("0x"))
        if not isinstance(registry, str):
            raise TypeError("registry must be an address")
        return VoucherClaim(int(ints["chain_id"]), registry, int(ints["channel_id"]),
                            int(ints["amount"]), sig)
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictionRefused("bad_voucher_header", f"bad {VOUCHER_HEADER} header: {exc}"
                                ) from None


@dataclass(frozen=True)
class ChannelView:
    """What the server needs of a channel: read once from the chain, then cached."""

    channel_id: int
    payer: str
    model_id: int
    deposit: int
    expiry: int
    status: str


def check_voucher(*, stored: int, amount: int, price: int, n: int, deposit: int) -> None:
    """The amount rule of a voucher (see the module docstring); raises PredictionRefused."""
    needed = price * n
    if amount == stored:
        raise PredictionRefused("voucher_replayed",
                                f"a voucher of {amount} wei was accepted already")
    if amount < stored:
        raise PredictionRefused("voucher_decreasing",
                                f"the voucher of {amount} wei is below the {stored} wei accepted")
    if amount < stored + needed:
        raise PredictionRefused(
            "insufficient_voucher",
            f"{n} prediction(s) cost {needed} wei: sign at least {stored + needed} wei")
    if amount > deposit:
        raise PredictionRefused("voucher_exceeds_deposit",
                                f"the voucher of {amount} wei exceeds the {deposit} wei deposit")


@dataclass(frozen=True)
class Item:
    """One input: an uploaded file (``name``, ``media_type``, bytes) or a table row (JSON)."""

    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class Prediction:
    """The labels of one request, and what it was charged (0 with payment off)."""

    labels: list[tuple[str, str]]
    charged: int
    channel: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"predictions": [{"name": n, "label": lab} for n, lab in self.labels],
                "charged": self.charged, "channel": self.channel}


@dataclass
class PredictionService:
    """One model served from a home. Build it with :meth:`load`."""

    home: Home
    model_id: int
    chain_id: int
    registry: str
    info: dict[str, Any]
    checkpoint: Checkpoint
    family: Family
    payee: Signer | None
    require_payment: bool = True
    max_body_bytes: int = MAX_BODY_BYTES
    max_items: int = MAX_ITEMS
    sync: str = "full"
    _channels: dict[int, ChannelView] = field(default_factory=dict)
    _clock_offset: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _book: PayeeBook | None = None
    _verifier: VoucherVerifier | None = None

    @classmethod
    def load(cls, home: Home | str, model_id: int, payee: Signer | None, *,
             require_payment: bool = True, max_body_bytes: int = MAX_BODY_BYTES,
             max_items: int = MAX_ITEMS, sync: str = "full") -> PredictionService:
        """Read the model and its best checkpoint from the chain, the checkpoint from the store.

        Raises:
            UsageError: the model has no attested checkpoint, or ``payee`` is not its owner.
            CheckpointIntegrityError: the stored bytes do not match the chain's sha256.
        """
        from databright.market.channels import SYNC_MODES
        from databright.training.checkpoint import load_checkpoint
        from databright.training.families import get_family

        if sync not in SYNC_MODES:
            raise UsageError(f"--voucher-sync is one of {', '.join(SYNC_MODES)}, not {sync!r}")
        home = home if isinstance(home, Home) else Home(home)
        with Deployment(home) as dep:
            model = dep.registry.get_model(model_id)
            best = dep.registry.best_checkpoint(model_id)
            if best is None:
                raise UsageError(f"model {model_id} has no attested checkpoint to serve yet")
            if payee is not None and payee.address != model.owner:
                raise UsageError(f"{payee.address} does not own model {model_id} "
                                 f"(its owner {model.owner} signs the closes): pass --as")
            ckpt = load_checkpoint(dep.store, best.cid, best.file_sha256.hex())
            chain_id = int(dep.registry.chain_id())
            info = {
                "model_id": model_id, "name": model.name, "owner": model.owner,
                "dataset_id": model.dataset_id, "share_token": model.share_token,
                "price_per_prediction": model.price_per_prediction,
                "royalty_bps": model.royalty_bps, "registry": dep.registry.address,
                "chain_id": chain_id,
                "checkpoint": {"number": best.checkpoint, "cid": best.cid,
                               "sha256": best.file_sha256.hex(), "metric_bps": best.metric_bps,
                               "attestor": best.attestor, "entries": best.entries},
            }
            registry = dep.registry.address
        family = get_family(ckpt.family)
        info.update({"family": ckpt.family, "media": family.media, "labels": list(ckpt.labels),
                     "voucher_header": VOUCHER_HEADER, "max_items": max_items,
                     "max_body_bytes": max_body_bytes, "payment_required": require_payment})
        if family.media == "table":
            info["columns"] = list(ckpt.extra.get("columns", []))
        return cls(home, model_id, chain_id, registry, info, ckpt, family, payee,
                   require_payment, max_body_bytes, max_items, sync)

    @property
    def price(self) -> int:
        return int(self.info["price_per_prediction"])

    @property
    def media(self) -> str:
        return str(self.info["media"])

    @property
    def verifier(self) -> VoucherVerifier:
        if self._verifier is None:
            from databright.chain.vouchers import VoucherVerifier

            self._verifier = VoucherVerifier(self.chain_id, self.registry)
        return self._verifier

    @property
    def book(self) -> PayeeBook:
        if self._book is None:
            from databright.market.channels import BOOK_FILE

            self._book = PayeeBook(self.home.path / BOOK_FILE, self.sync)
        return self._book

    # -- inputs ---------------------------------------------------------------------------------

    def rows_to_items(self, rows: Any) -> list[Item]:
        """Table rows (JSON objects) as items; each must give this model's columns as numbers
        (a missing or null cell is allowed: it takes the training mean)."""
        if self.media != "table":
            raise PredictionRefused("wrong_media", "this model takes image files, not rows")
        if not isinstance(rows, list):
            raise PredictionRefused("malformed_input", "`rows` must be a list of JSON objects")
        columns = set(self.info.get("columns", []))
        items = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise PredictionRefused("malformed_input", f"row {i} is not a JSON object")
            known = [k for k in row if k in columns and row[k] is not None]
            if not known:
                raise PredictionRefused("malformed_input",
                                        f"row {i} has none of the model's columns")
            for k in known:
                v = row[k]
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise PredictionRefused("malformed_input",
                                            f"row {i}: column {k!r} is not a finite number")
            data = json.dumps(row, sort_keys=True, separators=(",", ":")).encode()
            items.append(Item(f"row {i}", "application/json", data))
        return items

    def _records(self, items: list[Item]) -> list[Any]:
        from databright.storage.cid import cid_of_bytes
        from databright.training.records import Record

        def loader(data: bytes) -> Any:
            return lambda: data

        return [Record(cid_of_bytes(it.data), "", it.media_type, loader(it.data)) for it in items]

    def _labels(self, items: list[Item]) -> list[str]:
        from databright.training.errors import TrainingError

        try:
            return self.family.predict(self.checkpoint, self._records(items))
        except TrainingError as exc:
            raise PredictionRefused("malformed_input", str(exc)) from None

    # -- the request ----------------------------------------------------------------------------

    def predict(self, items: list[Item], voucher: VoucherClaim | None) -> Prediction:
        """Predict ``items`` if ``voucher`` pays for them (see the module docstring).

        Raises:
            PredictionRefused: the refusal, with nothing charged.
        """
        if not items:
            raise PredictionRefused("no_items", "send at least one image file or row")
        if len(items) > self.max_items:
            raise PredictionRefused("too_many_items",
                                    f"{len(items)} items: at most {self.max_items} a request")
        if not self.require_payment or self.price == 0:
            labels = self._labels(items)
            return Prediction([(it.name, lab) for it, lab in zip(items, labels)], 0)
        n = len(items)
        with self._lock:  # check, predict and store one request of this process at a time
            stored, view = self._check(voucher, n)
            assert voucher is not None  # _check refuses a missing voucher
            labels = self._labels(items)
            try:
                self.book.raise_to(ReceivedVoucher(
                    self.chain_id, self.registry, voucher.channel_id, self.model_id, view.payer,
                    voucher.amount, voucher.signature, "open"), self.price * n)
            except ChannelError as exc:
                raise self._refusal("channel_closed", str(exc), n, view, stored) from None
        channel = {"channel_id": view.channel_id, "accepted": voucher.amount,
                   "deposit": view.deposit}
        return Prediction([(it.name, lab) for it, lab in zip(items, labels)],
                          voucher.amount - stored, channel)

    def _refusal(self, code: str, message: str, n: int, view: ChannelView | None = None,
                 stored: int | None = None) -> PredictionRefused:
        channel = None
        if view is not None:
            channel = {"channel_id": view.channel_id, "accepted": stored or 0,
                       "deposit": view.deposit, "status": view.status}
        return PredictionRefused(
            code, message, price_per_prediction=self.price, needed=self.price * n,
            registry=self.registry, chain_id=self.chain_id, model_id=self.model_id,
            channel=channel)

    def _check(self, voucher: VoucherClaim | None, n: int) -> tuple[int, ChannelView]:
        if voucher is None:
            raise self._refusal("voucher_required",
                                f"send a {VOUCHER_HEADER} header paying {self.price * n} wei", n)
        if voucher.chain_id != self.chain_id:
            raise self._refusal("wrong_chain", f"this server takes vouchers of chain "
                                f"{self.chain_id}, not {voucher.chain_id}", n)
        if voucher.registry.lower() != self.registry.lower():
            raise self._refusal("wrong_registry", f"this server takes vouchers of registry "
                                f"{self.registry}, not {voucher.registry}", n)
        view = self._channel(voucher.channel_id, n)
        if view.model_id != self.model_id:
            raise self._refusal("wrong_model", f"channel {view.channel_id} pays for model "
                                f"{view.model_id}, not {self.model_id}", n)
        received = self.book.get(self.chain_id, self.registry, view.channel_id)
        stored = received.amount if received else 0
        if view.status != "open" or (received is not None and received.status != "open"):
            status = received.status if received and received.status != "open" else view.status
            raise self._refusal("channel_closed", f"channel {view.channel_id} is {status}", n,
                                view, stored)
        if time.time() + self._clock_offset >= view.expiry:
            raise self._refusal("channel_expired", f"channel {view.channel_id} has expired", n,
                                view, stored)
        if not self.verifier.signed_by(view.channel_id, voucher.amount, voucher.signature,
                                       view.payer):
            raise self._refusal("bad_signature", f"the voucher is not signed by channel "
                                f"{view.channel_id}'s payer {view.payer}", n, view, stored)
        if voucher.amount > view.deposit >= stored:  # a top-up since the channel was read?
            view = self._channel(voucher.channel_id, n, refresh=True)
        try:
            check_voucher(stored=stored, amount=voucher.amount, price=self.price, n=n,
                          deposit=view.deposit)
        except PredictionRefused as exc:
            raise self._refusal(exc.code, str(exc), n, view, stored) from None
        return stored, view

    def _channel(self, channel_id: int, n: int, *, refresh: bool = False) -> ChannelView:
        view = self._channels.get(channel_id)
        if view is not None and not refresh:
            return view
        from databright.errors import NotFoundError

        with Deployment(self.home) as dep:
            try:
                c = dep.registry.get_channel(channel_id)
            except NotFoundError:
                raise self._refusal("unknown_channel", f"no channel {channel_id} on registry "
                                    f"{self.registry}", n) from None
            self._clock_offset = dep.chain.next_block_time() - time.time()
        view = ChannelView(channel_id, c.payer, c.model_id, c.deposit, c.expiry, c.status)
        self._channels[channel_id] = view
        return view

    # -- settling -------------------------------------------------------------------------------

    def close_channels(self, channel_ids: list[int] | None = None) -> list[Settlement]:
        """Close this model's channels (all with a voucher, or those named) with their highest
        voucher; the server's key signs. Channels closed already are skipped."""
        from databright.market.channels import close_channel, open_vouchers

        if self.payee is None:
            raise UsageError("this server has no owner key to close channels with")
        out, failed = [], []
        with self._lock, Deployment(self.home) as dep:
            for v in open_vouchers(dep, self.model_id):
                if channel_ids is None or v.channel_id in channel_ids:
                    try:
                        out.append(close_channel(dep, self.payee, v.channel_id))
                    except DataBrightError as exc:  # one channel must not keep others open
                        failed.append(f"channel {v.channel_id}: {exc}")
                    self._channels.pop(v.channel_id, None)
        if failed:
            raise ChannelError(f"closed {len(out)} channel(s); could not close "
                               + "; ".join(failed))
        return out

    def close(self) -> None:
        if self._book is not None:
            self._book.close()
            self._book = None
