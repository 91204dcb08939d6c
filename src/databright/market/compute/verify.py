"""``databright receipt verify``: check a receipt against its signature, the chain and the
coordinator's attestation under a policy.

Every check is reported (name, ok, detail) so a user sees *what* fails, not only that something
does; the receipt verifies when all pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from databright.errors import ContractNotFoundError, UsageError
from databright.market.compute.coordinator import registration_nonce
from databright.market.compute.receipts import MAX_RECEIPT_BYTES, ReceiptFile
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.attestation import Policy
    from databright.market.compute.options import JobOptions

__all__ = ["ReceiptCheck", "load_policy", "verification_check", "verify_evidence_cid",
           "verify_receipt"]


@dataclass(frozen=True)
class ReceiptCheck:
    """The outcome: ``checks`` is a list of ``{"check", "ok", "detail"}``."""

    path: str
    job_id: int | None
    ok: bool
    checks: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "job_id": self.job_id, "ok": self.ok,
                "checks": list(self.checks)}


def load_policy(path: str | Path | None, *, allow_simulated: bool = False) -> Policy:
    """The policy in ``path`` (JSON, see docs/attestation.md), or the default one; with
    ``allow_simulated`` the policy also accepts software (simulated) evidence."""
    import dataclasses

    from databright.attestation import Policy

    if path is None:
        policy = Policy(allowed_measurements=("*",), allowed_signers=("*",))
    else:
        try:
            policy = Policy.from_json(Path(path).read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read the policy {path}: {exc.strerror}") from None
    if allow_simulated and not policy.allow_simulated:
        policy = dataclasses.replace(policy, allow_simulated=True)
    return policy


def verify_evidence_cid(
    dep: Deployment, enclave: str, policy: Policy, *, nonce: bytes | None = None,
    raw: bytes | None = None, now: int | None = None,
) -> tuple[bool, str, str | None]:
    """Check the evidence a coordinator registered on chain (or ``raw``, fresh evidence over
    ``nonce``): ``(ok, detail, kind)``."""
    from databright.attestation import verify_evidence

    if nonce is None:
        nonce = registration_nonce(dep)
    if raw is None:
        try:
            info = dep.compute.get_coordinator(enclave)
        except ContractNotFoundError:
            return False, f"{enclave} is not a registered coordinator", None
        if not dep.store.has(info.evidence_cid):
            return False, f"evidence {info.evidence_cid} is not in this home's store", info.kind
        raw = dep.store.get(info.evidence_cid)  # the store verifies the CID
    verdict = verify_evidence(raw, policy, enclave_address=enclave, nonce=nonce,
                              now=int(time.time()) if now is None else now)
    if verdict.ok:
        claims = verdict.claims
        detail = (f"{verdict.kind} evidence accepted: measurement {claims.measurement[:16]}…, "
                  f"TCB {claims.tcb_status}" if claims else f"{verdict.kind} evidence accepted")
        return True, detail, verdict.kind
    return False, "; ".join(verdict.reasons), verdict.kind


def verify_receipt(dep: Deployment, path: str | Path, policy: Policy) -> ReceiptCheck:
    """Verify the receipt file at ``path`` (see the module docstring)."""
    from databright.chain.compute_market import recover_receipt

    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> bool:
        checks.append({"check": name, "ok": bool(ok), "detail": detail})
        return ok

    p = Path(path)
    try:
        if p.stat().st_size > MAX_RECEIPT_BYTES:
            raise UsageError(f"{p} is larger than a receipt can be ({MAX_RECEIPT_BYTES} bytes)")
        text = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror}") from None
    try:
        receipt = ReceiptFile.loads(text)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an altered body is a failed check, not a crash
        check("hash", False, str(exc))
        return ReceiptCheck(str(p), None, False, tuple(checks))
    body = receipt.body
    job_id = int(body["job_id"])
    check("hash", True, f"the body hashes to {receipt.receipt_hash}")
    # signatures
    signers = set()
    bad = []
    for r, sig in receipt.receipts():
        try:
            signers.add(recover_receipt(r, sig).lower())
        except UsageError as exc:
            bad.append(f"part {r.part}: {exc}")
    numbers = [int(part["part"]) for part in receipt.parts]
    finals = [bool(part["final"]) for part in receipt.parts]
    shape_ok = numbers == list(range(len(numbers))) and finals == [False] * (len(finals) - 1) + [True]
    check("signature", not bad and signers == {body["coordinator"].lower()} and shape_ok,
          "; ".join(bad) if bad else (
              f"{len(numbers)} part(s) signed by {body['coordinator']}" if signers ==
              {body["coordinator"].lower()} and shape_ok else
              f"parts signed by {sorted(signers)}, numbered {numbers}, final {finals}"))
    paid: dict[str, int] = {}
    for part in receipt.parts:
        for w, fee in zip(part["workers"], part["fees"], strict=True):
            paid[w.lower()] = paid.get(w.lower(), 0) + int(fee)
    listed = {w["account"].lower(): int(w["fee"]) for w in body["workers"] if int(w["fee"]) > 0}
    liars_parts = sorted(a.lower() for part in receipt.parts for a in part["liars"])
    check("payouts", paid == listed and liars_parts == sorted(a.lower() for a in body["liars"]),
          f"{len(listed)} worker(s) paid {sum(listed.values())} wei, {len(body['liars'])} liar(s)")
    # the chain's record
    chain_ok = int(body["chain_id"]) == dep.compute.chain_id() and \
        body["market"].lower() == dep.compute.address.lower()
    if check("chain", chain_ok, f"chain {body['chain_id']}, market {body['market']}" if chain_ok
             else f"the receipt is for chain {body['chain_id']} market {body['market']}, this "
                  f"home is chain {dep.compute.chain_id()} market {dep.compute.address}"):
        try:
            job = dep.compute.get_job(job_id)
        except ContractNotFoundError:
            check("job", False, f"job #{job_id} does not exist on chain")
        else:
            hashes = [("0x" + bytes(log["args"]["receipt_hash"]).hex(), int(log["args"]["part"]))
                      for log in dep.compute.logs("PartSettled")
                      if int(log["args"]["job_id"]) == job_id]
            problems = []
            if job.coordinator.lower() != body["coordinator"].lower():
                problems.append(f"coordinator is {job.coordinator}")
            if "0x" + job.program_digest.hex() != body["program_digest"]:
                problems.append("program digest differs")
            if job.dataset_id != int(body["dataset_id"]):
                problems.append(f"dataset is #{job.dataset_id}")
            if job.spec_cid != body.get("spec_cid"):
                problems.append("spec CID differs")
            if job.status != "final":
                problems.append(f"job is {job.status}")
            if body.get("kind") == "predict":  # the escrow's terms and what was delivered
                problems += _prediction_problems(dep, job_id, body)
            if sorted(hashes, key=lambda h: h[1]) != [(receipt.receipt_hash, n) for n in numbers]:
                problems.append(f"settled parts {hashes} are not this receipt's")
            check("job", not problems, "; ".join(problems) or
                  f"job #{job_id} settled in {len(numbers)} part(s) with this receipt's hash")
    options = None
    if isinstance(body.get("spec_cid"), str) and dep.store.has(body["spec_cid"]):
        from databright.market.compute.execute import read_spec
        from databright.market.compute.predict_job import read_predict_spec

        read = read_predict_spec if body.get("kind") == "predict" else read_spec
        try:
            options = read(dep.store.get(body["spec_cid"])).options
        except UsageError:
            options = None
    check("verification", *verification_check(body, options))
    ok, detail, _ = verify_evidence_cid(dep, body["coordinator"], policy)
    check("attestation", ok, detail)
    return ReceiptCheck(str(p), job_id, all(c["ok"] for c in checks), tuple(checks))


def verification_check(body: Mapping[str, Any], options: JobOptions | None) -> tuple[bool, str]:
    """``(ok, detail)``: the receipt's verification mode is the one the job's spec asked for,
    and for ``spot`` the revealed seed opens the commitment published before the first task
    and chose exactly the segments the receipt says were checked, at the job's fraction."""
    from databright.compute.spot_choice import commitment, is_checked

    v = body.get("verification", {"mode": "tmr"})  # receipts before the field were all TMR
    mode = v.get("mode") if isinstance(v, Mapping) else None
    if options is not None and mode != options.verification:
        return False, f"the job asked for {options.verification}, the receipt says {mode!r:.40}"
    if mode == "tmr":
        return True, "tmr: three workers per task, compared by sha256"
    if mode != "spot":
        return False, f"unknown verification mode {mode!r:.40}"
    try:
        seed, ppm = bytes.fromhex(v["seed"]), int(v["ppm"])
        decided, checked = [str(x) for x in v["decided"]], [str(x) for x in v["checked"]]
        opens = commitment(seed) == v["seed_commitment"]
        chosen = [label for label in decided if is_checked(seed, label, ppm)]
    except (KeyError, TypeError, ValueError) as exc:
        return False, f"the spot record is malformed: {exc!s:.80}"
    if options is not None and ppm != options.spot_ppm:
        return False, f"the receipt checked {ppm} ppm, the job asked for {options.spot_ppm}"
    if not opens:
        return False, "the revealed seed does not open the published seed commitment"
    prefix = f"job-{int(body['job_id'])}:"
    if len(set(decided)) != len(decided) or not all(x.startswith(prefix) for x in decided):
        return False, "the decided segments repeat or are not this job's"
    if chosen != checked:
        return False, (f"the seed chooses {len(chosen)} of {len(decided)} segments, the "
                       f"receipt says {len(checked)} were checked")
    return True, (f"spot at p = {ppm / 1_000_000:g}: the seed opens its commitment and chose "
                  f"the {len(checked)} of {len(decided)} segments checked; "
                  f"{len(v.get('caught', []))} lie(s) caught, {v.get('rollbacks', 0)} rollback(s)")


def _prediction_problems(dep: Deployment, job_id: int, body: dict[str, Any]) -> list[str]:
    """Where a prediction receipt and the chain's record of its job disagree."""
    from databright.errors import DataBrightError

    try:
        p = dep.compute.get_prediction_job(job_id)
    except DataBrightError:
        return ["the chain's job is not a prediction job"]
    out = []
    if p.model_id != body.get("model_id") or p.count != body.get("count"):
        out.append(f"the escrow is for {p.count} predictions of model #{p.model_id}")
    if p.delivered != body.get("delivered"):
        out.append(f"the chain settled {p.delivered} predictions delivered")
    return out
