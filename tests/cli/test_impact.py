"""`databright impact` and `databright model list|show`: JSON, human output, the PNG plot, and
one-line refusals of unknown datasets and models."""

from __future__ import annotations

import struct

import pytest

from databright.chain.model_registry import sign
from databright.market import Deployment, money, proposals
from tests.cli.conftest import PASSWORD, Cli

FEE = 10**15  # --training-fee 0.001eth
PRICE = 10**12
SHA = bytes([7]) * 32


@pytest.fixture(scope="module")
def home(tmp_path_factory, digit_folder):
    """alice's dataset `digits` with bob's accepted batch, a model with a self-reported and an
    attested checkpoint, a closed channel of 25 predictions and a direct payment."""
    root = tmp_path_factory.mktemp("impact")
    cli = Cli(root / "home")
    cli("init")
    for name in ("alice", "bob", "dev", "con"):
        cli("account", "new", name, "--fast-kdf")
    cli("dataset", "create", "digits", "--from", str(digit_folder(root / "seed", 0, 40)),
        "--period", "1h", "--evaluator", "alice", "--quorum", "0.3", "--training-fee",
        "0.001eth", "--min-royalty", "25%", as_="alice")
    cli("dataset", "create", "quiet", "--from", str(digit_folder(root / "seed2", 200, 20)),
        as_="bob")
    with Deployment(root / "home") as dep:
        alice, bob, dev, con = (dep.keystore.unlock(n, PASSWORD)
                                for n in ("alice", "bob", "dev", "con"))
        pid = proposals.propose(dep, bob, "digits", digit_folder(root / "b1", 100, 12)).proposal_id
        proposals.vote(dep, alice, pid, True)
        dep.chain.advance_time(3601)
        proposals.finalize(dep, bob, pid)
        ds_id = dep.market.dataset_id_of("digits")
        registry = dep.registry
        model, _ = registry.register(dev, ds_id, "digits-cnn", SHA, PRICE, 3_000, value=FEE)
        registry.submit_checkpoint(dev, model, "bafkreione", SHA, 1, 8_100, b"", value=FEE)
        att = registry.attestation(model, SHA, entries=2, metric_bps=9_200)
        registry.submit_checkpoint(dev, model, "bafkreitwo", SHA, 2, 9_200, sign(att, alice),
                                   value=FEE)
        channel, _ = registry.open_channel(con, model, timeout=3600, deposit=10**14)
        voucher = registry.voucher(channel, 25 * PRICE)
        registry.close(dev, channel, voucher.amount, sign(voucher, con))
        money.distribute(dep, con, "digits", 10**15)
        cli.token = dep.token(dep.market.get_dataset(ds_id).share_token)
        cli.accounts = {n: dep.keystore.address_of(n) for n in ("alice", "bob")}
    return cli


def test_impact_json(home):
    out = home("impact", "digits")["impact"]
    assert out["dataset"] == "digits" and out["entry_count"] == 2
    (model,) = out["models"]
    assert [(c["entries"], c["attested"], c["best"]) for c in model["checkpoints"]] == [
        (1, False, False), (2, True, True)]
    assert model["checkpoints"][1]["items"] == out["item_count"]
    by_source = {s["source"]: s["distributed_wei"] for s in out["sources"]}
    assert by_source["training_fee"] == 3 * FEE and by_source["direct_payment"] == 10**15
    assert by_source["prediction_royalty"] == -(-25 * PRICE * 3_000 // 10_000)
    people = {c["account"]: c for c in out["contributors"]}
    alice, bob = people[home.accounts["alice"]], people[home.accounts["bob"]]
    assert alice["models"] == bob["models"] == [1]
    with Deployment(home.home) as dep:
        token = dep.token(home.token.address)
        for c in (alice, bob):
            assert sum(c["dividends"].values()) == token.dividends_of(c["account"]) + \
                token.withdrawn_of(c["account"])
            assert c["shares"] == token.balanceOf(c["account"])


def test_impact_plot_is_a_real_png(home, tmp_path):
    target = tmp_path / "impact.png"
    out = home("impact", "digits", "--plot", str(target))
    assert out["plot"] == str(target)
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (700, 450) and len(data) > 5_000


def test_impact_human_output(home):
    result = home("impact", "digits", json_out=False)
    assert "digits-cnn" in result.stdout and "training fees" in result.stdout
    assert "self-reported" in result.stdout and not result.stdout.lstrip().startswith("{")


def test_unknown_dataset_is_refused_in_one_line(home, tmp_path):
    result = home("impact", "nope", code=3, json_out=False)
    assert result.stderr.strip() == "error: no dataset named 'nope'; known: digits, quiet"
    result = home("impact", "digits", "--plot", str(tmp_path / "x.txt"), code=2, json_out=False)
    assert len(result.stderr.strip().splitlines()) == 1 and "PNG" in result.stderr


def test_model_list_and_show(home):
    (m,) = home("model", "list")["models"]
    assert (m["name"], m["dataset"], m["best_checkpoint"], m["best_metric_bps"]) == (
        "digits-cnn", "digits", 2, 9_200)
    assert (m["predictions_paid"], m["paid_wei"], m["channels"]) == (25, 25 * PRICE, 1)
    shown = home("model", "show", "1")
    assert shown["best"]["cid"] == "bafkreitwo"
    assert shown["best"]["attestor"] == home.accounts["alice"]
    assert shown["best"]["file_sha256"] == "0x" + SHA.hex()
    assert [c["attested"] for c in shown["checkpoints"]] == [False, True]
    assert shown["channels"][0]["status"] == "closed"
    human = home("model", "show", "1", json_out=False).stdout
    assert "self-reported" in human and "predictions paid: 25" in human
    assert home("model", "list", "--dataset", "digits")["models"][0]["model_id"] == 1


def test_unknown_model_is_refused_in_one_line(home):
    result = home("model", "show", "7", code=3, json_out=False)
    assert result.stderr.strip() == "error: no model 7 in the index (models are 1..1)"


def test_a_dataset_nothing_used_yet(home, tmp_path):
    out = home("impact", "quiet", "--plot", str(tmp_path / "quiet.png"))["impact"]
    assert out["models"] == [] and out["total_distributed"] == 0
    (bob,) = out["contributors"]
    assert bob["account"] == home.accounts["bob"] and bob["entries"] == [0]
    assert bob["models"] == [] and set(bob["dividends"].values()) == {0}
    assert (tmp_path / "quiet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert home("model", "list", "--dataset", "quiet")["models"] == []
    assert "no model trained on it yet" in home("impact", "quiet", json_out=False).stdout
