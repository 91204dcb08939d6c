"""`databright compute workers`, `job list|show`, `receipt verify`, `coordinator verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from databright.cli.common import (
    AsOpt,
    HomeOpt,
    JsonOpt,
    console,
    emit,
    err_console,
    handles_errors,
    open_deployment,
    signer,
)
from databright.market.units import format_wei

compute_app = typer.Typer(help="The compute market: workers, coordinators.", no_args_is_help=True)
job_app = typer.Typer(help="Compute jobs: list, show, cancel.", no_args_is_help=True)
receipt_app = typer.Typer(help="Job receipts: verify them.", no_args_is_help=True)
coordinator_app = typer.Typer(help="Coordinators: verify their attestation.",
                              no_args_is_help=True)

PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="Attestation policy (JSON, see docs/attestation.md) [default: any "
    "measurement, TCB UpToDate].")]
SimulatedOpt = Annotated[bool | None, typer.Option(
    "--allow-simulated/--no-allow-simulated",
    help="Accept software (simulated) evidence [default: only on the embedded chain].")]


def _policy(dep: Any, path: Path | None, allow: bool | None) -> Any:
    from databright.market.compute.verify import load_policy

    if allow is None:
        allow = dep.chain.is_embedded
        if allow:
            err_console.print("policy: simulated (software) attestation is accepted because "
                              "this home runs the embedded chain (--no-allow-simulated refuses it)")
    return load_policy(path, allow_simulated=allow)


@compute_app.command("workers")
@handles_errors
def workers(
    coordinator: Annotated[str | None, typer.Option(help="Only the workers of this enclave "
                                                         "address.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The worker pool: accounts, determinism classes, fees, stakes, bans."""
    from databright.market.compute.pool import workers_of

    with open_deployment(home) as dep:
        out = workers_of(dep, coordinator)

    def human(rows: list[dict[str, Any]]) -> None:
        if not rows:
            console.print("no workers registered")
        classes = sorted({r["determinism_class"] for r in rows})
        for r in rows:
            console.print(
                f"{r['account']}  {r['status']:<7}  class {classes.index(r['determinism_class'])}"
                f"  min fee {format_wei(int(r['min_fee_wei']))}  stake "
                f"{format_wei(int(r['stake_wei']))}  coordinator {r['coordinator']}")
        for i, c in enumerate(classes):
            console.print(f"class {i}: {c}")

    emit(out, json_out, human)


@job_app.command("list")
@handles_errors
def list_jobs(
    dataset: Annotated[str | None, typer.Option(help="Only the jobs of this dataset.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every compute job on chain, newest first."""
    from databright.market.compute.jobs import list_jobs as jobs_of
    from databright.market.datasets import dataset_id

    with open_deployment(home) as dep:
        out = jobs_of(dep, dataset_id(dep, dataset) if dataset else None)

    def human(rows: list[dict[str, Any]]) -> None:
        if not rows:
            console.print("no jobs")
        for r in rows:
            console.print(f"job #{r['job_id']}  {r['status']:<9}  dataset #{r['dataset_id']}  "
                          f"spent {format_wei(int(r['spent_wei']))} of "
                          f"{format_wei(int(r['budget_wei']))}  consumer {r['consumer']}")

    emit(out, json_out, human)


@job_app.command("show")
@handles_errors
def show_job(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One job: escrow, settlement parts, slashed workers."""
    from databright.market.compute.jobs import get_job

    with open_deployment(home) as dep:
        out = get_job(dep, job_id)

    def human(d: dict[str, Any]) -> None:
        console.print(f"job #{d['job_id']} ({d['status']}) on dataset #{d['dataset_id']}, "
                      f"coordinator {d['coordinator']}, consumer {d['consumer']}")
        console.print(f"program {d['program_digest']}  spec {d['spec_cid']}")
        console.print(f"training fee {format_wei(int(d['training_fee_wei']))}, budget "
                      f"{format_wei(int(d['budget_wei']))}, spent {format_wei(int(d['spent_wei']))}")
        for p in d["parts"]:
            console.print(f"  part {p['part']}: paid {format_wei(int(p['paid_wei']))}, slashed "
                          f"{format_wei(int(p['slashed_wei']))}{' (final)' if p['final'] else ''}")
        for s in d["slashed"]:
            console.print(f"  slashed {s['worker']}: {format_wei(int(s['amount_wei']))}")

    emit(out, json_out, human)


@receipt_app.command("verify")
@handles_errors
def verify_receipt(
    path: Annotated[Path, typer.Argument(help="A job's receipt file.")],
    policy: PolicyOpt = None,
    allow_simulated: SimulatedOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a receipt's signature, the chain's record of its job and the coordinator's
    attestation under a policy; exit 1 when any check fails."""
    from databright.market.compute.verify import verify_receipt as verify

    with open_deployment(home) as dep:
        out = verify(dep, path, _policy(dep, policy, allow_simulated))

    def human(d: dict[str, Any]) -> None:
        for c in d["checks"]:
            console.print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']:<12} {c['detail']}")
        console.print(f"receipt of job #{d['job_id']}: " + ("verified" if d["ok"] else
                                                           "NOT verified"))

    emit(out, json_out, human)
    if not out.ok:
        raise typer.Exit(1)


@coordinator_app.command("verify")
@handles_errors
def verify_coordinator(
    target: Annotated[str, typer.Argument(help="A coordinator's URL (asks it for fresh "
                                               "evidence) or enclave address (its registered "
                                               "evidence).")],
    policy: PolicyOpt = None,
    allow_simulated: SimulatedOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify a coordinator's attestation evidence under a policy; exit 1 when refused."""
    from databright.market.compute.remote import verify_coordinator as verify

    with open_deployment(home) as dep:
        out = verify(dep, target, _policy(dep, policy, allow_simulated))
    emit(out, json_out, lambda d: console.print(
        f"{'accepted' if d['ok'] else 'REFUSED'}: coordinator {d['enclave']}: {d['detail']}"))
    if not out["ok"]:
        raise typer.Exit(1)


@job_app.command("cancel")
@handles_errors
def cancel_job(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """As the job's consumer, after its deadline: close a job its coordinator never settled
    (the escrow is credited back; `withdraw` from the compute market pays it out)."""
    with open_deployment(home) as dep:
        refund = dep.compute.cancel(signer(dep, as_), job_id).value
    emit({"job_id": job_id, "refund_wei": str(refund)}, json_out, lambda d: console.print(
        f"job #{d['job_id']} cancelled: {format_wei(int(d['refund_wei']))} credited back"))
