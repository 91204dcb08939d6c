"""The transactions a web page asks the viewer's wallet to send (vote, finalize, withdraw, open a
channel, propose), built unsigned after refusing what the chain would refuse.

Each builder reads the live chain (these are write paths) and raises :class:`TxRefused` with a
clear code — ``proposal_not_open``, ``voting_closed``, ``already_voted``, ``no_voting_power``,
``nothing_to_withdraw``, ... — before any wallet is asked to sign something that would revert;
then it dry-runs the first transaction (:func:`databright.chain.calldata.simulate`), so a revert
the checks did not foresee is refused too, with the contract's reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from databright.chain.calldata import UnsignedTx, encode, simulate
from databright.chain.data_market import commitment_of
from databright.errors import DataBrightError, InsufficientFundsError, UsageError
from databright.index.models import IngestReport
from databright.market.channels import DEFAULT_TIMEOUT
from databright.market.context import Deployment
from databright.market.datasets import card_of, dataset_id
from databright.market.proposals import _without_known, get_proposal


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
                max_file_size: int | None = None) -> StagedProposal:
    """Ingest ``source`` as :func:`databright.market.proposals.propose` does, up to the
    transaction: store the blobs and the report first, then return ``commit`` and ``propose``.

    Raises:
        UsageError: nothing new to propose.
        InsufficientFundsError: the proposer cannot pay the stake.
    """
    from databright.storage.ingest import DEFAULT_MAX_FILE_SIZE, ingest

    ds_id = dataset_id(dep, dataset)
    info = dep.market.get_dataset(ds_id)
    balance = dep.chain.balance(proposer)
    if balance < info.stake:
        raise InsufficientFundsError(f"{proposer} has {balance} wei, the stake is {info.stake}")
    labels = set(card_of(dep, ds_id).get("labels", []))
    result = ingest(Path(source), dep.store, label_set=labels or None,
                    max_file_size=max_file_size or DEFAULT_MAX_FILE_SIZE)
    result = _without_known(dep, ds_id, result)
    if not result.items or result.manifest_cid is None or result.merkle_root is None:
        dup, ref = len(result.duplicates), len(result.refused)
        first = f" (first refused: {result.refused[0][0]}: {result.refused[0][-1]})" if ref else ""
        raise UsageError(f"nothing new to propose: {dup} duplicate and {ref} refused items"
                         + first)
    report = result.to_dict()
    report_cid = dep.store.put_bytes(json.dumps(report, sort_keys=True, default=str).encode())
    with dep.index.session() as s:
        s.merge(IngestReport(manifest_cid=result.manifest_cid, dataset_name=info.name,
                             report_cid=report_cid,
                             report=json.loads(json.dumps(report, default=str))))
    root = bytes(result.merkle_root)
    count = len(result.items)
    commitment = commitment_of(proposer, ds_id, result.manifest_cid, root, count)
    txs = [
        encode(dep.market, "commit", ds_id, commitment,
               description=f"Commit to a batch of {count} items for {info.name}"),
        encode(dep.market, "propose", ds_id, result.manifest_cid, root, count, value=info.stake,
               description=f"Propose the batch, staking {info.stake} wei"),
    ]
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
