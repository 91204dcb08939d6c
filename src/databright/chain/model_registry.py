"""Typed wrapper over the ModelRegistry contract, and its EIP-712 attestations and vouchers.

Two halves. The pure-Python half (:class:`Attestation`, :class:`Voucher`, ``sign_*``,
``recover_*``) builds the same EIP-712 typed data the contract hashes (domain
``DataBright ModelRegistry`` / ``1`` / chain id / registry address), so a prediction server can
check a voucher without a node and an evaluator can attest a metric offline. The contract half
(:class:`ModelRegistry`) follows the contract name for name: transactions take the signer
first and return :class:`~databright.chain.wrapper.Sent`; views return frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from databright.chain.eip712 import (  # re-exported: the registry's signing helpers
    DOMAIN_FIELDS,
    Key,
    digest,
    domain,
    recover,
    sign,
    signable,
    signed_by,
)
from databright.chain.pull_payments import PullPayments
from databright.chain.wrapper import Sent, as_bytes32, checksum

DOMAIN_NAME = "DataBright ModelRegistry"
DOMAIN_VERSION = "1"
BPS = 10_000
CHANNEL_STATUS = {1: "open", 2: "reclaiming", 3: "closed", 4: "reclaimed"}
DIVIDEND_SOURCE = {1: "training_fee", 2: "prediction_royalty"}

_ATTESTATION_FIELDS = [
    {"name": "registry", "type": "address"},
    {"name": "modelId", "type": "uint256"},
    {"name": "checkpointSha256", "type": "bytes32"},
    {"name": "datasetId", "type": "uint256"},
    {"name": "entries", "type": "uint256"},
    {"name": "metricBps", "type": "uint256"},
]
_VOUCHER_FIELDS = [
    {"name": "channelId", "type": "uint256"},
    {"name": "amount", "type": "uint256"},
]

__all__ = ["Attestation", "Key", "ModelRegistry", "Voucher", "digest", "recover", "sign",
           "signable", "signed_by", "split_royalty"]


def _domain(chain_id: int, registry: str) -> dict[str, Any]:
    return domain(DOMAIN_NAME, DOMAIN_VERSION, chain_id, registry)


@dataclass(frozen=True)
class Attestation:
    """An evaluator's claim: checkpoint ``checkpoint_sha256`` of ``model_id``, trained on the first
    ``entries`` entries of ``dataset_id``, scores ``metric_bps`` on its validation split."""

    chain_id: int
    registry: str
    model_id: int
    checkpoint_sha256: bytes
    dataset_id: int
    entries: int
    metric_bps: int

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 ``full_message`` (``eth_account.messages.encode_typed_data``)."""
        return {
            "types": {"EIP712Domain": DOMAIN_FIELDS, "Attestation": _ATTESTATION_FIELDS},
            "primaryType": "Attestation",
            "domain": _domain(self.chain_id, self.registry),
            "message": {
                "registry": checksum(self.registry),
                "modelId": int(self.model_id),
                "checkpointSha256": as_bytes32(self.checkpoint_sha256),
                "datasetId": int(self.dataset_id),
                "entries": int(self.entries),
                "metricBps": int(self.metric_bps),
            },
        }


@dataclass(frozen=True)
class Voucher:
    """A payer's promise: channel ``channel_id`` owes the payee ``amount`` wei in total so far."""

    chain_id: int
    registry: str
    channel_id: int
    amount: int

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 ``full_message`` (``eth_account.messages.encode_typed_data``)."""
        return {
            "types": {"EIP712Domain": DOMAIN_FIELDS, "Voucher": _VOUCHER_FIELDS},
            "primaryType": "Voucher",
            "domain": _domain(self.chain_id, self.registry),
            "message": {"channelId": int(self.channel_id), "amount": int(self.amount)},
        }


def split_royalty(amount: int, royalty_bps: int) -> tuple[int, int]:
    """``(royalty, payee_amount)`` of a closed channel: royalty rounded up, as the contract does."""
    royalty = -(-int(amount) * int(royalty_bps) // BPS)
    return royalty, int(amount) - royalty


# -- the contract --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A model as ``get_model`` returns it; ``best_checkpoint`` is 0 until one is attested."""

    model_id: int
    owner: str
    dataset_id: int
    share_token: str
    name: str
    program_digest: bytes
    price_per_prediction: int
    royalty_bps: int
    checkpoint_count: int
    best_checkpoint: int
    best_metric_bps: int


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint; ``attestor`` is the zero address (``attested`` False) when self-reported."""

    model_id: int
    checkpoint: int
    cid: str
    file_sha256: bytes
    entries: int
    metric_bps: int
    attestor: str
    submitted_at: int

    @property
    def attested(self) -> bool:
        return int(self.attestor, 16) != 0


@dataclass(frozen=True)
class ChannelInfo:
    """A payment channel; ``status`` is ``open|reclaiming|closed|reclaimed``."""

    channel_id: int
    payer: str
    model_id: int
    deposit: int
    expiry: int
    reclaim_at: int
    status: str


@dataclass(frozen=True)
class ClosedChannel:
    """How ``close`` split a channel (wei)."""

    amount: int
    royalty: int
    payee_amount: int
    refund: int


_MODEL = tuple(f for f in ModelInfo.__dataclass_fields__ if f != "model_id")
_CHECKPOINT = tuple(
    f for f in CheckpointInfo.__dataclass_fields__ if f not in ("model_id", "checkpoint")
)
_CHANNEL = tuple(f for f in ChannelInfo.__dataclass_fields__ if f != "channel_id")


class ModelRegistry(PullPayments):
    """The ModelRegistry at ``address`` on ``chain``."""

    contract_name = "ModelRegistry"

    # -- EIP-712 helpers bound to this registry -------------------------------------------------
    def attestation(
        self, model_id: int, checkpoint_sha256: bytes | str, entries: int, metric_bps: int
    ) -> Attestation:
        """The attestation of a checkpoint of ``model_id`` (its dataset read from the chain)."""
        return Attestation(
            chain_id=self.chain_id(),
            registry=self.address,
            model_id=int(model_id),
            checkpoint_sha256=as_bytes32(checkpoint_sha256),
            dataset_id=self.get_model(model_id).dataset_id,
            entries=int(entries),
            metric_bps=int(metric_bps),
        )

    def voucher(self, channel_id: int, amount: int) -> Voucher:
        return Voucher(self.chain_id(), self.address, int(channel_id), int(amount))

    # -- transactions ---------------------------------------------------------------------------
    def register(
        self,
        sender: LocalAccount,
        dataset_id: int,
        name: str,
        program_digest: bytes | str,
        price_per_prediction: int,
        royalty_bps: int,
        value: int,
    ) -> Sent[int]:
        """Register a model paying ``value`` (must be the training fee); value: the model id."""
        receipt = self._send(
            "register",
            sender,
            int(dataset_id),
            name,
            as_bytes32(program_digest),
            int(price_per_prediction),
            int(royalty_bps),
            value=int(value),
        )
        return Sent(int(self._event(receipt, "ModelRegistered")["model_id"]), receipt)

    def submit_checkpoint(
        self,
        sender: LocalAccount,
        model_id: int,
        cid: str,
        file_sha256: bytes | str,
        entries: int,
        metric_bps: int,
        signature: bytes,
        value: int,
    ) -> Sent[CheckpointInfo]:
        """Record a checkpoint (``signature`` may be ``b""``); value: the stored checkpoint."""
        receipt = self._send(
            "submit_checkpoint",
            sender,
            int(model_id),
            cid,
            as_bytes32(file_sha256),
            int(entries),
            int(metric_bps),
            bytes(signature),
            value=int(value),
        )
        number = int(self._event(receipt, "CheckpointSubmitted")["checkpoint"])
        return Sent(self.get_checkpoint(model_id, number), receipt)

    def attest(
        self, sender: LocalAccount, model_id: int, checkpoint: int, metric_bps: int,
        signature: bytes,
    ) -> Sent[CheckpointInfo]:
        """Deliver a trusted signer's attestation of a self-reported checkpoint (anyone may
        send it); value: the checkpoint as now stored."""
        receipt = self._send(
            "attest", sender, int(model_id), int(checkpoint), int(metric_bps), bytes(signature)
        )
        return Sent(self.get_checkpoint(model_id, checkpoint), receipt)

    def open_channel(
        self, sender: LocalAccount, model_id: int, timeout: int, deposit: int
    ) -> Sent[int]:
        """Deposit ``deposit`` wei for ``model_id``'s predictions; value: the channel id."""
        receipt = self._send("open_channel", sender, int(model_id), int(timeout), value=deposit)
        return Sent(int(self._event(receipt, "ChannelOpened")["channel_id"]), receipt)

    def top_up(self, sender: LocalAccount, channel_id: int, value: int) -> Sent[int]:
        receipt = self._send("top_up", sender, int(channel_id), value=int(value))
        return Sent(int(self._event(receipt, "ChannelToppedUp")["deposit"]), receipt)

    def close(
        self, sender: LocalAccount, channel_id: int, amount: int, signature: bytes
    ) -> Sent[ClosedChannel]:
        receipt = self._send("close", sender, int(channel_id), int(amount), bytes(signature))
        args = self._event(receipt, "ChannelClosed")
        return Sent(
            ClosedChannel(
                int(args["amount"]),
                int(args["royalty"]),
                int(args["payee_amount"]),
                int(args["refund"]),
            ),
            receipt,
        )

    def start_reclaim(self, sender: LocalAccount, channel_id: int) -> Sent[int]:
        """value: the time from which ``reclaim`` is allowed."""
        receipt = self._send("start_reclaim", sender, int(channel_id))
        return Sent(int(self._event(receipt, "ReclaimStarted")["reclaim_at"]), receipt)

    def reclaim(self, sender: LocalAccount, channel_id: int) -> Sent[int]:
        receipt = self._send("reclaim", sender, int(channel_id))
        return Sent(int(self._event(receipt, "ChannelReclaimed")["refund"]), receipt)

    def set_attestor(self, sender: LocalAccount, attestor: str, trusted: bool) -> Sent[bool]:
        receipt = self._send("set_attestor", sender, checksum(attestor), bool(trusted))
        return Sent(bool(self._event(receipt, "AttestorSet")["trusted"]), receipt)

    # -- views ----------------------------------------------------------------------------------
    def challenge_period(self) -> int:
        return int(self._call("challenge_period"))

    def model_count(self) -> int:
        return int(self._call("model_count"))

    def channel_count(self) -> int:
        return int(self._call("channel_count"))

    def is_trusted_attestor(self, account: str) -> bool:
        return bool(self._call("is_trusted_attestor", checksum(account)))

    def get_model(self, model_id: int) -> ModelInfo:
        """Raises :class:`~databright.errors.ContractNotFoundError` for an unknown id."""
        raw = dict(zip(_MODEL, self._call("get_model", int(model_id)), strict=True))
        raw["program_digest"] = bytes(raw["program_digest"])
        return ModelInfo(model_id=int(model_id), **raw)

    def get_checkpoint(self, model_id: int, checkpoint: int) -> CheckpointInfo:
        raw = dict(
            zip(
                _CHECKPOINT,
                self._call("get_checkpoint", int(model_id), int(checkpoint)),
                strict=True,
            )
        )
        raw["file_sha256"] = bytes(raw["file_sha256"])
        return CheckpointInfo(model_id=int(model_id), checkpoint=int(checkpoint), **raw)

    def best_checkpoint(self, model_id: int) -> CheckpointInfo | None:
        """The attested best checkpoint, or ``None`` if the model has none yet."""
        best = self.get_model(model_id).best_checkpoint
        return self.get_checkpoint(model_id, best) if best else None

    def get_channel(self, channel_id: int) -> ChannelInfo:
        raw = dict(zip(_CHANNEL, self._call("get_channel", int(channel_id)), strict=True))
        raw["status"] = CHANNEL_STATUS.get(int(raw["status"]), str(raw["status"]))
        return ChannelInfo(channel_id=int(channel_id), **raw)

    def domain_separator(self) -> bytes:
        return bytes(self._call("domain_separator"))

    def attestation_digest(self, attestation: Attestation) -> bytes:
        """The digest the contract computes for ``attestation`` (must equal :func:`digest`)."""
        a = attestation
        return bytes(
            self._call(
                "attestation_digest",
                int(a.model_id),
                as_bytes32(a.checkpoint_sha256),
                int(a.dataset_id),
                int(a.entries),
                int(a.metric_bps),
            )
        )

    def voucher_digest(self, voucher: Voucher) -> bytes:
        return bytes(self._call("voucher_digest", int(voucher.channel_id), int(voucher.amount)))
