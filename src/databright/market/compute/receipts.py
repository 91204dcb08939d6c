"""A job's receipt: what the coordinator did, signed by its enclave key, settled on chain.

The receipt *body* says what ran (program digest, dataset root and snapshot, model digests in and
out, the head of the hash chain over every task's TMR verdict) and who did it (per worker: tasks,
exposure, payout; the liars). Its sha256 over canonical JSON is the ``receipt_hash`` every signed
part carries on chain, so the chain pins the whole body. A body names any number of workers; it
is settled in parts of at most 64 workers and 64 liars (the contract's bound), numbered from 0,
the last one ``final``. A prediction job's body (``kind`` ``predict``) carries ``delivered``: its
final part is an EIP-712 ``PredictionReceipt`` naming it, which ``settle_prediction`` applies.

The receipt *file* is ``{"body": …, "receipt_hash": …, "parts": [{part, workers, fees, liars,
final, signature}, …]}``: everything :func:`verify_receipt_file` needs besides the chain and the
attestation evidence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.chain.compute_market import ComputeMarket

__all__ = ["MAX_RECEIPT_BYTES", "ReceiptFile", "canonical", "receipt_hash", "split_parts"]

RECEIPT_VERSION = 1
MAX_RECEIPT_BYTES = 16 * 1024 * 1024  # a receipt file read from disk is untrusted input
_MAX_PART = 64


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def receipt_hash(body: Mapping[str, Any]) -> str:
    """The 0x sha256 of a receipt body's canonical JSON (the on-chain ``receipt_hash``)."""
    return "0x" + hashlib.sha256(canonical(dict(body))).hexdigest()


def split_parts(
    payouts: Mapping[str, int], liars: Sequence[str]
) -> list[tuple[dict[str, int], list[str]]]:
    """``(payouts, liars)`` per part, at most 64 of each per part, at least one part.

    Workers and liars are taken in ascending address order, so the split is deterministic."""
    workers = sorted(payouts, key=lambda a: int(a, 16))
    bad = sorted(set(liars), key=lambda a: int(a, 16))
    count = max(1, -(-len(workers) // _MAX_PART), -(-len(bad) // _MAX_PART))
    return [
        ({w: int(payouts[w]) for w in workers[i * _MAX_PART:(i + 1) * _MAX_PART]},
         bad[i * _MAX_PART:(i + 1) * _MAX_PART])
        for i in range(count)
    ]


@dataclass(frozen=True)
class ReceiptFile:
    """A signed receipt: its body, hash and signed parts."""

    body: dict[str, Any]
    receipt_hash: str
    parts: tuple[dict[str, Any], ...]

    @classmethod
    def sign(cls, market: ComputeMarket, body: Mapping[str, Any], enclave: Signer) -> ReceiptFile:
        """Sign every part of ``body`` (its ``workers`` payouts and ``liars``) with ``enclave``."""
        from databright.chain.compute_market import sign_receipt

        body = dict(body)
        digest = receipt_hash(body)
        payouts = {w["account"]: int(w["fee"]) for w in body["workers"] if int(w["fee"]) > 0}
        pieces = split_parts(payouts, body["liars"])
        parts = []
        for number, (pay, bad) in enumerate(pieces):
            last = number == len(pieces) - 1
            r: Any = market.receipt(int(body["job_id"]), number, pay, bad, digest, final=last)
            if last and body.get("kind") == "predict":
                r = market.prediction_receipt(int(body["job_id"]), number, pay, bad, digest,
                                              int(body["delivered"]))
            parts.append(_part_json(r, sign_receipt(r, enclave)))
        return cls(body, digest, tuple(parts))

    def receipts(self) -> list[tuple[Any, bytes]]:
        """The parts as the contract takes them (with their signatures): ``Receipt``s, and
        for a prediction job a ``PredictionReceipt`` last (``settle_prediction``)."""
        from databright.chain.compute_market import Receipt
        from databright.chain.compute_predictions import PredictionReceipt

        out = []
        for p in self.parts:
            args = (int(self.body["chain_id"]), self.body["market"], int(self.body["job_id"]),
                    int(p["part"]), dict(zip(p["workers"], (int(f) for f in p["fees"]),
                                             strict=True)),
                    p["liars"], self.receipt_hash)
            r: Any = Receipt.of(*args, bool(p["final"]))
            if p["final"] and self.body.get("kind") == "predict":
                r = PredictionReceipt.of(*args, _delivered(self.body))
            out.append((r, bytes.fromhex(p["signature"].removeprefix("0x"))))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"body": self.body, "receipt_hash": self.receipt_hash, "parts": list(self.parts)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str | bytes) -> ReceiptFile:
        """Parse an (untrusted) receipt file.

        Raises:
            UsageError: not a receipt file (with the first thing wrong).
            IntegrityError: its ``receipt_hash`` is not the hash of its body.
        """
        if len(text) > MAX_RECEIPT_BYTES:
            raise UsageError(f"a receipt file is at most {MAX_RECEIPT_BYTES} bytes")
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"not a receipt file: {exc}") from None
        if not isinstance(raw, dict) or set(raw) != {"body", "receipt_hash", "parts"}:
            raise UsageError("not a receipt file: expected body, receipt_hash and parts")
        body, digest, parts = raw["body"], raw["receipt_hash"], raw["parts"]
        if not isinstance(body, dict) or body.get("version") != RECEIPT_VERSION:
            raise UsageError(f"not a version {RECEIPT_VERSION} receipt body")
        for key, kind in _BODY_FIELDS.items():
            if not isinstance(body.get(key), kind) or isinstance(body.get(key), bool) and kind is int:
                raise UsageError(f"receipt body field {key!r} is missing or not {kind.__name__}")
        if not isinstance(parts, list) or not parts:
            raise UsageError("a receipt has at least one part")
        for p in parts:
            _check_part(p)
        if not isinstance(digest, str) or receipt_hash(body) != digest:
            raise IntegrityError("the receipt's hash is not the hash of its body: it was altered")
        return cls(body, digest, tuple(parts))


_BODY_FIELDS: dict[str, type] = {
    "chain_id": int, "market": str, "job_id": int, "coordinator": str, "kind": str,
    "program_digest": str, "dataset_id": int, "dataset_root": str, "snapshot": int,
    "verdicts_head": str, "tasks": int, "workers": list, "liars": list, "attestation": dict,
}


def _delivered(body: Mapping[str, Any]) -> int:
    delivered = body.get("delivered")
    if not isinstance(delivered, int) or isinstance(delivered, bool) or delivered < 0:
        raise UsageError("a prediction receipt's body names the predictions delivered")
    return delivered


def _part_json(r: Any, signature: bytes) -> dict[str, Any]:
    return {"part": r.part, "workers": list(r.workers), "fees": [str(f) for f in r.fees],
            "liars": list(r.liars), "final": r.final, "signature": "0x" + signature.hex()}


def _check_part(p: Any) -> None:
    if not isinstance(p, dict) or set(p) != {"part", "workers", "fees", "liars", "final",
                                             "signature"}:
        raise UsageError("a receipt part has exactly part, workers, fees, liars, final, signature")
    ok = (isinstance(p["part"], int) and isinstance(p["final"], bool)
          and isinstance(p["workers"], list) and isinstance(p["fees"], list)
          and isinstance(p["liars"], list) and isinstance(p["signature"], str)
          and len(p["workers"]) == len(p["fees"])
          and all(isinstance(f, str) and f.isdigit() for f in p["fees"]))
    if not ok:
        raise UsageError(f"receipt part {p.get('part')!r} is malformed")
