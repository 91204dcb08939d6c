"""The ComputeMarket's prediction jobs: their EIP-712 final receipt and the wrapper's calls.

A prediction job escrows a registered model's price for ``count`` predictions plus a compute
budget (``create_prediction_job``); its final part is a :class:`PredictionReceipt` (a
:class:`~databright.chain.compute_market.Receipt` with ``delivered`` in place of ``final``),
signed by the coordinator's enclave key and applied by ``settle_prediction``, which pays the
workers, the royalty (to the dataset's ShareToken), the model's owner and the consumer's refund
in one transaction. :class:`PredictionJobs` is mixed into
:class:`~databright.chain.compute_market.ComputeMarket`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from databright.chain.eip712 import DOMAIN_FIELDS, domain
from databright.chain.wrapper import BoundContract, Sent, as_bytes32, checksum
from databright.errors import UsageError

BPS = 10_000
MAX_PREDICTIONS = 2**40 - 1

_FIELDS = [
    {"name": "jobId", "type": "uint256"},
    {"name": "part", "type": "uint256"},
    {"name": "workers", "type": "address[]"},
    {"name": "fees", "type": "uint256[]"},
    {"name": "liars", "type": "address[]"},
    {"name": "receiptHash", "type": "bytes32"},
    {"name": "delivered", "type": "uint256"},
]


def split_payment(price: int, count: int, delivered: int, royalty_bps: int) -> dict[str, int]:
    """What ``settle_prediction`` does with a prediction job's escrow (wei), as the contract
    computes it: the royalty is rounded up, so the shareholders never lose to rounding.

    Returns:
        ``{"escrow", "royalty", "owner", "refund"}``; ``royalty + owner + refund == escrow``.
    """
    gross = price * delivered
    royalty = -(-gross * royalty_bps // BPS)
    return {"escrow": price * count, "royalty": royalty, "owner": gross - royalty,
            "refund": price * (count - delivered)}


@dataclass(frozen=True)
class PredictionReceipt:
    """A prediction job's final receipt part as the coordinator signs it.

    Build it with :meth:`of`, which sorts the workers and liars as the contract wants.
    """

    chain_id: int
    market: str
    job_id: int
    part: int
    workers: tuple[str, ...]
    fees: tuple[int, ...]
    liars: tuple[str, ...]
    receipt_hash: bytes
    delivered: int

    @property
    def final(self) -> bool:
        """A prediction receipt is always its job's last part."""
        return True

    @classmethod
    def of(cls, chain_id: int, market: str, job_id: int, part: int, payouts: dict[str, int],
           liars: Sequence[str], receipt_hash: bytes | str, delivered: int) -> PredictionReceipt:
        """Raises UsageError as :meth:`Receipt.of` does, and for a negative ``delivered``."""
        from databright.chain.compute_market import Receipt

        base = Receipt.of(chain_id, market, job_id, part, payouts, liars, receipt_hash, True)
        if int(delivered) < 0:
            raise UsageError("a receipt delivers a non-negative number of predictions")
        return cls(base.chain_id, base.market, base.job_id, base.part, base.workers, base.fees,
                   base.liars, base.receipt_hash, int(delivered))

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 ``full_message`` (``eth_account.messages.encode_typed_data``)."""
        from databright.chain.compute_market import DOMAIN_NAME, DOMAIN_VERSION, part_message

        return {
            "types": {"EIP712Domain": DOMAIN_FIELDS, "PredictionReceipt": _FIELDS},
            "primaryType": "PredictionReceipt",
            "domain": domain(DOMAIN_NAME, DOMAIN_VERSION, self.chain_id, self.market),
            "message": {**part_message(self), "delivered": int(self.delivered)},
        }


@dataclass(frozen=True)
class PredictionJobInfo:
    """A prediction job's terms (read from the registry when it was created) and escrow."""

    job_id: int
    model_id: int
    owner: str
    count: int
    price_per_prediction: int
    royalty_bps: int
    escrow: int
    delivered: int


@dataclass(frozen=True)
class SettledPrediction:
    """What one ``settle_prediction`` paid (wei): workers, slashed stakes, the budget refund,
    then the escrow's split (``royalty_held`` when the ShareToken refused it)."""

    job_id: int
    part: int
    paid: int
    slashed: int
    budget_refund: int
    delivered: int
    owner_amount: int
    royalty: int
    refund: int
    royalty_held: bool


_INFO = tuple(f for f in PredictionJobInfo.__dataclass_fields__ if f != "job_id")


class PredictionJobs(BoundContract):
    """The ComputeMarket's prediction-job calls (mixed into ``ComputeMarket``)."""

    def create_prediction_job(self, sender: LocalAccount, model_id: int, count: int,
                              coordinator: str, program_digest: bytes | str, spec_cid: str,
                              deadline: int, value: int) -> Sent[int]:
        """Escrow ``value`` wei (the model's price × ``count`` + a compute budget); value: the
        job id."""
        receipt = self._send("create_prediction_job", sender, int(model_id), int(count),
                             checksum(coordinator), as_bytes32(program_digest), spec_cid,
                             int(deadline), value=int(value))
        return Sent(int(self._event(receipt, "PredictionJobCreated")["job_id"]), receipt)

    def prediction_receipt(self, job_id: int, part: int, payouts: dict[str, int],
                           liars: Sequence[str], receipt_hash: bytes | str,
                           delivered: int) -> PredictionReceipt:
        """A final prediction receipt part for this market and chain."""
        with self.chain.translating():
            chain_id = int(self.chain.w3.eth.chain_id)
        return PredictionReceipt.of(chain_id, self.address, job_id, part, payouts, liars,
                                    receipt_hash, delivered)

    def settle_prediction(self, sender: LocalAccount, r: PredictionReceipt,
                          signature: bytes) -> Sent[SettledPrediction]:
        """Deliver a prediction job's signed final part (anyone may send it)."""
        if checksum(r.market) != self.address:
            raise UsageError(f"this receipt is for the market at {r.market}, not {self.address}")
        receipt = self._send("settle_prediction", sender, int(r.job_id), int(r.part),
                             list(r.workers), [int(f) for f in r.fees], list(r.liars),
                             as_bytes32(r.receipt_hash), int(r.delivered), bytes(signature))
        part = self._event(receipt, "PartSettled")
        final = self._event(receipt, "JobFinalized")
        split = self._event(receipt, "PredictionSettled")
        held = False
        if int(split["royalty"]):
            held = bool(self._event(receipt, "DividendPaid")["held"])
        return Sent(SettledPrediction(
            int(r.job_id), int(part["part"]), int(part["paid"]), int(part["slashed"]),
            int(final["refund"]), int(split["delivered"]), int(split["owner_amount"]),
            int(split["royalty"]), int(split["refund"]), held), receipt)

    def get_prediction_job(self, job_id: int) -> PredictionJobInfo:
        """Raises InvalidArgumentError for a job that is not a prediction job."""
        raw = dict(zip(_INFO, self._call("get_prediction_job", int(job_id)), strict=True))
        return PredictionJobInfo(
            job_id=int(job_id), model_id=int(raw["model_id"]), owner=checksum(raw["owner"]),
            count=int(raw["count"]), price_per_prediction=int(raw["price_per_prediction"]),
            royalty_bps=int(raw["royalty_bps"]), escrow=int(raw["escrow"]),
            delivered=int(raw["delivered"]))

    def model_registry(self) -> str:
        """The registry prediction jobs read model terms from."""
        return checksum(self._call("model_registry"))

    def prediction_receipt_digest(self, r: PredictionReceipt) -> bytes:
        """The digest the contract computes (must equal ``eip712.digest(r)``)."""
        return bytes(self._call("prediction_receipt_digest", int(r.job_id), int(r.part),
                                list(r.workers), [int(f) for f in r.fees], list(r.liars),
                                as_bytes32(r.receipt_hash), int(r.delivered)))
