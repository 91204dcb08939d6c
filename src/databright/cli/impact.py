"""`databright impact DATASET` and `databright model list|show`, all from the index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from databright.cli.common import HomeOpt, JsonOpt, console, emit, handles_errors, open_deployment
from databright.market import impact as impact_svc
from databright.market import model_listings as models_svc
from databright.market.units import format_shares, format_wei

model_app = typer.Typer(help="Models trained on the datasets: their checkpoints, prices, "
                             "channels and predictions paid.", no_args_is_help=True)

SOURCE_LABEL = {"training_fee": "training fees", "prediction_royalty": "prediction royalties",
                "rejected_stake": "rejected stakes", "direct_payment": "direct payments"}


def _metric(bps: int | None) -> str:
    return "-" if bps is None else f"{bps / 100:.2f}%"


@handles_errors
def impact(
    dataset: str,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write a PNG of metric vs dataset size per model.",
        show_default=False)] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What a dataset's data did: models trained on it and dividends per contributor by source."""
    with open_deployment(home) as dep:
        result = impact_svc.impact(dep, dataset)
    written = impact_svc.plot_impact(result, plot) if plot is not None else None
    data: dict[str, Any] = {"impact": result, "plot": str(written) if written else None}

    def human(d: dict) -> None:
        r = d["impact"]
        console.print(f"[bold]{r['dataset']}[/] (#{r['dataset_id']}): {r['item_count']} items in "
                      f"{r['entry_count']} entries; training fee {format_wei(r['training_fee'])}, "
                      f"royalty at least {r['min_royalty_bps'] / 100:g}%")
        if r["models"]:
            table = Table("model", "name", "checkpoint", "snapshot (entries)", "items", "metric",
                          "attested by")
            for m in r["models"]:
                for c in m["checkpoints"]:
                    mark = " (best)" if c["best"] else ""
                    who = c["attestor"] or "self-reported"
                    table.add_row(f"#{m['model_id']}", m["name"], f"{c['checkpoint']}{mark}",
                                  str(c["entries"]), str(c["items"]),
                                  _metric(c["attested_metric_bps"] if c["attested"]
                                          else c["metric_bps"]), who)
                if not m["checkpoints"]:
                    table.add_row(f"#{m['model_id']}", m["name"], "-", "-", "-", "-", "-")
            console.print(table)
        else:
            console.print("no model trained on it yet")
        totals = ", ".join(f"{SOURCE_LABEL[s['source']]} {format_wei(s['distributed_wei'])}"
                           + (f" (+{format_wei(s['held_wei'])} held)" if s["held_wei"] else "")
                           for s in r["sources"])
        console.print(f"dividends paid: {format_wei(r['total_distributed'])} — {totals}")
        table = Table("account", "items", "shares", "models", *SOURCE_LABEL.values(),
                      "withdrawn", "waiting")
        for c in r["contributors"]:
            table.add_row(c["account"], str(c["items"]),
                          f"{format_shares(c['shares'])} ({c['fraction']:.1%})",
                          ", ".join(f"#{i}" for i in c["models"]) or "-",
                          *(format_wei(c["dividends"][s]) for s in SOURCE_LABEL),
                          format_wei(c["withdrawn_wei"]), format_wei(c["waiting_wei"]))
        console.print(table)
        if d["plot"]:
            console.print(f"plot written to {d['plot']}")

    emit(data, json_out, human)


@model_app.command("list")
@handles_errors
def list_models(
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset's models.",
                                                show_default=False)] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the registered models with their best checkpoint and predictions paid."""
    with open_deployment(home) as dep:
        rows = models_svc.list_models(dep, dataset)

    def human(d: dict) -> None:
        if not d["models"]:
            console.print("no models registered yet")
            return
        table = Table("id", "name", "dataset", "owner", "best", "metric", "price", "royalty",
                      "predictions paid", "paid")
        for m in d["models"]:
            table.add_row(str(m["model_id"]), m["name"], m["dataset"], m["owner"],
                          str(m["best_checkpoint"] or "-"), _metric(m["best_metric_bps"]),
                          format_wei(m["price_per_prediction"]), f"{m['royalty_bps'] / 100:g}%",
                          "-" if m["predictions_paid"] is None else str(m["predictions_paid"]),
                          format_wei(m["paid_wei"]))
        console.print(table)

    emit({"models": rows}, json_out, human)


@model_app.command("show")
@handles_errors
def show_model(model_id: int, home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Show a model: owner, dataset, best checkpoint, every checkpoint, channels."""
    with open_deployment(home) as dep:
        out = models_svc.show_model(dep, model_id)

    def human(d: dict) -> None:
        m = d["model"]
        console.print(f"[bold]model #{m['model_id']} {m['name']}[/] on {m['dataset']} "
                      f"(#{m['dataset_id']}), owner {m['owner']}")
        console.print(f"price {format_wei(m['price_per_prediction'])} a prediction, royalty "
                      f"{m['royalty_bps'] / 100:g}% to the shareholders; program "
                      f"{d['program_digest']}")
        predictions = "-" if m["predictions_paid"] is None else str(m["predictions_paid"])
        console.print(f"predictions paid: {predictions} ({format_wei(m['paid_wei'])}, of which "
                      f"{format_wei(m['royalty_wei'])} royalty); channels: {m['channels']} "
                      f"({m['open_channels']} open)")
        b = d["best"]
        if b:
            console.print(f"best: checkpoint {b['checkpoint']}, {b['cid']} sha256 "
                          f"{b['file_sha256']}, snapshot {b['entries']} entries ({b['items']} "
                          f"items), metric {_metric(b['attested_metric_bps'])} attested by "
                          f"{b['attestor']}")
        else:
            console.print("best: none yet (no checkpoint with an attested metric)")
        if d["checkpoints"]:
            table = Table("checkpoint", "cid", "snapshot (entries)", "items", "metric", "status")
            for c in d["checkpoints"]:
                status = (("best, " if c["best"] else "") + f"attested by {c['attestor']}"
                          if c["attested"] else "self-reported")
                table.add_row(str(c["checkpoint"]), c["cid"], str(c["entries"]), str(c["items"]),
                              _metric(c["attested_metric_bps"] if c["attested"]
                                      else c["metric_bps"]), status)
            console.print(table)
        if d["channels"]:
            table = Table("channel", "payer", "deposit", "status", "paid", "royalty", "refund")
            for c in d["channels"]:
                table.add_row(str(c["channel_id"]), c["payer"], format_wei(c["deposit"]),
                              c["status"], format_wei(c["amount"]), format_wei(c["royalty"]),
                              format_wei(c["refund"]))
            console.print(table)

    emit(out, json_out, human)
