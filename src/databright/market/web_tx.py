"""The transactions a web page asks the viewer's wallet to send (vote, finalize, withdraw, open a
channel, propose), built unsigned after refusing what the chain would refuse.

Each builder reads the live chain (these are write paths) and raises :class:`TxRefused` with a
clear code — ``proposal_not_open``, ``voting_closed``, ``already_voted``, ``no_voting_power``,
``nothing_to_withdraw``, ... — before any wallet is asked to sign something that would revert;
then it dry-runs the first transaction (:func:`databright.chain.calldata.simulate`), so a revert
the checks did not foresee is refused too, with the contract's reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databright.chain.calldata import UnsignedTx, encode, simulate
from databright.chain.data_market import commitment_of
from databright.chain.model_registry import ChannelInfo
from databright.errors import DataBrightError, InsufficientFundsError
from databright.market.channels import DEFAULT_TIMEOUT
from databright.market.context import Deployment
from databright.market.datasets import card_of, dataset_id
from databright.market.predictions import ChannelView, PredictionService
from databright.market.proposals import get_proposal, stage_batch


class TxRefused(DataBrightError):
    """A transaction not worth signing: it would revert, for the reason ``code`` names."""

    http_status = 409

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = status


def _checked(dep: Deployment, sender: str, txs: list[UnsignedTx]) -> list[UnsignedTx]:
    simulate(dep.chain, txs[0], sender)
    return txs


def vote_txs(dep: Deployment, voter: str, proposal_id: int, support: bool) -> list[UnsignedTx]:
    """``vote(proposal_id, support)`` by ``voter``."""
    from databright.market.money import voting_power

    p = get_proposal(dep, proposal_id)
    if p.status != "open":
        raise TxRefused("proposal_not_open", f"proposal #{proposal_id} is {p.status}: "
                        "voting is over")
    if dep.chain.next_block_time() >= p.deadline:
        raise TxRefused("voting_closed", f"proposal #{proposal_id}'s voting period has ended: "
                        "finalize it")
    if dep.market.has_voted(proposal_id, voter):
        raise TxRefused("already_voted", f"{voter} already voted on proposal #{proposal_id}")
    if not voting_power(dep, proposal_id, voter):
        raise TxRefused("no_voting_power", f"{voter} held no shares of this dataset at the "
                        f"proposal's snapshot (block {p.snapshot}): only shareholders vote",
                        status=403)
    word = "yes" if support else "no"
    return _checked(dep, voter, [encode(dep.market, "vote", int(proposal_id), bool(support),
                                        description=f"Vote {word} on proposal #{proposal_id}")])


def finalize_txs(dep: Deployment, sender: str, proposal_id: int) -> list[UnsignedTx]:
    """``finalize(proposal_id)`` (anyone may, once decided or past the deadline)."""
    p = get_proposal(dep, proposal_id)
    if p.status != "open":
        raise TxRefused("proposal_not_open", f"proposal #{proposal_id} is already {p.status}")
    return _checked(dep, sender, [encode(dep.market, "finalize", int(proposal_id),
                                         description=f"Finalize proposal #{proposal_id}")])


def withdraw_txs(dep: Deployment, account: str) -> list[UnsignedTx]:
    """One transaction per source owing ``account``: each dataset's dividends, refunded stakes,
    the model registry's and the compute market's credits (amounts read live)."""
    from databright.market.listings import held_tokens

    out: list[UnsignedTx] = []
    for held in held_tokens(dep, account):
        token = dep.token(held.share_token)
        owed = token.dividends_of(account)
        if owed:
            out.append(encode(token, "withdraw",
                              description=f"Withdraw {owed} wei of {held.dataset} dividends"))
    refund = dep.market.refund_of(account)
    if refund:
        out.append(encode(dep.market, "withdraw_refund",
                          description=f"Withdraw {refund} wei of refunded stakes"))
    for key, attr, what in (("ModelRegistry", "registry", "model registry"),
                            ("ComputeMarket", "compute", "compute market")):
        if dep.config.contracts.get(key):
            contract = getattr(dep, attr)
            credited = contract.owed_of(account)
            if credited:
                out.append(encode(contract, "withdraw",
                                  description=f"Withdraw {credited} wei from the {what}"))
    if not out:
        raise TxRefused("nothing_to_withdraw", f"{account} has nothing to withdraw")
    return _checked(dep, account, out)


def open_channel_txs(dep: Deployment, payer: str, model_id: int, deposit: int,
                     timeout: int = DEFAULT_TIMEOUT) -> list[UnsignedTx]:
    """``open_channel(model_id, timeout)`` with ``deposit`` wei."""
    if deposit <= 0:
        raise TxRefused("bad_deposit", "the deposit must be a positive number of wei", 422)
    model = dep.registry.get_model(int(model_id))
    if deposit < model.price_per_prediction:
        raise TxRefused("deposit_too_small", f"the deposit must cover at least one prediction "
                        f"({model.price_per_prediction} wei)", 422)
    balance = dep.chain.balance(payer)
    if balance < deposit:
        raise InsufficientFundsError(f"{payer} has {balance} wei, cannot deposit {deposit} wei")
    return _checked(dep, payer, [encode(
        dep.registry, "open_channel", int(model_id), int(timeout), value=int(deposit),
        description=f"Open a payment channel for model #{model_id} with {deposit} wei")])


@dataclass(frozen=True)
class StagedProposal:
    """A batch ingested and stored (blobs, manifest, ingestion report), waiting for the
    proposer's two transactions: ``commit`` then ``propose`` (the reveal, with the stake)."""

    dataset: str
    manifest_cid: str
    merkle_root: str
    items: int
    duplicates: int
    refused: int
    labels: dict[str, int]
    stake: int
    report_cid: str
    transactions: list[UnsignedTx]


def propose_txs(dep: Deployment, proposer: str, dataset: str, source: Path, *,
                max_file_size: int | None = None,
                lock: AbstractContextManager[Any] | None = None) -> StagedProposal:
    """Ingest ``source`` as :func:`databright.market.proposals.propose` does, up to the
    transaction: store the blobs and the report first, then return ``commit`` and ``propose``.

    ``lock`` (the web server's chain lock) is held around the chain reads only, not while the
    files are ingested (which may take a while for a large upload).

    Raises:
        UsageError: nothing new to propose.
        InsufficientFundsError: the proposer cannot pay the stake.
    """
    guard = lock if lock is not None else nullcontext()
    with guard:
        ds_id = dataset_id(dep, dataset)
        info = dep.market.get_dataset(ds_id)
        balance = dep.chain.balance(proposer)
        if balance < info.stake:
            raise InsufficientFundsError(f"{proposer} has {balance} wei, the stake is "
                                         f"{info.stake}")
        labels = set(card_of(dep, ds_id).get("labels", []))
    result, report_cid = stage_batch(dep, ds_id, info.name, labels, Path(source),
                                     max_file_size=max_file_size, guard=guard)
    root = bytes(result.merkle_root)
    count = len(result.items)
    commitment = commitment_of(proposer, ds_id, result.manifest_cid, root, count)
    txs = [
        encode(dep.market, "commit", ds_id, commitment,
               description=f"Commit to a batch of {count} items for {info.name}"),
        encode(dep.market, "propose", ds_id, result.manifest_cid, root, count, value=info.stake,
               description=f"Propose the batch, staking {info.stake} wei"),
    ]
    with guard:
        _checked(dep, proposer, txs)
    return StagedProposal(dataset=info.name, manifest_cid=result.manifest_cid,
                          merkle_root="0x" + root.hex(), items=count,
                          duplicates=len(result.duplicates), refused=len(result.refused),
                          labels=dict(result.labels), stake=info.stake, report_cid=report_cid,
                          transactions=txs)


def contract_addresses(dep: Deployment) -> set[str]:
    """The contracts a page's transactions go to: the home's contracts and the share tokens
    the index knows (a local session's server signs only transactions to these)."""
    from sqlalchemy import select

    from databright.index.cache import DatasetRow

    found = {addr for key, addr in dep.config.contracts.items()
             if key in ("DataMarket", "ModelRegistry", "ComputeMarket") and addr}
    with dep.index.session() as s:
        found |= {str(t) for t in s.execute(select(DatasetRow.share_token)).scalars() if t}
    return found


# -- "try it": predictions the web app serves itself, paid by voucher ---------------------------
#
# The web app serves a model's predictions itself when the model's best checkpoint is in this
# home's store: the same PredictionService as `databright serve-model`, with its voucher rule
# (cumulative EIP-712 vouchers signed by the channel's payer, kept in this home's payee book,
# channels.sqlite). The model's owner redeems them from this home with `databright channel
# close` (or a prediction server on the home), as for any voucher the home received. The
# service reads channels through the web server's open deployment (the server holds the
# embedded chain; opening a second one would wait for itself).

SUGGESTED_PREDICTIONS = 20


class WebPredictionService(PredictionService):
    """A PredictionService whose channel reads go through ``read_channel`` (the server's open
    deployment under its chain lock) instead of opening the home again."""

    read_channel: Callable[[int], tuple[ChannelInfo | None, float]] | None = None

    def _channel(self, channel_id: int, n: int, *, refresh: bool = False) -> ChannelView:
        view = self._channels.get(channel_id)
        if view is not None and not refresh:
            return view
        assert self.read_channel is not None  # set by load_try_service
        info, offset = self.read_channel(channel_id)
        if info is None:
            raise self._refusal("unknown_channel", f"no channel {channel_id} on registry "
                                f"{self.registry}", n)
        self._clock_offset = offset
        view = ChannelView(channel_id, info.payer, info.model_id, info.deposit, info.expiry,
                           info.status)
        self._channels[channel_id] = view
        return view


def load_try_service(dep: Deployment, model_id: int, lock: Any) -> WebPredictionService:
    """The model's best checkpoint, loaded from this home's store and checked against the
    chain's sha256, as a service answering paid predictions.

    Raises:
        TxRefused: ``no_checkpoint`` (nothing attested yet), ``not_served_here`` (the
            checkpoint is not in this home's store), 404.
    """
    from databright.errors import NotFoundError
    from databright.market.predictions import MAX_BODY_BYTES, MAX_ITEMS, VOUCHER_HEADER
    from databright.training.checkpoint import load_checkpoint
    from databright.training.families import get_family

    with lock:
        model = dep.registry.get_model(int(model_id))
        best = dep.registry.best_checkpoint(int(model_id))
        if best is None:
            raise TxRefused("no_checkpoint", f"model {model_id} has no attested checkpoint yet",
                            404)
        if not dep.store.has(best.cid):
            raise TxRefused("not_served_here", f"model {model_id}'s checkpoint is not in this "
                            "server's store: use its owner's prediction server", 404)
        ckpt = load_checkpoint(dep.store, best.cid, best.file_sha256.hex())
        chain_id = int(dep.config.chain_id or dep.registry.chain_id())
        registry = dep.registry.address
    family = get_family(ckpt.family)
    info: dict[str, Any] = {
        "model_id": int(model_id), "name": model.name, "owner": model.owner,
        "dataset_id": model.dataset_id, "share_token": model.share_token,
        "price_per_prediction": model.price_per_prediction, "royalty_bps": model.royalty_bps,
        "registry": registry, "chain_id": chain_id, "family": ckpt.family,
        "media": family.media, "labels": list(ckpt.labels), "voucher_header": VOUCHER_HEADER,
        "max_items": MAX_ITEMS, "max_body_bytes": MAX_BODY_BYTES, "payment_required": True,
        "checkpoint": {"number": best.checkpoint, "cid": best.cid,
                       "sha256": best.file_sha256.hex(), "metric_bps": best.metric_bps},
    }
    if family.media == "table":
        info["columns"] = list(ckpt.extra.get("columns", []))
    service = WebPredictionService(dep.home, int(model_id), chain_id, registry, info, ckpt,
                                   family, None)

    def read_channel(channel_id: int) -> tuple[ChannelInfo | None, float]:
        with lock:
            try:
                found = dep.registry.get_channel(int(channel_id))
            except NotFoundError:
                return None, 0.0
            return found, dep.chain.next_block_time() - time.time()

    service.read_channel = read_channel
    return service


@dataclass(frozen=True)
class TryQuote:
    """What ``n`` predictions cost and, if one of the payer's channels covers it, the next
    voucher to sign (EIP-712 typed data, numbers as decimal strings)."""

    model_id: int
    price_wei: int
    needed_wei: int
    channel_id: int | None
    accepted_wei: int
    deposit_wei: int
    amount_wei: int | None
    voucher: dict[str, Any] | None
    suggested_deposit_wei: int


def voucher_json(chain_id: int, registry: str, channel_id: int, amount: int) -> dict[str, Any]:
    """A voucher's typed data for ``eth_signTypedData_v4`` (uint256 values as strings, which
    wallets and eth-account read exactly; JSON numbers would round above 2**53 in JS)."""
    from databright.chain.model_registry import Voucher

    data = Voucher(int(chain_id), registry, int(channel_id), int(amount)).typed_data()
    data["domain"] = {**data["domain"], "chainId": str(data["domain"]["chainId"])}
    data["message"] = {k: str(v) for k, v in data["message"].items()}
    return data


def try_quote(dep: Deployment, service: WebPredictionService, payer: str, n: int,
              lock: Any) -> TryQuote:
    """The cheapest honest way to pay ``n`` predictions: the first open channel of ``payer``
    for this model (index) whose deposit, less the highest voucher accepted on it (payee
    book), covers them and that does not expire soon (chain)."""
    from sqlalchemy import select

    from databright.index.cache import ChannelRow
    from databright.market.channels import REUSE_MARGIN

    if not 1 <= n <= service.max_items:
        raise TxRefused("bad_count", f"ask for 1 to {service.max_items} predictions", 422)
    price = service.price
    needed = price * n
    with dep.index.session() as s:
        ids = list(s.execute(select(ChannelRow.channel_id).where(
            ChannelRow.payer == payer, ChannelRow.model_id == service.model_id,
            ChannelRow.status == "open").order_by(ChannelRow.channel_id)).scalars())
    suggested = max(needed, price * SUGGESTED_PREDICTIONS)
    for channel_id in ids:
        with lock:
            info = dep.registry.get_channel(channel_id)
            now = dep.chain.next_block_time()
        received = service.book.get(service.chain_id, service.registry, channel_id)
        stored = received.amount if received else 0
        if received is not None and received.status != "open":
            continue
        if info.status == "open" and info.expiry > now + REUSE_MARGIN and \
                info.deposit - stored >= needed:
            amount = stored + needed
            return TryQuote(service.model_id, price, needed, channel_id, stored, info.deposit,
                            amount, voucher_json(service.chain_id, service.registry,
                                                 channel_id, amount), suggested)
    return TryQuote(service.model_id, price, needed, None, 0, 0, None, None, suggested)


def sign_voucher(service: WebPredictionService, signer: Any, channel_id: int,
                 amount: int) -> str:
    """A local session's voucher, signed by the server with the session's key."""
    from databright.chain.model_registry import Voucher, sign

    voucher = Voucher(service.chain_id, service.registry, int(channel_id), int(amount))
    return "0x" + bytes(sign(voucher, signer)).hex()
