"""The `databright` command: one typer app over the market library."""

from __future__ import annotations

from typing import Any

import typer

from databright.cli import (
    accounts,
    compute,
    data,
    datasets,
    dev,
    impact,
    index,
    models,
    money,
    predictions,
    proposals,
    serve,
)

app = typer.Typer(
    name="databright",
    help="DataBright: build a dataset together, vote on contributions, share the revenue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command("init")(accounts.init)
app.add_typer(accounts.app, name="account")
app.add_typer(datasets.app, name="dataset")
app.command("propose")(proposals.propose)
app.command("proposals")(proposals.proposals)
app.add_typer(proposals.proposal_app, name="proposal")
app.command("vote")(proposals.vote)
app.command("finalize")(proposals.finalize)
app.command("evaluate")(data.evaluate)
app.command("shares")(money.shares)
app.command("transfer")(money.transfer)
app.command("distribute")(money.distribute)
app.command("dividends")(money.dividends)
app.command("withdraw")(money.withdraw)
app.command("verify")(data.verify)
app.command("export")(data.export)
app.command("train")(models.train)
app.add_typer(models.model_app, name="model")
app.add_typer(dev.app, name="dev")
app.add_typer(index.app, name="index")
app.command("impact")(impact.impact)
models.model_app.command("list")(impact.list_models)
models.model_app.command("show")(impact.show_model)
models.model_app.command("serve")(predictions.serve)
app.command("predict")(predictions.predict)
app.add_typer(predictions.channel_app, name="channel")
app.add_typer(compute.compute_app, name="compute")
app.add_typer(compute.job_app, name="job")
app.add_typer(compute.receipt_app, name="receipt")
app.add_typer(compute.coordinator_app, name="coordinator")
app.add_typer(compute.worker_app, name="worker")
app.command("serve")(serve.serve)


def _register_demo() -> None:
    from databright.cli import demo

    app.command("demo")(demo.demo)


_register_demo()


def main() -> None:
    """Console entry point: usage mistakes are one line on stderr too (exit 2)."""
    import sys

    # typer ships its own click; its UsageError is the parent of BadParameter.
    usage_error: type[Exception] = typer.BadParameter.__mro__[1]
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        click_exc: Any = exc  # typed as Exception above: its click class has no public name
        ctx = click_exc.ctx
        where = f" (see `{ctx.command_path} --help`)" if ctx else ""
        print(f"error: {click_exc.format_message()}{where}", file=sys.stderr)
        sys.exit(click_exc.exit_code)
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
