"""Typed wrapper over the ComputeMarket contract, and its EIP-712 receipts.

Two halves. The pure-Python half (:class:`Receipt`, :func:`sign_receipt`,
:func:`recover_receipt`, :func:`receipt_digest`) builds the same EIP-712 typed data the contract
hashes (domain ``DataBright ComputeMarket`` / ``1`` / chain id / market address), so the
coordinator signs a part of a job's receipt with its enclave key without a node, and anyone can
check one offline. The contract half (:class:`ComputeMarket`) follows the contract name for
name: transactions take the signer first and return :class:`~databright.chain.wrapper.Sent`;
views return frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from databright.chain import eip712
from databright.chain.compute_predictions import PredictionJobs
from databright.chain.eip712 import DOMAIN_FIELDS, Key, domain
from databright.chain.pull_payments import PullPayments
from databright.chain.wrapper import Sent, as_bytes32, checksum
from databright.errors import UsageError

DOMAIN_NAME = "DataBright ComputeMarket"
DOMAIN_VERSION = "1"
MAX_SETTLE = 64
COORDINATOR_KIND = {1: "software", 2: "sgx-dcap"}
KIND_OF = {name: number for number, name in COORDINATOR_KIND.items()}
WORKER_STATUS = {0: "none", 1: "active", 2: "leaving", 3: "banned"}
JOB_STATUS = {1: "open", 2: "final", 3: "cancelled"}

_RECEIPT_FIELDS = [
    {"name": "jobId", "type": "uint256"},
    {"name": "part", "type": "uint256"},
    {"name": "workers", "type": "address[]"},
    {"name": "fees", "type": "uint256[]"},
    {"name": "liars", "type": "address[]"},
    {"name": "receiptHash", "type": "bytes32"},
    {"name": "final", "type": "bool"},
]

__all__ = ["ComputeMarket", "Key", "Receipt", "receipt_digest", "receipt_signed_by",
           "recover_receipt", "sign_receipt", "signable"]


def _sorted_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted((checksum(a) for a in addresses), key=lambda a: int(a, 16)))


@dataclass(frozen=True)
class Receipt:
    """One part of a job's receipt as the coordinator signs it.

    ``workers`` and ``fees`` are parallel (worker ``i`` is credited ``fees[i]`` wei); ``liars``
    are slashed. The contract wants both address lists strictly ascending: build receipts with
    :meth:`of`, which sorts them.
    """

    chain_id: int
    market: str
    job_id: int
    part: int
    workers: tuple[str, ...]
    fees: tuple[int, ...]
    liars: tuple[str, ...]
    receipt_hash: bytes
    final: bool

    @classmethod
    def of(
        cls,
        chain_id: int,
        market: str,
        job_id: int,
        part: int,
        payouts: dict[str, int],
        liars: Sequence[str] = (),
        receipt_hash: bytes | str = b"\x00" * 32,
        final: bool = False,
    ) -> Receipt:
        """A receipt from ``{worker: fee}`` and the liars, both sorted as the contract wants.

        Raises:
            UsageError: more than 64 workers or liars (settle in more parts), a worker listed
                twice, or a negative fee.
        """
        workers = _sorted_addresses(list(payouts))
        by_address = {checksum(a): int(fee) for a, fee in payouts.items()}
        liar_list = _sorted_addresses(liars)
        if len(by_address) != len(payouts) or len(set(liar_list)) != len(liar_list):
            raise UsageError("a receipt names each worker and each liar once")
        if len(workers) > MAX_SETTLE or len(liar_list) > MAX_SETTLE:
            raise UsageError(f"a receipt part names at most {MAX_SETTLE} workers and liars")
        if any(fee < 0 for fee in by_address.values()):
            raise UsageError("fees are non-negative wei")
        return cls(
            chain_id=int(chain_id),
            market=checksum(market),
            job_id=int(job_id),
            part=int(part),
            workers=workers,
            fees=tuple(by_address[w] for w in workers),
            liars=liar_list,
            receipt_hash=as_bytes32(receipt_hash),
            final=bool(final),
        )

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 ``full_message`` (``eth_account.messages.encode_typed_data``)."""
        return {
            "types": {"EIP712Domain": DOMAIN_FIELDS, "Receipt": _RECEIPT_FIELDS},
            "primaryType": "Receipt",
            "domain": domain(DOMAIN_NAME, DOMAIN_VERSION, self.chain_id, self.market),
            "message": {**part_message(self), "final": bool(self.final)},
        }


def part_message(r: Any) -> dict[str, Any]:
    """The fields a job part's receipt signs whatever its kind (job, part, payees, liars,
    hash): the training Receipt adds ``final``, the PredictionReceipt ``delivered``."""
    return {
        "jobId": int(r.job_id),
        "part": int(r.part),
        "workers": [checksum(w) for w in r.workers],
        "fees": [int(f) for f in r.fees],
        "liars": [checksum(a) for a in r.liars],
        "receiptHash": as_bytes32(r.receipt_hash),
    }


signable = eip712.signable
#: the 32-byte hash that gets signed (equals the contract's ``receipt_digest`` view)
receipt_digest = eip712.digest
#: a 65-byte ``r || s || v`` signature (low s, v 27/28) as the contract expects
sign_receipt = eip712.sign
#: the checksum address that signed a receipt (UsageError when malformed)
recover_receipt = eip712.recover
#: whether a signature over a receipt is by a given signer (False when malformed)
receipt_signed_by = eip712.signed_by


# -- the contract --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """A worker; ``status`` is ``none|active|leaving|banned``; ``coordinator`` is the enclave
    address whose receipts alone may name it; ``release_at`` and ``last_job`` (the last job
    that may still name it) are set when it unregisters."""

    worker: str
    stake: int
    min_fee: int
    determinism_class: bytes
    coordinator: str
    status: str
    release_at: int
    last_job: int


@dataclass(frozen=True)
class CoordinatorInfo:
    """A registered coordinator: its enclave key's address, operator, kind and evidence."""

    enclave: str
    operator: str
    kind: str
    evidence_cid: str
    registered_at: int


@dataclass(frozen=True)
class JobInfo:
    """A job; ``status`` is ``open|final|cancelled``; ``next_part`` is the part to settle next."""

    job_id: int
    consumer: str
    coordinator: str
    dataset_id: int
    share_token: str
    program_digest: bytes
    spec_cid: str
    training_fee: int
    budget: int
    spent: int
    deadline: int
    next_part: int
    status: str

    @property
    def remaining(self) -> int:
        """Budget not yet credited to workers (wei)."""
        return self.budget - self.spent


@dataclass(frozen=True)
class SettledPart:
    """What one ``settle`` did (wei); ``refund`` is the unspent budget when ``final``."""

    job_id: int
    part: int
    paid: int
    slashed: int
    final: bool
    refund: int
    slashed_workers: dict[str, int] = field(default_factory=dict)


_WORKER = tuple(f for f in WorkerInfo.__dataclass_fields__ if f != "worker")
_COORDINATOR = ("operator", "kind", "evidence_cid", "registered_at")
_JOB = tuple(f for f in JobInfo.__dataclass_fields__ if f != "job_id")


class ComputeMarket(PredictionJobs, PullPayments):
    """The ComputeMarket at ``address`` on ``chain``."""

    contract_name = "ComputeMarket"

    # -- EIP-712 helpers bound to this market ---------------------------------------------------
    def receipt(
        self,
        job_id: int,
        part: int,
        payouts: dict[str, int],
        liars: Sequence[str] = (),
        receipt_hash: bytes | str = b"\x00" * 32,
        final: bool = False,
    ) -> Receipt:
        """A receipt part for this market and chain (lists sorted as the contract wants)."""
        return Receipt.of(
            self.chain_id(), self.address, job_id, part, payouts, liars, receipt_hash, final
        )

    # -- workers and coordinators ---------------------------------------------------------------
    def register_worker(
        self,
        sender: LocalAccount,
        min_fee: int,
        determinism_class: bytes | str,
        coordinator: str,
        stake: int,
    ) -> Sent[WorkerInfo]:
        """Register ``sender`` as a worker of ``coordinator`` locking ``stake`` wei; value: its
        record."""
        receipt = self._send(
            "register_worker",
            sender,
            int(min_fee),
            as_bytes32(determinism_class),
            checksum(coordinator),
            value=int(stake),
        )
        return Sent(self.get_worker(sender.address), receipt)

    def unregister(self, sender: LocalAccount) -> Sent[int]:
        """Start leaving; value: the time from which ``withdraw_stake`` is allowed."""
        receipt = self._send("unregister", sender)
        return Sent(int(self._event(receipt, "WorkerUnregistered")["release_at"]), receipt)

    def withdraw_stake(self, sender: LocalAccount) -> Sent[int]:
        receipt = self._send("withdraw_stake", sender)
        return Sent(int(self._event(receipt, "StakeWithdrawn")["amount"]), receipt)

    def register_coordinator(
        self, sender: LocalAccount, enclave: str, evidence_cid: str, kind: str | int
    ) -> Sent[CoordinatorInfo]:
        """Register an enclave key (``kind``: ``software``, ``sgx-dcap`` or 1/2)."""
        number = KIND_OF.get(kind, 0) if isinstance(kind, str) else int(kind)
        if isinstance(kind, str) and number == 0:
            raise UsageError(f"a coordinator kind is one of {sorted(KIND_OF)}, not {kind!r}")
        receipt = self._send(
            "register_coordinator", sender, checksum(enclave), evidence_cid, number
        )
        return Sent(self.get_coordinator(enclave), receipt)

    # -- jobs -----------------------------------------------------------------------------------
    def create_job(
        self,
        sender: LocalAccount,
        dataset_id: int,
        coordinator: str,
        program_digest: bytes | str,
        spec_cid: str,
        deadline: int,
        value: int,
    ) -> Sent[int]:
        """Escrow ``value`` wei (training fee + compute budget); value: the job id."""
        receipt = self._send(
            "create_job",
            sender,
            int(dataset_id),
            checksum(coordinator),
            as_bytes32(program_digest),
            spec_cid,
            int(deadline),
            value=int(value),
        )
        return Sent(int(self._event(receipt, "JobCreated")["job_id"]), receipt)

    def settle(
        self, sender: LocalAccount, receipt_part: Receipt, signature: bytes
    ) -> Sent[SettledPart]:
        """Deliver one signed receipt part (anyone may send it)."""
        r = receipt_part
        if checksum(r.market) != self.address:
            raise UsageError(f"this receipt is for the market at {r.market}, not {self.address}")
        receipt = self._send(
            "settle",
            sender,
            int(r.job_id),
            int(r.part),
            list(r.workers),
            [int(f) for f in r.fees],
            list(r.liars),
            as_bytes32(r.receipt_hash),
            bool(r.final),
            bytes(signature),
        )
        args = self._event(receipt, "PartSettled")
        refund = 0
        if r.final:
            refund = int(self._event(receipt, "JobFinalized")["refund"])
        slashed_logs = self.contract.events["WorkerSlashed"]().process_receipt(
            receipt, errors=DISCARD
        )
        slashed = {
            checksum(log["args"]["worker"]): int(log["args"]["amount"])
            for log in slashed_logs
            if log["address"] == self.address
        }
        return Sent(
            SettledPart(
                int(r.job_id),
                int(args["part"]),
                int(args["paid"]),
                int(args["slashed"]),
                bool(args["final"]),
                refund,
                slashed,
            ),
            receipt,
        )

    def cancel(self, sender: LocalAccount, job_id: int) -> Sent[int]:
        """Close an unfinished job after its deadline; value: the wei credited back."""
        receipt = self._send("cancel", sender, int(job_id))
        return Sent(int(self._event(receipt, "JobCancelled")["refund"]), receipt)

    # -- views ----------------------------------------------------------------------------------
    def min_stake(self) -> int:
        return int(self._call("min_stake"))

    def cooldown(self) -> int:
        return int(self._call("cooldown"))

    def job_count(self) -> int:
        return int(self._call("job_count"))

    def latest_deadline_of(self, coordinator: str) -> int:
        """The latest deadline of ``coordinator``'s jobs (a leaving worker waits until then)."""
        return int(self._call("latest_deadline_of", checksum(coordinator)))

    def get_worker(self, worker: str) -> WorkerInfo:
        raw = dict(zip(_WORKER, self._call("get_worker", checksum(worker)), strict=True))
        raw["determinism_class"] = bytes(raw["determinism_class"])
        raw["coordinator"] = checksum(raw["coordinator"])
        raw["status"] = WORKER_STATUS.get(int(raw["status"]), str(raw["status"]))
        return WorkerInfo(worker=checksum(worker), **raw)

    def get_coordinator(self, enclave: str) -> CoordinatorInfo:
        """Raises :class:`~databright.errors.ContractNotFoundError` for an unknown enclave."""
        raw = dict(
            zip(_COORDINATOR, self._call("get_coordinator", checksum(enclave)), strict=True)
        )
        raw["kind"] = COORDINATOR_KIND.get(int(raw["kind"]), str(raw["kind"]))
        return CoordinatorInfo(enclave=checksum(enclave), **raw)

    def get_job(self, job_id: int) -> JobInfo:
        """Raises :class:`~databright.errors.ContractNotFoundError` for an unknown id."""
        raw = dict(zip(_JOB, self._call("get_job", int(job_id)), strict=True))
        raw["program_digest"] = bytes(raw["program_digest"])
        raw["status"] = JOB_STATUS.get(int(raw["status"]), str(raw["status"]))
        return JobInfo(job_id=int(job_id), **raw)

    def domain_separator(self) -> bytes:
        return bytes(self._call("domain_separator"))

    def receipt_digest(self, receipt_part: Receipt) -> bytes:
        """The digest the contract computes (must equal :func:`receipt_digest`)."""
        r = receipt_part
        return bytes(
            self._call(
                "receipt_digest",
                int(r.job_id),
                int(r.part),
                list(r.workers),
                [int(f) for f in r.fees],
                list(r.liars),
                as_bytes32(r.receipt_hash),
                bool(r.final),
            )
        )
