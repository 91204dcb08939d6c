"""Every command's success path, with the JSON keys scripts rely on."""

from __future__ import annotations

import pyarrow.parquet as pq


def test_init_again_is_safe_and_reports(market):
    out = market("init")
    assert out["created"] is False
    assert out["datasets"] == 1
    assert {a["name"] for a in out["accounts"]} == {"alice", "bob", "carol"}


def test_accounts(market):
    listed = market("account", "list")["accounts"]
    assert [a["name"] for a in listed] == ["alice", "bob", "carol"]
    assert all(a["balance_wei"] > 0 for a in listed)
    bob = market("account", "show", "bob")
    assert bob["address"].startswith("0x") and bob["default"] is False


def test_dataset_show_and_list(market):
    ds = market("dataset", "show", "digits")
    assert {"name", "share_token", "items", "entries", "rules"} <= set(ds)
    assert ds["entries"] == 1 and 0 < ds["items"] < 80
    assert ds["rules"]["evaluator"] is not None
    assert [d["name"] for d in market("dataset", "list")["datasets"]] == ["digits"]


def test_curation_loop(market, digit_folder):
    batch = digit_folder(market.inputs / "bob", 100, 40)
    prop = market("propose", "digits", str(batch), as_="bob")
    assert {"proposal", "manifest_cid", "merkle_root", "items", "new", "duplicates"} <= set(prop)
    assert prop["items"] == prop["new"] == 40 and prop["duplicates"] == 0
    pid = str(prop["proposal"])
    shown = market("proposal", "show", pid)
    assert shown["status"] == "open" and shown["items"] == 40
    assert shown["check"]["ok"] is True
    for key in ("id", "dataset", "proposer", "manifest_cid", "merkle_root", "yes", "no", "deadline"):
        assert key in shown
    report = market("evaluate", pid, "--post", as_="alice")
    for key in ("accuracy_before", "accuracy_after", "gain", "new", "duplicates",
                "near_duplicates", "unknown_labels", "suspects", "items"):
        assert key in report
    assert {"cid", "label", "value", "suspect"} <= set(report["items"][0])
    vote = market("vote", pid, "yes", as_="alice")
    assert vote == {**vote, "proposal": int(pid), "support": "yes"} and vote["weight"] > 0
    fin = market("finalize", pid, as_="carol")
    assert fin["status"] == "accepted" and fin["shares_minted"] > 0
    holdings = market("shares", as_="bob")["holdings"]
    assert holdings[0]["dataset"] == "digits" and holdings[0]["balance"] == fin["shares_minted"]
    listed = market("proposals", "digits")["proposals"]
    assert [p["status"] for p in listed if p["proposal_id"] == int(pid)] == ["accepted"]
    assert market("proposals", "--open")["proposals"] == []


def test_transfer_pay_dividends_withdraw(market):
    before = market("shares", as_="alice")["holdings"][0]["balance"]
    market("transfer", "digits", "carol", "1.5", as_="alice")
    after = market("shares", as_="alice")["holdings"][0]["balance"]
    assert before - after == 15 * 10**17
    market("pay", "digits", "1eth", as_="carol")
    owed = market("dividends", as_="carol")
    assert owed["total_wei"] > 0
    paid = market("withdraw", as_="carol")
    assert paid["total_wei"] == owed["total_wei"]
    assert market("dividends", as_="carol")["total_wei"] == 0


def test_verify_and_export(market, tmp_path):
    check = market("verify", "digits")
    assert check["ok"] is True and check["onchain_proofs"]
    assert all(p["verified_on_chain"] for p in check["onchain_proofs"])
    market("export", "digits", str(tmp_path / "pq"), "--format", "parquet")
    files = list((tmp_path / "pq").rglob("*.parquet"))
    table = pq.read_table(files[0])
    assert {"cid", "label"} <= set(table.column_names)
    market("export", "digits", str(tmp_path / "img"), "--format", "folder")
    assert any((tmp_path / "img").rglob("*.png"))
    market("export", "digits", str(tmp_path / "cr"), "--format", "croissant")
    assert any((tmp_path / "cr").rglob("*.json"))


def test_dev_advance_moves_the_clock(market):
    out = market("dev", "advance", "2h")
    assert out["now"] - out["before"] >= 7200


def test_human_output_has_no_json(market):
    result = market("dataset", "show", "digits", json_out=False)
    assert "digits" in result.stdout and "quorum" in result.stdout


def test_proposal_show_flags_a_lying_proposer(market, digit_folder):
    from databright.market.context import Deployment
    from databright.storage.cid import cid_of_bytes
    from databright.storage.ingest import ingest
    from tests.cli.conftest import PASSWORD

    batch = digit_folder(market.inputs / "liar", 500, 10)
    with Deployment(market.home) as dep:
        honest = ingest(batch, dep.store)
        bob = dep.keystore.unlock("bob", PASSWORD)
        ds = dep.market.dataset_id_of("digits")
        lying, _ = dep.market.propose(bob, ds, honest.manifest_cid, b"\x11" * 32, 500)
        never_stored = cid_of_bytes(b"a manifest that was never stored")
        ghost, _ = dep.market.propose(bob, ds, never_stored, b"\x22" * 32, 5)
    shown = market("proposal", "show", str(lying))
    problems = " ".join(shown["check"]["problems"])
    assert shown["check"]["ok"] is False
    assert "MERKLE ROOT MISMATCH" in problems and "ITEM COUNT MISMATCH" in problems
    assert "WARNING: MERKLE ROOT MISMATCH" in market("proposal", "show", str(lying), json_out=False).stdout
    missing = market("proposal", "show", str(ghost))["check"]
    assert missing["ok"] is False and "manifest unreadable" in missing["problems"][0]


def test_verify_names_a_corrupted_blob(tmp_path, digit_folder):
    from databright.market.context import Deployment
    from databright.storage.manifest import read_manifest
    from tests.cli.conftest import Cli

    cli = Cli(tmp_path / "home")
    cli("init")
    cli("account", "new", "ann", "--fast-kdf")
    cli("dataset", "create", "tiny", "--from", str(digit_folder(tmp_path / "seed", 0, 30)), as_="ann")
    with Deployment(cli.home) as dep:
        entry = dep.market.get_entry(1, 0)
        victim = read_manifest(dep.store, entry.manifest_cid)[3].cid
        path = dep.store.path_of(victim)
    path.chmod(0o644)
    path.write_bytes(b"bit rot")
    result = cli("verify", "tiny", code=11)
    assert victim in result.stdout + result.stderr and "corrupt" in (result.stdout + result.stderr)
    report = cli("verify", "tiny", code=11, json_out=True)
    assert "corrupt" in report.stdout
