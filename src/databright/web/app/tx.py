"""Transactions for the viewer's wallet (``/api/tx/*``).

Each ``POST /api/tx/<action>`` (sign-in + CSRF) answers ``{"transactions": [{to, data, value,
description}], "chain_id"}`` — ``value`` in wei as a decimal string — after refusing what would
revert (``proposal_not_open``, ``already_voted``, ``nothing_to_withdraw``, ...). The page's
``app.js`` has the wallet send them in order, each mined before the next (a proposal's
``commit`` must be mined before its ``propose``), or, for a local session on the embedded chain,
``POST /api/tx/send`` has the server sign and send them. ``GET /api/tx/status/{hash}`` says when
a transaction is mined and when the index has caught up with it (then the page reloads).

``/api/tx/propose`` takes a multipart upload: many files named by their relative path
(``label/file.png``, a folder picked with ``webkitdirectory``; one common top folder is
dropped) or one ``.zip`` / ``.tar.gz`` / ``.tgz`` / ``.tar`` archive, within the limits below;
absolute paths, ``..``, links and devices are refused. The batch is ingested and stored before
the two transactions (``commit``, then ``propose`` with the stake) are returned.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.datastructures import UploadFile

from databright.chain.calldata import UnsignedTx, send_as, tx_status
from databright.index.cache import SyncState
from databright.market import web_tx
from databright.web.app import local_keys
from databright.web.app.auth import _Strict, body_schema, chain_id_of, read_model
from databright.web.app.errors import ApiError
from databright.web.app.sessions import Viewer, require_viewer

router = APIRouter(tags=["transactions"])

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_FILES = 5000
MAX_ARCHIVE_MEMBERS = 5000
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_PATH_CHARS = 512
MAX_TXS = 16
ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")


class VoteBody(_Strict):
    proposal_id: int = Field(ge=1, le=2**63)
    support: bool


class ProposalBody(_Strict):
    proposal_id: int = Field(ge=1, le=2**63)


class EmptyBody(_Strict):
    pass


class OpenChannelBody(_Strict):
    model_id: int = Field(ge=1, le=2**63)
    deposit_wei: int | str = Field(description="wei, as an integer or a decimal string")


class TxIn(_Strict):
    to: str = Field(max_length=42)
    data: str = Field(max_length=64 * 1024)
    value: int | str = "0"
    description: str | None = Field(default=None, max_length=300)


class SendBody(_Strict):
    transactions: list[TxIn] = Field(min_length=1, max_length=MAX_TXS)


class TxOut(BaseModel):
    to: str
    data: str
    value: str
    description: str


class Transactions(BaseModel):
    transactions: list[TxOut]
    chain_id: int


class StagedOut(BaseModel):
    dataset: str
    manifest_cid: str
    merkle_root: str
    items: int
    duplicates: int
    refused: int
    labels: dict[str, int]
    stake_wei: str
    report_cid: str


class ProposeOut(Transactions):
    proposal: StagedOut


class Sent(BaseModel):
    hashes: list[str]


class Status(BaseModel):
    hash: str
    mined: bool
    status: int | None
    block: int | None
    indexed: bool


def _wei(value: int | str, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        wei = value
    elif isinstance(value, str) and value.isdigit() and len(value) <= 78:
        wei = int(value)
    else:
        raise ApiError(422, "invalid_request", f"{what} must be a whole number of wei")
    if not 0 <= wei < 2**256:
        raise ApiError(422, "invalid_request", f"{what} is out of range")
    return wei


def _answer(request: Request, txs: list[UnsignedTx]) -> dict[str, Any]:
    return {"transactions": [t.as_json() for t in txs], "chain_id": chain_id_of(request)}


def _on_chain(request: Request, fn: Any, *args: Any) -> Any:
    """Run a builder under the chain lock, turning its refusals into API errors."""
    ctx = request.app.state.ctx
    try:
        with ctx.chain_lock:
            return fn(ctx.dep, *args)
    except web_tx.TxRefused as exc:
        raise ApiError(exc.http_status, exc.code, str(exc)) from None


@router.post("/api/tx/vote", response_model=Transactions, openapi_extra=body_schema(VoteBody))
async def vote(request: Request) -> dict[str, Any]:
    """The vote transaction (yes: ``support`` true) on an open proposal."""
    viewer = require_viewer(request)
    body = await read_model(request, VoteBody)
    txs = await run_in_threadpool(_on_chain, request, web_tx.vote_txs, viewer.address,
                                  body.proposal_id, body.support)
    return _answer(request, txs)


@router.post("/api/tx/finalize", response_model=Transactions,
             openapi_extra=body_schema(ProposalBody))
async def finalize(request: Request) -> dict[str, Any]:
    """The finalize transaction of an open proposal."""
    viewer = require_viewer(request)
    body = await read_model(request, ProposalBody)
    txs = await run_in_threadpool(_on_chain, request, web_tx.finalize_txs, viewer.address,
                                  body.proposal_id)
    return _answer(request, txs)


@router.post("/api/tx/withdraw", response_model=Transactions,
             openapi_extra=body_schema(EmptyBody))
async def withdraw(request: Request) -> dict[str, Any]:
    """One withdrawal per source owing the viewer (dividends, refunds, registry, compute)."""
    viewer = require_viewer(request)
    await read_model(request, EmptyBody)
    txs = await run_in_threadpool(_on_chain, request, web_tx.withdraw_txs, viewer.address)
    return _answer(request, txs)


@router.post("/api/tx/open-channel", response_model=Transactions,
             openapi_extra=body_schema(OpenChannelBody))
async def open_channel(request: Request) -> dict[str, Any]:
    """Open a payment channel for a model's predictions with ``deposit_wei``."""
    viewer = require_viewer(request)
    body = await read_model(request, OpenChannelBody)
    deposit = _wei(body.deposit_wei, "deposit_wei")
    txs = await run_in_threadpool(_on_chain, request, web_tx.open_channel_txs, viewer.address,
                                  body.model_id, deposit)
    return _answer(request, txs)


# -- propose from an upload -------------------------------------------------------------------
def safe_relative(name: str) -> PurePosixPath:
    """An uploaded file's relative path, or 422: no absolute path, ``..``, backslash or NUL."""
    if not name or len(name) > MAX_PATH_CHARS or "\\" in name or "\0" in name:
        raise ApiError(422, "bad_path", f"refused file name {name[:80]!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or any(p in ("", ".", "..") for p in name.split("/")):
        raise ApiError(422, "bad_path", f"refused file name {name[:80]!r}: relative paths only, "
                       "without '..'")
    return path


def _strip_common_top(paths: list[PurePosixPath]) -> list[PurePosixPath]:
    """``top/label/file`` → ``label/file`` when every path shares one top folder."""
    tops = {p.parts[0] for p in paths}
    if len(tops) == 1 and all(len(p.parts) >= 3 for p in paths):
        return [PurePosixPath(*p.parts[1:]) for p in paths]
    return paths


def _place(root: Path, rel: PurePosixPath) -> Path:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ApiError(422, "bad_path", f"refused file name {str(rel)[:80]!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _check_archive(members: int, unpacked_bytes: int) -> None:
    """Refuse (413) an archive of too many files or too many bytes, before unpacking any."""
    if members > MAX_ARCHIVE_MEMBERS:
        raise ApiError(413, "too_many_files", f"the archive holds more than "
                       f"{MAX_ARCHIVE_MEMBERS} files")
    if unpacked_bytes > MAX_UNPACKED_BYTES:
        raise ApiError(413, "archive_too_large", f"the archive unpacks to more than "
                       f"{MAX_UNPACKED_BYTES} bytes")


def _unpack_zip(archive: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            _check_archive(len(infos), sum(i.file_size for i in infos))
            paths = []
            for info in infos:
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ApiError(422, "bad_path", f"links are refused: {info.filename[:80]!r}")
                paths.append(safe_relative(info.filename))
            for info, rel in zip(infos, _strip_common_top(paths), strict=True):
                with zf.open(info) as src, _place(out, rel).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile:
        raise ApiError(422, "bad_archive", "the upload is not a readable zip archive") from None


def _unpack_tar(archive: Path, out: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if not m.isdir()]
            _check_archive(len(members), sum(m.size for m in members))
            for m in members:
                if not m.isfile():
                    raise ApiError(422, "bad_path", f"only regular files are accepted: "
                                   f"{m.name[:80]!r}")
            paths = [safe_relative(m.name.removeprefix("./")) for m in members]
            for m, rel in zip(members, _strip_common_top(paths), strict=True):
                src = tf.extractfile(m)
                if src is None:
                    continue
                with src, _place(out, rel).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except tarfile.TarError:
        raise ApiError(422, "bad_archive", "the upload is not a readable tar archive") from None


async def _receive_upload(request: Request, out: Path) -> str:
    """Write the multipart upload's files under ``out`` (limits and path rules enforced);
    returns the ``dataset`` field."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise ApiError(411, "length_required", "send the upload with a Content-Length")
    if int(declared) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "request_too_large", f"uploads are limited to {MAX_UPLOAD_BYTES} "
                       "bytes")
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise ApiError(415, "multipart_required", "send the files as multipart/form-data")
    form = await request.form(max_files=MAX_FILES, max_fields=16)
    try:
        dataset = form.get("dataset")
        if not isinstance(dataset, str) or not dataset or len(dataset) > 128:
            raise ApiError(422, "invalid_request", "dataset: the dataset's name is required")
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise ApiError(422, "no_files", "choose a folder of labelled files or an archive")
        names = [u.filename or "" for u in uploads]
        if len(uploads) == 1 and names[0].lower().endswith(ARCHIVES):
            archive = out.parent / "upload.archive"
            with archive.open("wb") as dst:
                shutil.copyfileobj(uploads[0].file, dst)
            unpack = _unpack_zip if names[0].lower().endswith(".zip") else _unpack_tar
            await run_in_threadpool(unpack, archive, out)
        else:
            paths = _strip_common_top([safe_relative(n) for n in names])
            for upload, rel in zip(uploads, paths, strict=True):
                with _place(out, rel).open("wb") as dst:
                    shutil.copyfileobj(upload.file, dst)
        return dataset
    finally:
        await form.close()


def _stage(request: Request, proposer: str, dataset: str, folder: Path) -> Any:
    """Ingest outside the chain lock (a large upload takes a while), chain reads inside it."""
    ctx = request.app.state.ctx
    try:
        return web_tx.propose_txs(ctx.dep, proposer, dataset, folder, lock=ctx.chain_lock)
    except web_tx.TxRefused as exc:
        raise ApiError(exc.http_status, exc.code, str(exc)) from None


@router.post("/api/tx/propose", response_model=ProposeOut, openapi_extra={
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["dataset", "files"],
        "properties": {"dataset": {"type": "string"},
                       "files": {"type": "array",
                                 "items": {"type": "string", "format": "binary"}}}}}}}})
async def propose(request: Request) -> dict[str, Any]:
    """Upload a batch (a folder's files or one archive); answers ``commit`` and ``propose``."""
    viewer = require_viewer(request)
    with tempfile.TemporaryDirectory(prefix="databright-upload-") as tmp:
        folder = Path(tmp) / "batch"
        folder.mkdir()
        dataset = await _receive_upload(request, folder)
        staged = await run_in_threadpool(_stage, request, viewer.address, dataset, folder)
    out = _answer(request, staged.transactions)
    out["proposal"] = {"dataset": staged.dataset, "manifest_cid": staged.manifest_cid,
                       "merkle_root": staged.merkle_root, "items": staged.items,
                       "duplicates": staged.duplicates, "refused": staged.refused,
                       "labels": staged.labels, "stake_wei": str(staged.stake),
                       "report_cid": staged.report_cid}
    return out


# -- sending for a local session, and status ----------------------------------------------------
def _send_local(request: Request, viewer: Viewer, body: SendBody) -> list[str]:
    ctx = request.app.state.ctx
    signer = local_keys.signer_for(request, viewer)
    txs = []
    with ctx.chain_lock:
        allowed = web_tx.contract_addresses(ctx.dep)
        for t in body.transactions:
            if t.to not in allowed:
                raise ApiError(403, "unknown_contract", f"the server signs only transactions to "
                               f"this market's contracts, not to {t.to}")
            if not _HEX.match(t.data):
                raise ApiError(422, "invalid_request", "data must be 0x-prefixed hex")
            txs.append(UnsignedTx(t.to, t.data, _wei(t.value, "value"), t.description or ""))
        hashes = []
        try:
            for tx in txs:
                hashes.append(send_as(ctx.dep.chain, tx, signer))
        finally:
            if hashes:
                ctx.synced_soon()
    return hashes


@router.post("/api/tx/send", response_model=Sent, openapi_extra=body_schema(SendBody))
async def send(request: Request) -> dict[str, Any]:
    """A local session's transactions, signed by the server with the session's key and sent in
    order (each mined before the next); answers their hashes."""
    viewer = require_viewer(request)
    body = await read_model(request, SendBody)
    return {"hashes": await run_in_threadpool(_send_local, request, viewer, body)}


def _status(request: Request, tx_hash: str) -> Status:
    ctx = request.app.state.ctx
    with ctx.chain_lock:
        st = tx_status(ctx.dep.chain, tx_hash)
    indexed = False
    if st.mined and st.block is not None:
        with ctx.read() as s:
            synced = s.execute(select(SyncState.last_block)).scalar()
        indexed = synced is not None and int(synced) >= st.block
        if not indexed:
            ctx.synced_soon()
    return Status(hash=tx_hash, mined=st.mined, status=st.status, block=st.block,
                  indexed=indexed)


@router.get("/api/tx/status/{tx_hash}", response_model=Status)
async def status(request: Request,
                 tx_hash: str = PathParam(pattern=_HASH.pattern)) -> Status:
    """Whether ``tx_hash`` is mined (``status`` 1: succeeded) and the index has caught up."""
    if not _HASH.match(tx_hash):
        raise ApiError(422, "invalid_request", "a transaction hash is 0x and 64 hex digits")
    return await run_in_threadpool(_status, request, tx_hash)


# -- "try it": paid predictions served by this app ---------------------------------------------
MAX_TRY_BYTES = 8 * 1024 * 1024


class QuoteBody(_Strict):
    n: int = Field(ge=1, le=64)


class QuoteOut(BaseModel):
    model_id: int
    price_wei: str
    needed_wei: str
    channel_id: int | None
    accepted_wei: str
    deposit_wei: str
    amount_wei: str | None
    voucher: dict[str, Any] | None
    suggested_deposit_wei: str


class TryOut(BaseModel):
    predictions: list[dict[str, str]]
    charged: str
    channel: dict[str, str] | None


def _service(request: Request, model_id: int) -> web_tx.WebPredictionService:
    state = request.app.state
    ctx = state.ctx
    if not hasattr(state, "try_services"):
        state.try_services = {}
    service = state.try_services.get(model_id)
    if service is None:
        try:
            service = web_tx.load_try_service(ctx.dep, model_id, ctx.chain_lock)
        except web_tx.TxRefused as exc:
            raise ApiError(exc.http_status, exc.code, str(exc)) from None
        state.try_services[model_id] = service
    return service  # type: ignore[no-any-return]


def _quote(request: Request, model_id: int, payer: str, n: int) -> web_tx.TryQuote:
    ctx = request.app.state.ctx
    service = _service(request, model_id)
    try:
        return web_tx.try_quote(ctx.dep, service, payer, n, ctx.chain_lock)
    except web_tx.TxRefused as exc:
        raise ApiError(exc.http_status, exc.code, str(exc)) from None


def _quote_json(q: web_tx.TryQuote) -> dict[str, Any]:
    return {"model_id": q.model_id, "price_wei": str(q.price_wei),
            "needed_wei": str(q.needed_wei), "channel_id": q.channel_id,
            "accepted_wei": str(q.accepted_wei), "deposit_wei": str(q.deposit_wei),
            "amount_wei": None if q.amount_wei is None else str(q.amount_wei),
            "voucher": q.voucher, "suggested_deposit_wei": str(q.suggested_deposit_wei)}


@router.post("/api/models/{model_id}/try/quote", response_model=QuoteOut, tags=["models"],
             openapi_extra=body_schema(QuoteBody))
async def try_quote(request: Request,
                    model_id: int = PathParam(ge=1, le=2**63)) -> dict[str, Any]:
    """The price of ``n`` predictions and the next voucher to sign on the viewer's channel
    (``voucher`` null: open a channel first, with ``/api/tx/open-channel``)."""
    viewer = require_viewer(request)
    body = await read_model(request, QuoteBody)
    return _quote_json(await run_in_threadpool(_quote, request, model_id, viewer.address,
                                               body.n))


def _predict(request: Request, viewer: Viewer, model_id: int, channel_id: int, amount: int,
             signature: str | None, files: list[tuple[str, str, bytes]], rows: str | None
             ) -> dict[str, Any]:
    import json

    from databright.market.predictions import Item, PredictionRefused, VoucherClaim

    service = _service(request, model_id)
    try:
        if files:
            items = [Item(name, media, data) for name, media, data in files]
        else:
            try:
                parsed = json.loads(rows or "")
            except ValueError:
                raise ApiError(422, "malformed_input", "rows must be a JSON list of objects"
                               ) from None
            items = service.rows_to_items(parsed)
        if viewer.kind == "local":
            # the server signs for a local session: exactly the next voucher, never more
            quote = _quote(request, model_id, viewer.address, len(items))
            if quote.channel_id is None or quote.amount_wei is None:
                raise ApiError(402, "channel_required", "open a channel for this model first")
            channel_id, amount = quote.channel_id, quote.amount_wei
            signature = web_tx.sign_voucher(service, local_keys.signer_for(request, viewer),
                                            channel_id, amount)
        if not signature:
            raise ApiError(422, "invalid_request", "signature: the voucher's signature is "
                           "required")
        claim = VoucherClaim(service.chain_id, service.registry, channel_id, amount, signature)
        result = service.predict(items, claim)
    except PredictionRefused as exc:
        raise ApiError(exc.http_status, exc.code, str(exc)) from None
    return {"predictions": [{"name": n, "label": lab} for n, lab in result.labels],
            "charged": str(result.charged),
            "channel": {k: str(v) for k, v in (result.channel or {}).items()} or None}


@router.post("/api/models/{model_id}/try", response_model=TryOut, tags=["models"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "channel_id": {"type": "integer"}, "amount": {"type": "string"},
                     "signature": {"type": "string"}, "rows": {"type": "string"},
                     "files": {"type": "array", "items": {"type": "string",
                                                          "format": "binary"}}}}}}}})
async def try_it(request: Request,
                 model_id: int = PathParam(ge=1, le=2**63)) -> dict[str, Any]:
    """Predict the uploaded images (or ``rows``) with the model's best checkpoint, paid by the
    signed cumulative voucher (``channel_id``, ``amount`` wei, ``signature``; a local session's
    voucher is signed by the server)."""
    viewer = require_viewer(request)
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise ApiError(411, "length_required", "send the request with a Content-Length")
    if int(declared) > MAX_TRY_BYTES:
        raise ApiError(413, "request_too_large", f"at most {MAX_TRY_BYTES} bytes a request")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "multipart_required", "send multipart/form-data")
    form = await request.form(max_files=64, max_fields=8)
    try:
        channel_text = form.get("channel_id")
        amount_text = form.get("amount")
        signature = form.get("signature")
        rows = form.get("rows")
        local = viewer.kind == "local"
        channel_id = int(channel_text) if isinstance(channel_text, str) and \
            channel_text.isdigit() else None
        amount = _wei(amount_text, "amount") if isinstance(amount_text, str) else None
        if not local and (channel_id is None or amount is None):
            raise ApiError(422, "invalid_request", "channel_id and amount are required")
        files = [(f.filename or f"file {i}", f.content_type or "application/octet-stream",
                  await f.read()) for i, f in enumerate(form.getlist("files"))
                 if isinstance(f, UploadFile)]
        files = [f for f in files if f[2]]
    finally:
        await form.close()
    return await run_in_threadpool(
        _predict, request, viewer, model_id, channel_id or 0, amount or 0,
        signature if isinstance(signature, str) else None, files,
        rows if isinstance(rows, str) else None)
