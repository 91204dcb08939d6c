"""`job submit predict MODEL FILES… --local | --coordinator ADDR` and `job predictions ID`:
the command-line half of prediction jobs (registered on `job` by ``cli.compute``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from databright.cli.common import (
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


def _model_id(text: str) -> int:
    from databright.errors import UsageError

    if not text.isdigit() or int(text) == 0:
        raise UsageError(f"a prediction job names a model by its id (1, 2, …), not {text!r}")
    return int(text)


def submit(target: str, files: list[Path], coordinator: str | None, local: bool,
                    batch_size: int, workers: int | None, options: Any, home: Any,
                    json_out: bool, as_: Any) -> None:
    from databright.compute.scheduler import WorkerInfo
    from databright.errors import UsageError
    from databright.market.compute.pool import pool_of
    from databright.market.compute.predict_job import run_predict_job, submit_predict_job

    model_id = _model_id(target)
    if local == (coordinator is not None):
        raise UsageError("a prediction job runs either --local or for --coordinator ADDR")
    with open_deployment(home) as dep:
        consumer = signer(dep, as_)
        if local:
            bar = _progress_bar()
            done = run_predict_job(dep, consumer, model_id, files, workers=workers,
                                   batch_size=batch_size, options=options, progress=bar)
            out = done.to_dict()
        else:
            assert coordinator is not None
            pool = [WorkerInfo(w.account.lower(), w.determinism_class.removeprefix("0x"),
                               w.min_fee) for w in pool_of(dep, coordinator)]
            job_id, budget, spec = submit_predict_job(dep, consumer, model_id, files,
                                                      coordinator, pool,
                                                      batch_size=batch_size, options=options)
            out = {"job_id": job_id, "kind": "predict", "model_id": model_id,
                   "count": spec.count, "budget_wei": str(budget), "coordinator": coordinator}

    def human(d: dict[str, Any]) -> None:
        if "predictions" not in d:
            console.print(f"prediction job #{d['job_id']} escrowed ({d['count']} items, budget "
                          f"{format_wei(int(d['budget_wei']))}) for {d['coordinator']}: "
                          f"`databright job predictions {d['job_id']}` once it is settled")
            return
        for p in d["predictions"]:
            console.print(f"{p['name']}  {p['label']}")
        pay = d["payment"]
        console.print(f"job #{d['job']}: {d['delivered']} of {d['count']} predictions "
                      f"({d['verification']}), owner {format_wei(int(pay['owner']))}, royalty "
                      f"{format_wei(int(pay['royalty']))}, workers "
                      f"{format_wei(int(pay['workers']))}; receipt {d['receipt']}")

    emit(out, json_out, human)


def _progress_bar() -> Any:
    """A one-line progress report on stderr for long jobs (batches done of all)."""
    last: dict[str, int] = {"done": -1}

    def report(stage: str, done: int, total: int) -> None:
        if done != last["done"] and (done == total or done % max(1, total // 20) == 0):
            err_console.print(f"{stage}: {done}/{total}")
            last["done"] = done

    return report


@handles_errors
def predictions(
    job_id: Annotated[int, typer.Argument(help="A settled prediction job's id.")],
    receipt: Annotated[Path | None, typer.Option(help="The job's receipt file [default: this "
                                                      "home's, when its coordinator ran here]."
                                                 )] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A prediction job's predictions (label and class probabilities per item), read from the
    store by the CID its signed receipt names."""
    from databright.market.compute.predict_execute import read_predictions

    with open_deployment(home) as dep:
        out = read_predictions(dep, job_id, receipt)

    def human(d: dict[str, Any]) -> None:
        for p in d["predictions"]:
            console.print(f"{p['name']}  {p['label']}  {max(p['probabilities']):.3f}")
        console.print(f"job #{d['job_id']}: {d['delivered']} predictions of model "
                      f"#{d['model_id']} ({d['verification']}), {d['predictions_cid']}")

    emit(out, json_out, human)
