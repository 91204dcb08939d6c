"""`databright compute workers`, `job list|show|submit|predictions`, `receipt verify`,
`coordinator verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from databright.cli import compute_predict
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
job_app = typer.Typer(help="Compute jobs: submit, list, show, predictions, cancel.",
                      no_args_is_help=True)
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


@coordinator_app.command("show")
@handles_errors
def show_coordinator(
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """This home's coordinator: its enclave address (workers register for it) and whether it
    is registered on chain."""
    from databright.errors import ContractNotFoundError
    from databright.market.compute.identities import enclave_key

    with open_deployment(home) as dep:
        enclave = enclave_key(dep.home).address
        try:
            info = dep.compute.get_coordinator(enclave)
            out: dict[str, Any] = {"enclave": enclave, "registered": True, "kind": info.kind,
                                   "evidence_cid": info.evidence_cid, "operator": info.operator}
        except ContractNotFoundError:
            out = {"enclave": enclave, "registered": False}
    emit(out, json_out, lambda d: console.print(
        f"coordinator {d['enclave']}: " + (f"registered ({d['kind']}, evidence "
                                           f"{d['evidence_cid']})" if d["registered"] else
                                           "not registered yet (`coordinator serve` does it)")))


@coordinator_app.command("serve")
@handles_errors
def serve_coordinator(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8720,
    poll: Annotated[float, typer.Option(help="Seconds between looks for new jobs.")] = 2.0,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Serve the workers' API and run every open job that names this coordinator (the --as
    account pays the coordinator's gas); Ctrl-C stops it."""
    import threading

    import uvicorn

    from databright.home import Home
    from databright.web.coordinator_service import CoordinatorService

    with open_deployment(home) as dep:
        operator = signer(dep, as_)
        embedded = dep.chain.is_embedded
    service = CoordinatorService(Home(home), operator, poll_seconds=poll)
    if json_out:  # one line a supervisor can read: where it listens, who it is
        emit({"enclave": service.coordinator.address, "url": f"http://{host}:{port}",
              "workers": len(service.pool), "attestation": "software"}, True)
    err_console.print(f"coordinator {service.coordinator.address} on http://{host}:{port} "
                      f"({len(service.pool)} registered workers); attestation: software"
                      + (" (simulated: accepted only by policies that allow it)"))
    if embedded:
        err_console.print("the embedded chain is opened only between jobs' reads and writes")
    jobs = threading.Thread(target=service.run_jobs, name="jobs", daemon=True)
    jobs.start()
    try:
        uvicorn.run(service.app(), host=host, port=port, log_level="warning")
    finally:
        service.stop.set()
        jobs.join(timeout=30)


worker_app = typer.Typer(
    help="Compute workers: `worker --coordinator URL --as ACCOUNT` works for a coordinator; "
         "`worker register` stakes first.", invoke_without_command=True)


@worker_app.callback()
@handles_errors
def worker(
    ctx: typer.Context,
    coordinator: Annotated[str | None, typer.Option(help="The coordinator's URL.")] = None,
    threads: Annotated[int, typer.Option(help="Torch threads this worker pins (part of its "
                                              "determinism class).")] = 1,
    fault: Annotated[str | None, typer.Option("--fault", hidden=True,
                                              help="Lie this way (tests and benchmarks).")] = None,
    home: HomeOpt = None,
    as_: AsOpt = None,
) -> None:
    """Pull tasks from a coordinator, compute them, commit and reveal; Ctrl-C stops."""
    if ctx.invoked_subcommand is not None:
        return
    if coordinator is None:
        raise typer.BadParameter("give --coordinator URL (or a subcommand: register, leave, "
                                 "withdraw-stake)")
    from databright.market.compute.remote_worker import work

    with open_deployment(home) as dep:
        key = signer(dep, as_)
    stats = work(coordinator, key, threads=threads, fault=fault)
    err_console.print(f"worker {key.address} stopped: {stats}")


@worker_app.command("register")
@handles_errors
def register_worker(
    coordinator: Annotated[str, typer.Option(help="The coordinator's enclave address (after "
                                                  "`coordinator verify`).")],
    stake: Annotated[str | None, typer.Option(help="Stake [default: the market's minimum].")] = None,
    min_fee: Annotated[str, typer.Option(help="Least fee per task (eth, gwei, wei).")] = "1000gwei",
    threads: Annotated[int, typer.Option(help="Torch threads this worker pins.")] = 1,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Register the --as account as a worker of a coordinator, locking a stake."""
    from databright.market.compute.remote_worker import register
    from databright.market.units import parse_wei

    with open_deployment(home) as dep:
        info = register(dep, signer(dep, as_), coordinator, threads=threads,
                        min_fee=parse_wei(min_fee, default_unit="wei"),
                        stake=parse_wei(stake, default_unit="eth") if stake else None)
    emit(info, json_out, lambda d: console.print(
        f"worker {d['worker']} registered for {d['coordinator']}: stake "
        f"{format_wei(d['stake'])}, min fee {format_wei(d['min_fee'])} a task"))


@worker_app.command("leave")
@handles_errors
def leave(home: HomeOpt = None, json_out: JsonOpt = False, as_: AsOpt = None) -> None:
    """Stop being a worker; the stake is returned after the cool-down (`withdraw-stake`)."""
    with open_deployment(home) as dep:
        at = dep.compute.unregister(signer(dep, as_)).value
    emit({"release_at": at}, json_out,
         lambda d: console.print(f"leaving: the stake can be withdrawn from {d['release_at']}"))


@worker_app.command("withdraw-stake")
@handles_errors
def withdraw_stake(home: HomeOpt = None, json_out: JsonOpt = False, as_: AsOpt = None) -> None:
    """Take the stake back after leaving and the cool-down."""
    with open_deployment(home) as dep:
        amount = dep.compute.withdraw_stake(signer(dep, as_)).value
    emit({"amount_wei": str(amount)}, json_out,
         lambda d: console.print(f"stake returned: {format_wei(int(d['amount_wei']))}"))


@job_app.command("submit")
@handles_errors
def submit(
    kind: Annotated[str, typer.Argument(help="The job: train or predict.")],
    target: Annotated[str, typer.Argument(help="train: the dataset's name; predict: the "
                                               "model's id.")],
    files: Annotated[list[Path] | None, typer.Argument(
        help="predict: image files, or CSV/Parquet tables (JSON rows) for a table model.")
    ] = None,
    coordinator: Annotated[str | None, typer.Option(
        help="The coordinator's enclave address (its service runs the job).")] = None,
    local: Annotated[bool, typer.Option(
        "--local", help="predict: run the job now with this home's coordinator and local "
        "worker identities.")] = False,
    family: Annotated[str, typer.Option(help="Model family.")] = "small-cnn",
    epochs: Annotated[int | None, typer.Option(help="Passes over the data.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds order and initialisation.")] = 0,
    split: Annotated[int, typer.Option(help="Cut the model at layer boundaries into this many pieces, each on other workers (1: no splitting).")] = 1,
    verify: Annotated[str, typer.Option("--verify", help="'tmr' (three workers per task) or 'spot' (one worker per task, a secret random fraction re-checked).")] = "tmr",
    spot_fraction: Annotated[float | None, typer.Option(help="With --verify spot: the fraction of tasks re-checked [default: 0.1].")] = None,
    batch_size: Annotated[int, typer.Option(help="predict: items per task.")] = 32,
    workers: Annotated[int | None, typer.Option(help="predict --local: local identities "
                                                     "[default: 5].")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Escrow a job for a coordinator's registered workers; the coordinator runs it and
    settles with a signed receipt (`job show ID`). A training job escrows the training fee
    plus a budget; a prediction job the model's price for every item plus a budget, and its
    settlement pays the model's owner, the dataset's shareholders and the workers at once
    (`job predictions ID` shows the predictions)."""
    from databright.compute.scheduler import WorkerInfo
    from databright.errors import UsageError
    from databright.market.compute.options import JobOptions
    from databright.market.compute.pool import pool_of

    if kind not in ("train", "predict"):
        raise UsageError(f"job kind {kind!r}: the compute market runs 'train' and 'predict' "
                         "jobs")
    options = JobOptions.of(split, verify, spot_fraction)
    if kind == "predict":
        compute_predict.submit(target, files or [], coordinator, local, batch_size, workers,
                               options, home, json_out, as_)
        return
    if files:
        raise UsageError("a training job takes no files (the dataset is the data)")
    if coordinator is None or local:
        raise UsageError("a training job goes to --coordinator ADDR (run one here with "
                         "`train --compute local`)")
    from databright.market.compute.train_job import submit_train_job

    config: dict[str, Any] = {"seed": seed}
    if epochs is not None:
        config["epochs"] = epochs
    with open_deployment(home) as dep:
        pool = [WorkerInfo(w.account.lower(), w.determinism_class.removeprefix("0x"), w.min_fee)
                for w in pool_of(dep, coordinator)]
        if not pool:
            raise UsageError(f"coordinator {coordinator} has no registered workers")
        job_id, budget = submit_train_job(dep, signer(dep, as_), target, family, coordinator,
                                          pool, config=config, options=options)
    emit({"job_id": job_id, "budget_wei": str(budget), "coordinator": coordinator},
         json_out, lambda d: console.print(
             f"job #{d['job_id']} escrowed (budget {format_wei(int(d['budget_wei']))}) for "
             f"{d['coordinator']}: follow it with `databright job show {d['job_id']}`"))


job_app.command("predictions")(compute_predict.predictions)
