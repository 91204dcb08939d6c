"""`databright train` and `model attest`: a model trained on a dataset pays its shareholders."""

from __future__ import annotations

import pytest

from databright.cli.main import app
from databright.market.context import Deployment
from tests.cli.conftest import PASSWORD

FEE = 10**16  # the training fee of the dataset below (0.01 ETH)


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    """A home with alice (initiator, evaluator), bob (a model developer) and `digits` with a
    training fee of 0.01 ETH and a royalty floor of 20 %."""
    from tests.cli.conftest import Cli

    root = tmp_path_factory.mktemp("train")
    cli = Cli(root / "home")
    cli("init")
    for name in ("alice", "bob"):
        cli("account", "new", name, "--fast-kdf")
    seed = digit_folder(root / "seed", 0, 120)
    cli("dataset", "create", "digits", "--from", str(seed), "--period", "1h", "--evaluator",
        "alice", "--training-fee", "0.01eth", "--min-royalty", "20%", as_="alice")
    return cli


def _distributed(cli) -> int:
    with Deployment(cli.home) as dep:
        token = dep.token(dep.market.get_dataset(1).share_token)
        return int(token.total_distributed())


def test_rules_show_the_model_market_terms(world):
    shown = world("dataset", "show", "digits")
    assert (shown["rules"]["training_fee"], shown["rules"]["min_royalty_bps"]) == (FEE, 2000)
    human = " ".join(world("dataset", "show", "digits", json_out=False).stdout.split())
    assert "training fee 0.01 ETH" in human and "at least 20%" in human


def test_train_without_registering_pays_nothing(world):
    before = _distributed(world)
    out = world("train", "digits", "--family", "small-cnn", "--epochs", "2")
    assert out["model"] is None and out["fees_paid"] == 0
    assert out["snapshot"] == 1 and out["train_items"] > 0 and out["validation_items"] > 0
    assert 0 <= out["accuracy_bps"] <= 10_000
    assert _distributed(world) == before
    with Deployment(world.home) as dep:  # the checkpoint is in the store, by its sha256
        from databright.market.model_data import load_stored_checkpoint

        ckpt = load_stored_checkpoint(dep, out["cid"], out["sha256"])
        assert (ckpt.family, ckpt.snapshot) == ("small-cnn", 1)


def test_register_pays_the_fee_twice_and_the_evaluator_attests(world):
    before = _distributed(world)
    out = world("train", "digits", "--family", "small-cnn", "--epochs", "3", "--register",
                "--price", "0.002eth", "--royalty", "30%", as_="bob")
    m, cp = out["model"], out["checkpoint"]
    assert out["fees_paid"] == 2 * FEE
    assert _distributed(world) == before + 2 * FEE  # model + checkpoint: dividends
    assert (m["price_per_prediction"], m["royalty_bps"], m["name"]) == (
        2 * 10**15, 3000, "digits-small-cnn")
    assert cp["attestor"] is None and m["best"] is None  # bob is not the evaluator
    assert (cp["cid"], cp["sha256"], cp["entries"]) == (out["cid"], out["sha256"], 1)

    # bob cannot attest his own model; alice (the evaluator) measures it herself
    denied = world("model", "attest", str(m["model_id"]), as_="bob", code=7, json_out=False)
    assert "evaluator" in denied.stderr
    att = world("model", "attest", str(m["model_id"]), as_="alice")
    assert att["attestor"] == world("account", "show", "alice")["address"]
    assert att["metric_bps"] == out["accuracy_bps"]  # deterministic: she measures the same
    assert att["best"] is True
    again = world("model", "attest", str(m["model_id"]), as_="alice", code=2, json_out=False)
    assert "attested already" in again.stderr
    with Deployment(world.home) as dep:
        best = dep.registry.best_checkpoint(m["model_id"])
        assert best is not None and best.file_sha256.hex() == out["sha256"]

    # a new checkpoint of the same program by its owner; another program is refused
    second = world("train", "digits", "--family", "small-cnn", "--epochs", "3", "--model",
                   str(m["model_id"]), as_="bob")
    assert second["checkpoint"]["checkpoint"] == 2 and second["fees_paid"] == FEE
    other = world("train", "digits", "--family", "small-cnn", "--epochs", "4", "--model",
                  str(m["model_id"]), as_="bob", code=2, json_out=False)
    assert "register it as a new model" in other.stderr


def test_evaluator_checkpoints_are_attested_on_submit(world):
    out = world("train", "digits", "--family", "small-cnn", "--epochs", "2", "--register",
                as_="alice")
    assert out["checkpoint"]["attestor"] is not None
    assert out["model"]["best"]["checkpoint"] == 1
    assert out["model"]["royalty_bps"] == 2000  # the dataset's floor by default


@pytest.mark.parametrize("args, needle", [
    (["train", "nope", "--family", "logreg"], "no dataset named 'nope'"),
    (["train", "digits", "--family", "resnet"], "unknown"),
    (["train", "digits", "--snapshot", "5"], "the snapshot must be 1..1"),
    (["train", "digits", "--family", "small-cnn", "--register", "--royalty", "10%"],
     "between 20% (the floor of digits) and 100%"),
    (["train", "digits", "--register", "--model", "1"], "either --register"),
    (["train", "digits", "--family", "small-cnn", "--model", "99"], "no model #99"),
    (["model", "attest", "99"], "no model #99"),
])
def test_refusals_are_one_line(world, args, needle):
    result = world.runner.invoke(app, [*args, "--home", str(world.home), "--as", "bob"],
                                 env={"DATABRIGHT_PASSWORD": PASSWORD})
    assert result.exit_code != 0
    assert needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
