"""`databright train`: train a model family on a dataset's accepted entries, store the checkpoint,
and register it (or submit it as a new checkpoint of a model), paying the training fee."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from databright.errors import PermissionDenied, UsageError
from databright.market.context import Deployment
from databright.market.datasets import dataset_id
from databright.market.model_data import training_records, validation_records
from databright.market.models import (
    CheckpointView,
    ModelView,
    attestation_signature,
    get_model,
    register_model,
    submit_checkpoint,
    trusted_signer,
)

if TYPE_CHECKING:
    from databright.chain.accounts import Signer
    from databright.training import Progress

DEFAULT_PRICE = 10**15  # 0.001 ETH per prediction


@dataclass(frozen=True)
class Trained:
    """A finished training run and what was recorded on chain (``model`` None if not)."""

    dataset: str
    family: str
    config: dict[str, Any]
    program_digest: str
    snapshot: int
    train_items: int
    validation_items: int
    accuracy_bps: int
    accuracy: float
    epochs: int
    seconds: float
    cid: str
    sha256: str
    fees_paid: int
    model: ModelView | None
    checkpoint: CheckpointView | None


def train_model(
    dep: Deployment,
    sender: Signer | None,
    dataset: str,
    family: str,
    *,
    config: Mapping[str, Any] | None = None,
    snapshot: int | None = None,
    register: bool = False,
    model_id: int | None = None,
    name: str | None = None,
    price_per_prediction: int = DEFAULT_PRICE,
    royalty_bps: int | None = None,
    progress: Progress | None = None,
) -> Trained:
    """Train ``family`` on the first ``snapshot`` entries of ``dataset`` (default: all), measure it
    on the validation split, store the checkpoint; with ``register`` register a new model and
    submit the checkpoint, with ``model_id`` submit it to that model (each pays the training fee).

    A checkpoint submitted by the dataset's evaluator (or a trusted attestor) carries its own
    attestation; anyone else's is self-reported until the evaluator attests it.
    """
    from databright.training import get_family, home_cache_dir, train_dataset

    if register and model_id is not None:
        raise UsageError("give either --register (a new model) or --model ID (a new checkpoint)")
    signing = register or model_id is not None
    if signing and sender is None:
        raise UsageError("registering needs a signing account")
    ds_id = dataset_id(dep, dataset)
    info = dep.market.get_dataset(ds_id)
    target = get_model(dep, model_id) if model_id is not None else None
    if target is not None and sender is not None:
        if target.dataset_id != ds_id:
            raise UsageError(f"model #{target.model_id} is trained on {target.dataset}, "
                             f"not {info.name}")
        if target.owner.lower() != sender.address.lower():
            raise PermissionDenied("registry: only model owner",
                                   f"model #{target.model_id} belongs to {target.owner}")
    get_family(family)  # an unknown family fails before any data is read
    train = training_records(dep, ds_id, snapshot)
    val = validation_records(dep, ds_id)
    entries = info.entry_count if snapshot is None else int(snapshot)
    result = train_dataset(train, val, family, config, store=dep.store, snapshot=entries,
                           cache_dir=home_cache_dir(dep.home), progress=progress)
    ckpt = result.checkpoint
    cid, sha256 = result.cid or "", result.sha256 or ""  # set: a store was given
    if target is not None and target.program_digest != ckpt.program_digest:
        raise UsageError(
            f"model #{target.model_id} was registered for program {target.program_digest[:12]}…, "
            f"this run is program {ckpt.program_digest[:12]}… (another family, config or "
            "training code): register it as a new model with --register"
        )
    model: ModelView | None = None
    checkpoint: CheckpointView | None = None
    fees = 0
    if signing and sender is not None:
        if register:
            model = register_model(
                dep, sender, dataset, name=name or f"{info.name}-{family}",
                program_digest=ckpt.program_digest, price_per_prediction=price_per_prediction,
                royalty_bps=royalty_bps,
            )
            fees += info.training_fee
        elif target is not None:
            model = target
        if model is None:
            raise UsageError("no model to submit the checkpoint to")
        signature = b""
        if trusted_signer(dep, model.model_id, sender.address):
            signature = attestation_signature(dep, sender, model.model_id, sha256,
                                              entries, result.accuracy_bps)
        checkpoint = submit_checkpoint(
            dep, sender, model.model_id, cid=cid, sha256=sha256, entries=entries,
            metric_bps=result.accuracy_bps, signature=signature,
        )
        fees += info.training_fee
        model = get_model(dep, model.model_id)
    return Trained(
        dataset=info.name, family=family, config=dict(ckpt.config),
        program_digest=ckpt.program_digest, snapshot=entries, train_items=len(train),
        validation_items=result.evaluation.total, accuracy_bps=result.accuracy_bps,
        accuracy=result.accuracy, epochs=result.epochs, seconds=round(result.seconds, 3),
        cid=cid, sha256=sha256, fees_paid=fees, model=model, checkpoint=checkpoint,
    )
