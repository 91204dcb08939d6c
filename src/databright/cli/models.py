"""`databright train` and `databright model attest`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    progress_wanted,
    signer,
)
from databright.errors import UsageError
from databright.market import models as svc
from databright.market.training import train_model
from databright.market.units import format_wei, parse_fraction_bps, parse_wei

model_app = typer.Typer(help="Models trained on datasets: list, show, attest, serve.",
                        no_args_is_help=True)

FAMILY_HELP = ("efficientnet-head (images: pretrained EfficientNet-Lite0 + trained head), "
               "small-cnn (images, from scratch), logreg or mlp (table rows).")


@contextmanager
def _progress_bar(wanted: bool) -> Iterator[Any]:
    """A rich progress bar on stderr fed by ``progress(stage, done, total)`` calls."""
    if not wanted:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


@handles_errors
def train(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    family: Annotated[str, typer.Option(help=FAMILY_HELP)] = "logreg",
    epochs: Annotated[int | None, typer.Option(help="Passes over the data [default: the family's].")] = None,
    seed: Annotated[int, typer.Option(help="Seeds data order, initialisation and shuffles.")] = 0,
    snapshot: Annotated[int | None, typer.Option(help="Train on the first N registry entries [default: all].")] = None,
    register: Annotated[bool, typer.Option("--register", help="Register a new model with this checkpoint (pays the training fee twice: model and checkpoint).")] = False,
    model: Annotated[int | None, typer.Option("--model", help="Submit as a new checkpoint of this model (pays the training fee).")] = None,
    name: Annotated[str | None, typer.Option(help="Model name with --register [default: DATASET-FAMILY].")] = None,
    price: Annotated[str, typer.Option(help="Price per prediction with --register (eth, gwei, wei).")] = "0.001eth",
    royalty: Annotated[str | None, typer.Option(help="Share of prediction revenue paid to the shareholders [default: the dataset's floor].")] = None,
    compute: Annotated[str, typer.Option("--compute", help="Where to train: 'here' (this process) or 'local' (the compute market: a coordinator and --workers worker identities on this machine, triple modular redundancy, paid on chain).")] = "here",
    workers: Annotated[int | None, typer.Option(help="Worker identities with --compute local: 3 per shard, each shard at most 5% of the items [default: the fewest the dataset needs (60 when 5% of it is a whole number) plus 3 spares].")] = None,
    fault: Annotated[list[str] | None, typer.Option("--fault", hidden=True, help="INDEX:MODE: local worker INDEX lies (tests and benchmarks).")] = None,
    split: Annotated[int, typer.Option(help="With --compute local: cut the model at layer boundaries into this many pieces, each on other workers (1: no splitting).")] = 1,
    verify: Annotated[str, typer.Option("--verify", help="With --compute local: 'tmr' (three workers per task) or 'spot' (one worker per task, a secret random fraction re-checked).")] = "tmr",
    spot_fraction: Annotated[float | None, typer.Option(help="With --verify spot: the fraction of tasks re-checked [default: 0.1].")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """Train a model on a dataset's accepted entries and report its validation accuracy."""
    from databright.market.compute.options import JobOptions

    options = JobOptions.of(split, verify, spot_fraction)
    config: dict[str, Any] = {"seed": seed}
    if epochs is not None:
        config["epochs"] = epochs
    royalty_bps = parse_fraction_bps(royalty) if royalty is not None else None
    price_wei = parse_wei(price, default_unit="eth")
    if compute not in ("here", "local"):
        raise UsageError(f"--compute is 'here' or 'local', not {compute!r}")
    if compute != "local" and options != JobOptions():
        raise UsageError("--split, --verify and --spot-fraction go with --compute local")
    if compute == "local":
        if model is not None or snapshot is not None:
            raise UsageError("--compute local trains a new model on every entry: "
                             "--model and --snapshot are not supported with it")
        from databright.market.compute.train_job import run_train_job

        faults = _faults(fault or [])
        with open_deployment(home) as dep, _progress_bar(progress_wanted(json_out)) as progress:
            job = run_train_job(dep, signer(dep, as_), dataset, family, config=config,
                                workers=workers, faults=faults, register=register, name=name,
                                price_per_prediction=price_wei, royalty_bps=royalty_bps,
                                progress=progress, options=options)
        emit(job, json_out, _job_human)
        return
    with open_deployment(home) as dep, _progress_bar(progress_wanted(json_out)) as progress:
        sender = signer(dep, as_) if register or model is not None else None
        out = train_model(dep, sender, dataset, family, config=config, snapshot=snapshot,
                          register=register, model_id=model, name=name,
                          price_per_prediction=price_wei, royalty_bps=royalty_bps,
                          progress=progress)
    emit(out, json_out, _train_human)


def _faults(specs: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for spec in specs:
        index, sep, mode = spec.partition(":")
        if not sep or not index.isdigit():
            raise UsageError(f"--fault is INDEX:MODE, not {spec!r}")
        out[int(index)] = mode
    return out


def _mode(d: dict[str, Any]) -> str:
    v = d.get("verification") or {"mode": "tmr"}
    if v.get("mode") != "spot":
        return "TMR"
    return (f"spot checks at p = {v['ppm'] / 1e6:g}: {v['checked']} of {v['decided']} segments "
            f"re-run, {len(v['caught'])} lie(s) caught")


def _job_human(d: dict[str, Any]) -> None:
    console.print(
        f"job #{d['job']}: trained {d['family']} on {d['workers']} workers ({d['tasks']} tasks "
        f"under {_mode(d)}, {d['recomputed']} recomputed by the coordinator) in "
        f"{d['seconds']:.1f}s: "
        f"validation accuracy {d['accuracy']:.2%}")
    console.print(f"checkpoint {d['cid']} (sha256 {d['sha256']})")
    console.print(f"max exposure {d['max_exposure']:.2%} of the items per worker (cap "
                  f"{d['cap']:.0%}); workers paid {format_wei(int(d['fees_paid_wei']))}; "
                  f"training fee {format_wei(int(d['training_fee_wei']))} to the shareholders")
    for liar in d["liars"]:
        console.print(f"liar caught and slashed: {liar}")
    console.print(f"receipt {d['receipt']} (verify: databright receipt verify {d['receipt']})")
    m, cp = d.get("model"), d.get("checkpoint")
    if m and cp:
        state = f"attested by {cp['attestor']}" if cp["attestor"] else "self-reported"
        console.print(f"model #{m['model_id']} {m['name']!r}: checkpoint {cp['checkpoint']}, "
                      f"{state}")


def _train_human(d: dict[str, Any]) -> None:
    console.print(
        f"trained {d['family']} on {d['dataset']} (first {d['snapshot']} entries, "
        f"{d['train_items']} items) in {d['seconds']:.1f}s, {d['epochs']} epochs: validation "
        f"accuracy {d['accuracy']:.2%} on {d['validation_items']} held-out items"
    )
    console.print(f"checkpoint {d['cid']} (sha256 {d['sha256']})")
    m, cp = d.get("model"), d.get("checkpoint")
    if m and cp:
        state = (f"attested by {cp['attestor']}" if cp["attestor"] else
                 "self-reported until the dataset's evaluator attests it "
                 f"(`databright model attest {m['model_id']}`)")
        console.print(f"model #{m['model_id']} {m['name']!r}: checkpoint {cp['checkpoint']}, "
                      f"{state}; paid {format_wei(d['fees_paid'])} in training fees to the "
                      "shareholders")


@model_app.command("attest")
@handles_errors
def attest(
    model_id: Annotated[int, typer.Argument(help="Model id.")],
    checkpoint: Annotated[int | None, typer.Option(help="Checkpoint number [default: the latest].")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
    as_: AsOpt = None,
) -> None:
    """As the dataset's evaluator: measure a checkpoint on the validation split and attest it."""
    with open_deployment(home) as dep:
        out = svc.attest_checkpoint(dep, signer(dep, as_), model_id, checkpoint)
    emit(out, json_out, lambda d: console.print(
        f"model #{d['model_id']} checkpoint {d['checkpoint']}: measured "
        f"{d['metric_bps'] / 100:.2f}% on {d['validation_items']} validation items (owner "
        f"claimed {d['claimed_bps'] / 100:.2f}%), attested by {d['attestor']}"
        + ("; now the model's best" if d["best"] else "")))
