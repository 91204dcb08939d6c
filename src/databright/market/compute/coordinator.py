"""The coordinator's identity in a home: its enclave key, its attestation evidence in the store
and its registration in the ComputeMarket.

The embedded default runs the ``software`` backend (``docs/attestation.md``): the evidence
proves only that the holder of this installation's platform key claims the measurement of the
coordinator's code and config. Consumers and workers decide with a policy whether to trust it;
simulated evidence is refused unless the policy says ``allow_simulated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import ContractNotFoundError, UsageError
from databright.home import Home
from databright.market.compute.identities import enclave_key
from databright.market.context import Deployment

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

__all__ = ["Coordinator", "open_coordinator"]

#: REPORTDATA nonce of the evidence registered on chain (a verifier asks a live coordinator for
#: fresh evidence over its own nonce; the registered one binds the key to the code once)
REGISTRATION_NONCE = b"\x00" * 32


@dataclass(frozen=True)
class Coordinator:
    """A coordinator of this home: ``enclave`` signs; ``evidence_cid`` names its evidence."""

    enclave: Signer
    kind: str
    evidence_cid: str
    config: dict[str, Any]
    home: Home

    @property
    def address(self) -> str:
        return str(self.enclave.address)

    def evidence(self, nonce: bytes) -> bytes:
        """Fresh evidence binding the enclave key to ``nonce`` (a verifier's challenge)."""
        from databright.attestation import software

        return software.produce(self.address, nonce, self.config, home=self.home).to_bytes()


def open_coordinator(
    dep: Deployment, operator: Signer, *, config: dict[str, Any] | None = None
) -> Coordinator:
    """This home's coordinator, its evidence stored and registered on chain (``operator`` pays
    the registration once).

    Raises:
        UsageError: the enclave key is registered by another operator with other evidence.
    """
    from databright.attestation import software

    enclave = enclave_key(dep.home)
    cfg = dict(config or {"backend": "software"})
    evidence = software.produce(enclave.address, REGISTRATION_NONCE, cfg, home=dep.home)
    cid = dep.store.put_bytes(evidence.to_bytes())
    try:
        info = dep.compute.get_coordinator(enclave.address)
    except ContractNotFoundError:
        dep.compute.register_coordinator(operator, enclave.address, cid, "software")
    else:
        if info.kind != "software":
            raise UsageError(f"enclave {enclave.address} is registered as {info.kind}")
        cid = info.evidence_cid
    return Coordinator(enclave, "software", cid, cfg, dep.home)
