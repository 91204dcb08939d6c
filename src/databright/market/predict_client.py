"""The consumer's side of paid predictions: ask a model's server, paying through a channel.

:func:`predict_files` reads the server's terms (``GET /model``), checks they name this home's
chain and registry, opens a channel (or reuses one with enough deposit left), then sends the
files in batches, each with the next cumulative voucher. A voucher is written to the payer's
book before it is sent; the server's answer says what it holds, so a lost answer never makes
the payer sign for the same predictions twice (a 409 carries the server's highest voucher, and
the client resumes from it if it is one the payer signed).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from databright.errors import DataBrightError, UsageError
from databright.home import Home
from databright.market import channels
from databright.market.context import Deployment
from databright.market.predictions import VOUCHER_HEADER

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

DEFAULT_URL = "http://127.0.0.1:8700"
DEFAULT_DEPOSIT_PREDICTIONS = 100  # a new channel's deposit covers this many predictions


class PredictionServerError(DataBrightError):
    """The prediction server refused the request or could not be reached."""

    exit_code = 14
    http_status = 502

    def __init__(self, message: str, status: int = 0, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


@dataclass(frozen=True)
class Predicted:
    """What ``predict`` printed: a label per file, the channel, what it cost (wei)."""

    model_id: int
    predictions: list[dict[str, str]]
    channel_id: int
    opened: bool
    charged: int
    accepted: int
    deposit: int


def server_terms(url: str, client: httpx.Client | None = None) -> dict[str, Any]:
    """The server's ``GET /model`` document."""
    return _json(_call(_client(client, url), "GET", "/model"))


def _call(http: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
    try:
        return http.request(method, path, **kw)
    except httpx.TransportError as exc:
        raise PredictionServerError(
            f"cannot reach the prediction server at {http.base_url}: {exc}") from None


def _client(client: httpx.Client | None, url: str) -> httpx.Client:
    return client if client is not None else httpx.Client(base_url=url, timeout=60.0)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        err = body.get("error", {}) if isinstance(body, dict) else {}
        message = err.get("message") if isinstance(err, dict) else None
        code = err.get("code") if isinstance(err, dict) else None
        raise PredictionServerError(
            f"the prediction server answered {response.status_code}"
            + (f" ({code}): {message}" if message else ""), response.status_code,
            body if isinstance(body, dict) else None)
    return body


def _inputs(paths: Sequence[Path], media: str) -> list[tuple[str, bytes, str]]:
    out = []
    for p in paths:
        if not p.is_file():
            raise UsageError(f"no such file: {p}")
        kind = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        out.append((p.name, p.read_bytes(), kind))
    if media == "table":
        from databright.rows import RowFormatError, parse_row

        for name, data, kind in out:
            try:
                parse_row(data, kind)
            except RowFormatError as exc:
                raise UsageError(f"{name} is not a table row: {exc}") from None
    return out


def _request(client: httpx.Client, media: str, batch: list[tuple[str, bytes, str]],
             header: dict[str, str]) -> httpx.Response:
    if media == "table":
        from databright.rows import parse_row

        rows = [parse_row(data, kind) for _, data, kind in batch]
        return _call(client, "POST", "/predict", json={"rows": rows}, headers=header)
    files = [("files", (name, data, kind)) for name, data, kind in batch]
    return _call(client, "POST", "/predict", files=files, headers=header)


def predict_files(
    home: Home | str,
    payer: Signer,
    model_id: int,
    paths: Sequence[Path],
    *,
    url: str = DEFAULT_URL,
    deposit: int | None = None,
    timeout: int = channels.DEFAULT_TIMEOUT,
    client: httpx.Client | None = None,
) -> Predicted:
    """Predict ``paths`` (image files, or one-row JSON/CSV/Parquet files) on ``model_id``'s
    server at ``url``, paying through a channel of ``payer``.

    The chain of ``home`` is opened only to find or open the channel, and released before the
    first request: a server of the same home must be able to read the channel. So the caller
    must not hold that home's embedded chain.

    Args:
        deposit: wei for a new channel (default: 100 predictions, or all of these if more).
        client: an httpx client to use (e.g. one bound to an in-process app).

    Raises:
        PredictionServerError: the server refused (its code and message are in the text).
        ChannelError: no channel can pay (e.g. a deposit too small for the files).
    """
    http = _client(client, url)
    terms = server_terms(url, http)
    with Deployment(home) as dep:
        ch, opened = _channel_for(dep, payer, model_id, terms, url, deposit, timeout,
                                  len(paths))
        path = dep.home.path
    price, media = int(terms["price_per_prediction"]), str(terms["media"])
    inputs = _inputs(paths, media)
    book = channels.PayerBook(path / channels.BOOK_FILE)
    predictions: list[dict[str, str]] = []
    charged = 0
    size = max(1, int(terms.get("max_items", 64)))
    try:
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            body = _paid(http, book, ch, payer, price, media, batch)
            ch = book.get(ch.chain_id, ch.registry, ch.channel_id)
            charged += int(body["charged"])
            predictions += [{"file": name, "label": p["label"]}
                            for (name, _, _), p in zip(batch, body["predictions"])]
    finally:
        book.close()
    return Predicted(model_id, predictions, ch.channel_id, opened, charged, ch.accepted,
                     ch.deposit)


def _channel_for(dep: Deployment, payer: Signer, model_id: int, terms: dict[str, Any], url: str,
                 deposit: int | None, timeout: int, count: int
                 ) -> tuple[channels.PayerChannel, bool]:
    registry, chain_id = dep.registry.address, int(dep.registry.chain_id())
    if int(terms.get("model_id", -1)) != model_id:
        raise UsageError(f"the server at {url} serves model {terms.get('model_id')}, "
                         f"not {model_id}")
    if (str(terms.get("registry", "")).lower(), terms.get("chain_id")) != (
            registry.lower(), chain_id):
        raise UsageError(f"the server at {url} takes vouchers of registry "
                         f"{terms.get('registry')} on chain {terms.get('chain_id')}, not this "
                         f"home's {registry} on chain {chain_id}")
    price = int(terms["price_per_prediction"])
    if count == 0:
        raise UsageError("give at least one file to predict")
    needed = price * count
    ch = channels.reusable_channel(dep, payer.address, model_id, needed)
    opened = ch is None
    if ch is None:
        amount = deposit if deposit is not None else max(needed,
                                                         price * DEFAULT_DEPOSIT_PREDICTIONS)
        if amount < needed:
            raise channels.ChannelError(f"a deposit of {amount} wei does not cover "
                                        f"{count} prediction(s) at {price} wei")
        ch = channels.open_channel(dep, payer, model_id, amount, timeout)
    return ch, opened


def _paid(http: httpx.Client, book: channels.PayerBook, ch: channels.PayerChannel,
          payer: Signer, price: int, media: str, batch: list[tuple[str, bytes, str]]
          ) -> dict[str, Any]:
    for attempt in (1, 2):
        amount, signature = channels.sign_next(book, ch, payer, price, len(batch))
        header = {VOUCHER_HEADER: json.dumps({
            "chain_id": ch.chain_id, "registry": ch.registry, "channel_id": ch.channel_id,
            "amount": str(amount), "signature": signature})}
        try:
            body = _json(_request(http, media, batch, header))
        except PredictionServerError as exc:
            held = (exc.body.get("channel") or {}).get("accepted")
            ch = book.get(ch.chain_id, ch.registry, ch.channel_id)
            # the server holds a voucher we signed (our last answer was lost): resume from it
            if (attempt == 1 and exc.status == 409 and isinstance(held, int)
                    and ch.accepted < held <= ch.signed):
                book.set_accepted(ch, held)
                ch = book.get(ch.chain_id, ch.registry, ch.channel_id)
                continue
            raise
        book.set_accepted(ch, amount)
        return body
    raise AssertionError("unreachable")  # the loop returns or raises
