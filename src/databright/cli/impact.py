"""`databright impact DATASET` and `databright model list|show`, all from the index.

``list_models`` and ``show_model`` are commands of the ``model`` group (``cli.models``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from databright.cli.common import HomeOpt, JsonOpt, console, emit, handles_errors, open_deployment
from databright.market import impact as impact_svc
from databright.market import model_listings as models_svc
from databright.market.units import format_shares, format_wei

SOURCE_LABEL = {"training_fee": "training fees", "prediction_royalty": "prediction royalties",
                "rejected_stake": "rejected stakes", "direct_payment": "direct payments"}


def _metric(bps: int | None) -> str:
    return "-" if bps is None else f"{bps / 100:.2f}%"


def _checkpoint_metric(c: dict) -> str:
    if c["attested"]:
        return f"{_metric(c['attested_metric_bps'])} attested by {c['attestor']}"
    return f"{_metric(c['metric_bps'])} self-reported"


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
        if not r["models"]:
            console.print("no model trained on it yet")
        for m in r["models"]:
            best = f"best checkpoint {m['best_checkpoint']}" if m["best_checkpoint"] else \
                "no attested checkpoint yet"
            console.print(f"model #{m['model_id']} {m['name']} (owner {m['owner']}; {best})")
            for c in m["checkpoints"]:
                console.print(f"  checkpoint {c['checkpoint']}{' (best)' if c['best'] else ''}: "
                              f"{c['entries']} entries, {c['items']} items, "
                              f"{_checkpoint_metric(c)}")
        totals = ", ".join(f"{SOURCE_LABEL[s['source']]} {format_wei(s['distributed_wei'])}"
                           + (f" (+{format_wei(s['held_wei'])} held)" if s["held_wei"] else "")
                           for s in r["sources"])
        console.print(f"dividends paid: {format_wei(r['total_distributed'])} ({totals})")
        for c in r["contributors"]:
            entries = ", ".join(str(i) for i in c["entries"])
            what = f"{c['items']} items (entries {entries})" if c["entries"] else "no entries"
            used = ", ".join(f"#{i}" for i in c["models"]) or "none"
            console.print(f"{c['account']}: {what}, {format_shares(c['shares'], 2)} shares "
                          f"({c['fraction']:.1%}), models trained on its entries: {used}")
            parts = ", ".join(f"{SOURCE_LABEL[k]} {format_wei(v)}"
                              for k, v in c["dividends"].items())
            console.print(f"  dividends {format_wei(c['earned_wei'])}: {parts}; withdrawn "
                          f"{format_wei(c['withdrawn_wei'])}, waiting "
                          f"{format_wei(c['waiting_wei'])}")
        if d["plot"]:
            console.print(f"plot written to {d['plot']}")

    emit(data, json_out, human)


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
        table = Table("id", "name", "dataset", "best (metric)", "price", "royalty",
                      "predictions paid")
        for m in d["models"]:
            best = f"{m['best_checkpoint']} ({_metric(m['best_metric_bps'])})" \
                if m["best_checkpoint"] else "-"
            paid = "-" if m["predictions_paid"] is None else str(m["predictions_paid"])
            table.add_row(str(m["model_id"]), m["name"], m["dataset"], best,
                          format_wei(m["price_per_prediction"]), f"{m['royalty_bps'] / 100:g}%",
                          f"{paid} ({format_wei(m['paid_wei'])})")
        console.print(table)

    emit({"models": rows}, json_out, human)


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
        for c in d["checkpoints"]:
            console.print(f"  checkpoint {c['checkpoint']}{' (best)' if c['best'] else ''}: "
                          f"{c['cid']}, {c['entries']} entries ({c['items']} items), "
                          f"{_checkpoint_metric(c)}")
        for c in d["channels"]:
            paid = (f", paid {format_wei(c['amount'])} (royalty {format_wei(c['royalty'])}), "
                    f"refund {format_wei(c['refund'])}" if c["status"] == "closed" else "")
            console.print(f"  channel {c['channel_id']} from {c['payer']}: deposit "
                          f"{format_wei(c['deposit'])}, {c['status']}{paid}")

    emit(out, json_out, human)
