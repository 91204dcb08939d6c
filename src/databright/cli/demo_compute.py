"""The demo's compute market: the model is trained by staked workers under triple modular
redundancy; one of them lies, is caught and slashed; the receipt verifies; everyone is paid."""

from __future__ import annotations

from typing import Any

from databright.market.compute.identities import local_workers
from databright.market.compute.train_job import distinct, run_train_job, workers_needed
from databright.market.compute.verify import load_policy, verify_receipt
from databright.market.context import Deployment
from databright.market.datasets import dataset_id
from databright.market.model_data import training_records
from databright.market.units import format_wei

EPOCHS = 2  # each step is 3 replicas × one task per shard the batch touches: keep the demo short
LIAR = 0  # the first identity the plan gives work lies: one unit in the last place of a gradient


def train_on_compute_market(dep: Deployment, acct: dict, price: int, royalty_bps: int,
                            say: Any) -> dict[str, Any]:
    """frank has the model trained by the compute market and registered with the coordinator's
    attestation; worker LIAR perturbs its gradients by one ULP."""
    n = len(distinct(training_records(dep, dataset_id(dep, "digits"))))
    workers = workers_needed(n) + 3  # the fewest the cap allows, and 3 spares
    say(f"• the compute market: a coordinator (software attestation, simulated) and {workers} "
        f"staked worker identities on this machine; each shard of at most 5% of the {n} items "
        "goes to three of them")
    job = run_train_job(dep, acct["frank"], "digits", "small-cnn",
                        config={"seed": 0, "epochs": EPOCHS}, workers=workers,
                        faults={LIAR: "1ulp"}, register=True, name="digits-cnn",
                        price_per_prediction=price, royalty_bps=royalty_bps)
    body = job.receipt.body
    model = job.extra["model"]
    say(f"• job #{job.job_id}: {body['tasks']} tasks in {job.seconds:.1f}s; worker "
        f"{job.liars[0] if job.liars else '(none)'} changed one bit of a gradient, the other two "
        f"replicas disagreed, the coordinator recomputed {body['recomputed']} task(s) and "
        f"slashed it" if job.liars else f"• job #{job.job_id}: no worker lied")
    say(f"• the checkpoint reaches {job.accuracy_bps / 100:.1f}% on the validation split; max "
        f"exposure {max(job.exposure.values()):.1%} of the items per worker; model "
        f"#{model.model_id} registered with the coordinator's attested metric")
    check = verify_receipt(dep, job.receipt_path, load_policy(None, allow_simulated=True))
    say(f"• receipt {job.receipt_path.name}: "
        + ("verified (signature, chain record, attestation under a policy that allows "
           "simulated evidence)" if check.ok else "NOT verified"))
    paid = 0
    for worker in local_workers(dep.home, workers):
        if dep.compute.owed_of(worker.address):
            paid += dep.compute.withdraw(worker).value
    say(f"• the workers withdraw {format_wei(paid)} in fees; the shareholders got "
        f"{format_wei(job.extra['training_fee'])} from the job and the registration fees")
    return {"model_id": model.model_id, "accuracy_bps": job.accuracy_bps,
            "attested_bps": job.accuracy_bps, "checkpoint_cid": job.cid, "job": job.job_id,
            "liars": job.liars, "receipt_verified": check.ok, "worker_fees_wei": paid,
            "training_fees_wei": 3 * job.extra["training_fee"]}
