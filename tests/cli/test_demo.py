"""`databright demo` plays the whole market and its voters catch the bad batch."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from databright.cli.main import app


def test_demo_plays_the_market(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    outcome = {p["proposer"]: p for p in summary["proposals"]}
    assert outcome["bob"]["status"] == outcome["carol"]["status"] == "accepted"
    assert outcome["mallory"]["status"] == "rejected"
    planted = outcome["mallory"]["planted"]
    assert planted["caught"] >= 0.8 * planted["planted"]
    assert outcome["dave"]["duplicates"] == 60 and outcome["dave"]["items"] == 30
    people = {p["name"]: p for p in summary["participants"]}
    assert people["mallory"]["shares"] == 0 and people["bob"]["shares"] > 0
    assert all(people[n]["withdrawn_wei"] > 0 for n in ("alice", "bob", "carol", "dave"))
    # the data earns from its uses only: mallory's rejected stake, frank's training fees and
    # the royalty of erin's 100 predictions — no manual payment
    model = summary["model"]
    fee, price, royalty_bps = 10**17, 5 * 10**15, 3_000
    # the compute job, the model and its checkpoint each paid the training fee
    assert model["training_fees_wei"] == 3 * fee
    # the compute market caught its lying worker, and the receipt verifies
    assert len(model["liars"]) == 1 and model["receipt_verified"] is True
    assert model["worker_fees_wei"] > 0
    assert model["predictions"] == 100 and model["charged_wei"] == 100 * price
    assert model["royalty_wei"] == -(-100 * price * royalty_bps // 10_000)
    assert model["royalty_wei"] + model["owner_wei"] == model["charged_wei"]
    assert model["attested_bps"] == model["accuracy_bps"] and model["correct"] >= 80
    holders = [people[n] for n in ("alice", "bob", "carol", "dave")]
    # the token carries what a distribution cannot split evenly (under supply / 2**32 wei) into
    # the next one: each source reaches the holders to within that
    carry = summary["dataset"]["total_supply"] // 2**32 + len(people)
    for source, total in (("training_fee", 3 * fee), ("prediction_royalty", model["royalty_wei"]),
                          ("rejected_stake", 5 * 10**16)):
        paid = sum(p["dividends_wei"][source] for p in people.values())
        assert abs(paid - total) <= carry, (source, paid, total, carry)
    # everyone who held shares when the model was used earns from it
    assert all(p["dividends_wei"][s] > 0 for p in holders
               for s in ("training_fee", "prediction_royalty"))
    # mallory's stake went to those who held shares when it was rejected: alice and bob
    assert people["alice"]["dividends_wei"]["rejected_stake"] > 0
    assert people["bob"]["dividends_wei"]["rejected_stake"] > 0
    # frank: the model's revenue, and as the job's consumer its unspent budget and the liar's
    # stake (the compute market pays him both)
    assert people["frank"]["withdrawn_wei"] >= model["owner_wei"] + 10**16
    assert people["erin"]["withdrawn_wei"] == model["refund_wei"] == 0  # deposit fully used
    assert summary["verify_ok"] is True
    # the home is left to explore
    assert (tmp_path / "demo" / "config.json").is_file()


def test_demo_refuses_a_used_folder(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path / "used")])
    assert result.exit_code == 2 and "not empty" in result.stderr
