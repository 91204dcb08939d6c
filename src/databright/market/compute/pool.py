"""The worker pool as the chain records it, and the embedded executor's local identities.

A coordinator schedules only workers registered *for it* (``register_worker(..., coordinator)``),
active (not leaving, not banned). Local identities are registered, staked and (on a dev chain)
funded on first use; a real network needs them funded by the operator first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from databright.errors import UsageError
from databright.market.compute.identities import local_worker
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

__all__ = ["DEFAULT_MIN_FEE", "PoolWorker", "ensure_local_pool", "pool_of", "workers_of"]

DEFAULT_MIN_FEE = 10**12  # wei per task a local worker asks (0.000001 ETH)
_GAS_FUNDS = 10**17  # wei a fresh local identity gets on a dev chain for gas


@dataclass(frozen=True)
class PoolWorker:
    """A worker as the chain has it: ``status`` active|leaving|banned; ``determinism_class`` hex."""

    account: str
    coordinator: str
    stake: int
    min_fee: int
    determinism_class: str
    status: str

    def to_dict(self) -> dict[str, object]:
        return {"account": self.account, "coordinator": self.coordinator,
                "stake_wei": str(self.stake), "min_fee_wei": str(self.min_fee),
                "determinism_class": self.determinism_class, "status": self.status}


def workers_of(dep: Deployment, coordinator: str | None = None) -> list[PoolWorker]:
    """Every worker that ever registered (for ``coordinator`` when given), as it stands now."""
    seen: dict[str, None] = {}
    for log in dep.compute.logs("WorkerRegistered"):
        args = log["args"]
        if coordinator is None or args["coordinator"].lower() == coordinator.lower():
            seen[args["worker"]] = None
    out = []
    for account in seen:
        w = dep.compute.get_worker(account)
        if coordinator is not None and w.coordinator.lower() != coordinator.lower():
            continue  # it left and now serves another coordinator
        out.append(PoolWorker(w.worker, w.coordinator, w.stake, w.min_fee,
                              "0x" + w.determinism_class.hex(), w.status))
    return out


def pool_of(dep: Deployment, coordinator: str) -> list[PoolWorker]:
    """The workers ``coordinator`` may schedule: registered for it and active."""
    return [w for w in workers_of(dep, coordinator) if w.status == "active"]


def ensure_local_pool(
    dep: Deployment,
    operator: Signer,
    coordinator: str,
    count: int,
    determinism_class: str,
    *,
    min_fee: int = DEFAULT_MIN_FEE,
) -> list[Signer]:
    """The first ``count`` local identities, each registered and staked for ``coordinator``.

    On a dev chain the faucet funds them; on a real network ``operator`` funds each with the
    market's minimum stake plus gas money (the operator's ether becomes their stake, returned
    to them, not to the operator, when they leave).

    Identities that were slashed (banned), are leaving or serve another coordinator are
    skipped: the pool is the first ``count`` usable ones.

    Raises:
        UsageError: ``count`` below 3.
    """
    if count < 3:
        raise UsageError("a TMR job needs at least 3 workers")
    stake = dep.compute.min_stake()
    signers: list[Signer] = []
    index = 0
    while len(signers) < count:
        signer = local_worker(dep.home, index)
        index += 1
        w = dep.compute.get_worker(signer.address)
        if w.status == "banned" or (w.status != "none" and
                                    w.coordinator.lower() != coordinator.lower()):
            continue  # slashed, or serving another coordinator: the next identity is fresh
        signers.append(signer)
        if w.status == "active":
            continue
        if w.status == "leaving":
            signers.pop()
            continue
        need = stake + _GAS_FUNDS - dep.chain.balance(signer.address)
        if need > 0:
            if dep.chain.supports_time_travel:
                dep.chain.fund(signer.address, need)
            else:
                dep.chain.send({"to": signer.address}, operator, value=need, gas=21_000)
        dep.compute.register_worker(signer, min_fee, determinism_class, coordinator, stake)
    return signers
