"""The model registry from the market's side: register a model, submit and attest checkpoints.

Registering a model and submitting each checkpoint pay the dataset's training fee, which the
registry forwards to the dataset's ShareToken as a dividend. A checkpoint is *self-reported*
until a signer the dataset trusts (its evaluator, or an attestor the registry's owner trusts)
attests its metric; only attested checkpoints can become a model's best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from databright.errors import IntegrityError, NotFoundError, PermissionDenied, UsageError
from databright.market.context import Deployment
from databright.market.datasets import dataset_id

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.chain.model_registry import CheckpointInfo, ModelInfo

ZERO = "0x" + "00" * 20
BPS = 10_000


@dataclass(frozen=True)
class CheckpointView:
    """One checkpoint as the registry keeps it; ``attestor`` is None when self-reported."""

    model_id: int
    checkpoint: int
    cid: str
    sha256: str
    entries: int
    metric_bps: int
    attestor: str | None
    submitted_at: int
    best: bool

    @property
    def attested(self) -> bool:
        return self.attestor is not None


@dataclass(frozen=True)
class ModelView:
    """A registered model and its best checkpoint (None until one is attested)."""

    model_id: int
    name: str
    owner: str
    dataset_id: int
    dataset: str
    program_digest: str
    price_per_prediction: int
    royalty_bps: int
    checkpoint_count: int
    best: CheckpointView | None


@dataclass(frozen=True)
class Attested:
    """An attestation delivered on chain: the evaluator's own measurement of a checkpoint."""

    model_id: int
    checkpoint: int
    claimed_bps: int
    metric_bps: int
    attestor: str
    best: bool
    validation_items: int


def checkpoint_view(cp: CheckpointInfo, best_number: int) -> CheckpointView:
    return CheckpointView(
        model_id=cp.model_id, checkpoint=cp.checkpoint, cid=cp.cid, sha256=cp.file_sha256.hex(),
        entries=cp.entries, metric_bps=cp.metric_bps,
        attestor=cp.attestor if cp.attested else None, submitted_at=cp.submitted_at,
        best=cp.checkpoint == best_number,
    )


def _model(dep: Deployment, model_id: int) -> ModelInfo:
    from databright.errors import ContractNotFoundError

    if model_id < 1:
        raise UsageError(f"model ids start at 1, not {model_id}")
    try:
        return dep.registry.get_model(model_id)
    except ContractNotFoundError:
        count = dep.registry.model_count()
        hint = f" (models 1..{count} exist)" if count else " (none is registered yet)"
        raise NotFoundError(f"no model #{model_id}{hint}") from None


def get_model(dep: Deployment, model_id: int) -> ModelView:
    """A model read from the chain."""
    m = _model(dep, model_id)
    best = None
    if m.best_checkpoint:
        best = checkpoint_view(dep.registry.get_checkpoint(model_id, m.best_checkpoint),
                               m.best_checkpoint)
    return ModelView(
        model_id=m.model_id, name=m.name, owner=m.owner, dataset_id=m.dataset_id,
        dataset=dep.market.get_dataset(m.dataset_id).name,
        program_digest=m.program_digest.hex(), price_per_prediction=m.price_per_prediction,
        royalty_bps=m.royalty_bps, checkpoint_count=m.checkpoint_count, best=best,
    )


def get_checkpoint(dep: Deployment, model_id: int, checkpoint: int | None = None) -> CheckpointView:
    """Checkpoint ``checkpoint`` of a model (default: its latest)."""
    m = _model(dep, model_id)
    if m.checkpoint_count == 0:
        raise NotFoundError(f"model #{model_id} has no checkpoint yet: train one with "
                            f"`databright train {m.dataset_id} --model {model_id}`")
    number = m.checkpoint_count if checkpoint is None else checkpoint
    if not 1 <= number <= m.checkpoint_count:
        raise NotFoundError(f"model #{model_id} has checkpoints 1..{m.checkpoint_count}, "
                            f"not {number}")
    return checkpoint_view(dep.registry.get_checkpoint(model_id, number), m.best_checkpoint)


def register_model(
    dep: Deployment,
    sender: Signer,
    dataset: str,
    *,
    name: str,
    program_digest: str,
    price_per_prediction: int,
    royalty_bps: int | None = None,
) -> ModelView:
    """Register a model of ``dataset`` paying its training fee (royalty default: the floor).

    Raises:
        UsageError: a royalty below the dataset's floor or above 100 %, a bad name or digest.
    """
    ds_id = dataset_id(dep, dataset)
    info = dep.market.get_dataset(ds_id)
    royalty = info.min_royalty_bps if royalty_bps is None else int(royalty_bps)
    if not info.min_royalty_bps <= royalty <= BPS:
        raise UsageError(f"the royalty must be between {info.min_royalty_bps / 100:g}% "
                         f"(the floor of {info.name}) and 100%, not {royalty / 100:g}%")
    if not 0 < len(name.encode()) <= 64:
        raise UsageError("a model name is 1 to 64 bytes of UTF-8")
    if price_per_prediction < 0:
        raise UsageError("the price per prediction cannot be negative")
    digest = _digest_bytes(program_digest)
    model_id, _ = dep.registry.register(sender, ds_id, name, digest, int(price_per_prediction),
                                        royalty, value=info.training_fee)
    return get_model(dep, model_id)


def submit_checkpoint(
    dep: Deployment,
    sender: Signer,
    model_id: int,
    *,
    cid: str,
    sha256: str,
    entries: int,
    metric_bps: int,
    signature: bytes = b"",
) -> CheckpointView:
    """Record a checkpoint of the sender's model, paying the training fee; self-reported unless
    ``signature`` is a trusted attestation of exactly these fields."""
    m = _model(dep, model_id)
    if m.owner.lower() != sender.address.lower():
        raise PermissionDenied("registry: only model owner",
                               f"model #{model_id} belongs to {m.owner}, not {sender.address}")
    info = dep.market.get_dataset(m.dataset_id)
    if not 1 <= entries <= info.entry_count:
        raise UsageError(f"the snapshot must be 1..{info.entry_count} entries of {info.name}, "
                         f"not {entries}")
    cp, _ = dep.registry.submit_checkpoint(sender, model_id, cid, _digest_bytes(sha256), entries,
                                           metric_bps, signature, value=info.training_fee)
    return checkpoint_view(cp, dep.registry.get_model(model_id).best_checkpoint)


def trusted_signer(dep: Deployment, model_id: int, signer: str) -> bool:
    """Whether ``signer``'s attestations count for ``model_id`` (its dataset's evaluator or an
    attestor the registry trusts)."""
    m = _model(dep, model_id)
    evaluator = dep.market.get_dataset(m.dataset_id).evaluator
    return evaluator.lower() == signer.lower() or dep.registry.is_trusted_attestor(signer)


def attestation_signature(
    dep: Deployment, signer: Signer, model_id: int, sha256: str, entries: int, metric_bps: int
) -> bytes:
    """``signer``'s EIP-712 attestation of a checkpoint (for ``submit_checkpoint``/``attest``)."""
    from databright.chain.model_registry import sign

    attestation = dep.registry.attestation(model_id, _digest_bytes(sha256), entries, metric_bps)
    return sign(attestation, signer)


def attest_checkpoint(
    dep: Deployment, sender: Signer, model_id: int, checkpoint: int | None = None,
    *, progress: bool = False,
) -> Attested:
    """Measure a self-reported checkpoint on the dataset's validation split and deliver the
    sender's attestation of what *it* measured (not what the owner claimed).

    Raises:
        PermissionDenied: the sender is not a signer the dataset trusts.
        IntegrityError: the stored file does not match the chain's sha256 or snapshot.
        UsageError: the checkpoint is attested already.
    """
    from databright.market.model_data import load_stored_checkpoint, validation_records

    if not trusted_signer(dep, model_id, sender.address):
        raise PermissionDenied("registry: untrusted attestor",
                               f"{sender.address} is neither the evaluator of model "
                               f"#{model_id}'s dataset nor a trusted attestor")
    cp = get_checkpoint(dep, model_id, checkpoint)
    if cp.attested:
        raise UsageError(f"checkpoint {cp.checkpoint} of model #{model_id} is attested already "
                         f"({cp.metric_bps / 100:.2f}% by {cp.attestor})")
    stored = load_stored_checkpoint(dep, cp.cid, cp.sha256)
    if stored.snapshot != cp.entries:
        raise IntegrityError(f"the checkpoint file says it was trained on {stored.snapshot} "
                             f"entries, the registry says {cp.entries}")
    from databright.training import get_family

    m = dep.registry.get_model(model_id)
    val = validation_records(dep, m.dataset_id)
    measured = get_family(stored.family).evaluate(stored, val, cache=_cache(dep))
    signature = attestation_signature(dep, sender, model_id, cp.sha256, cp.entries,
                                      measured.accuracy_bps)
    after, _ = dep.registry.attest(sender, model_id, cp.checkpoint, measured.accuracy_bps,
                                   signature)
    best = dep.registry.get_model(model_id).best_checkpoint == cp.checkpoint
    return Attested(model_id=model_id, checkpoint=cp.checkpoint, claimed_bps=cp.metric_bps,
                    metric_bps=after.metric_bps, attestor=sender.address, best=best,
                    validation_items=measured.total)


def _cache(dep: Deployment):  # type: ignore[no-untyped-def]
    from databright.training import EmbeddingCache, home_cache_dir

    return EmbeddingCache(home_cache_dir(dep.home))


def _digest_bytes(hex_digest: str) -> bytes:
    raw = hex_digest.removeprefix("0x")
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        raise UsageError(f"not a hex sha256: {hex_digest!r}") from None
    if len(value) != 32 or value == bytes(32):
        raise UsageError(f"a sha256 is 32 non-zero bytes (64 hex digits), got {hex_digest!r}")
    return value
