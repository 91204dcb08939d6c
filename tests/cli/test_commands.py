"""Every command's success path, with the JSON keys scripts rely on."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq


def test_init_again_is_safe_and_reports(market):
    out = market("init")
    assert out["created"] is False
    assert out["datasets"] == 1
    assert {a["name"] for a in out["accounts"]} == {"alice", "bob", "carol"}


def test_accounts(market):
    from databright.market.deployment import DEV_FUNDING_WEI

    listed = market("account", "list")["accounts"]
    assert [a["name"] for a in listed] == ["alice", "bob", "carol"]
    assert [a["default"] for a in listed] == [True, False, False]
    # the faucet's 100 ETH each; alice has paid the gas of creating the dataset
    assert 0 < listed[0]["balance_wei"] < DEV_FUNDING_WEI
    assert all(a["balance_wei"] <= DEV_FUNDING_WEI for a in listed[1:])
    bob = market("account", "show", "bob")
    assert bob["address"].startswith("0x") and bob["default"] is False


def test_dataset_show_and_list(market):
    ds = market("dataset", "show", "digits")
    assert {"dataset_id", "name", "share_token", "items", "entries", "rules"} <= set(ds)
    assert ds["dataset_id"] == 1 and ds["entries"] == 1 and 0 < ds["items"] < 80
    alice = market("account", "show", "alice")["address"]
    assert ds["rules"]["evaluator"] == alice and ds["initiator"] == alice
    assert ds["rules"]["quorum_bps"] == 3000 and ds["rules"]["voting_period"] == 3600
    assert ds["total_supply"] == market("shares", as_="alice")["shares"][0]["balance"]
    assert [d["name"] for d in market("dataset", "list")["datasets"]] == ["digits"]


def test_curation_loop(market, digit_folder):
    batch = digit_folder(market.inputs / "bob", 100, 40)
    prop = market("propose", "digits", str(batch), as_="bob")
    assert {"proposal_id", "manifest_cid", "merkle_root", "items", "duplicates"} <= set(prop)
    assert prop["items"] == 40 and prop["duplicates"] == 0 and prop["refused"] == 0
    assert len(prop["merkle_root"]) == 66 and prop["merkle_root"].startswith("0x")
    pid = str(prop["proposal_id"])
    bob = market("account", "show", "bob")["address"]
    shown = market("proposal", "show", pid)
    assert shown["status"] == "open" and shown["items"] == 40
    assert shown["check"]["ok"] is True and shown["check"]["recomputed_items"] == 40
    assert shown["proposal_id"] == int(pid) and shown["dataset"] == "digits"
    assert shown["proposer"] == bob and shown["yes"] == shown["no"] == 0
    assert (shown["manifest_cid"], shown["merkle_root"]) == (prop["manifest_cid"],
                                                             prop["merkle_root"])
    assert shown["ingest"]["items"] == 40 and shown["seconds_left"] > 0
    out = market("evaluate", pid, "--post", as_="alice")
    ev, report = out["evaluation"], out["evaluation"]["report"]
    assert ev["proposal_id"] == int(pid) and ev["cached"] is False
    assert report["new"] == 40 and report["duplicates"] == 0
    assert 0.0 <= report["accuracy_before"] <= 1.0 and 0.0 <= report["accuracy_after"] <= 1.0
    assert report["gain"] == report["accuracy_after"] - report["accuracy_before"]
    assert len(report["items"]) == 40
    assert {"cid", "label", "value", "suspect"} <= set(report["items"][0])
    assert out["posted"] == {"proposal_id": int(pid), "score_bps": report["score_bps"],
                             "evaluator": market("account", "show", "alice")["address"]}
    assert market("proposal", "show", pid)["score_bps"] == report["score_bps"]
    again = market("evaluate", pid)["evaluation"]
    assert again["cached"] is True and again["report_cid"] == ev["report_cid"]
    vote = market("vote", pid, "yes", as_="alice")
    alice = market("account", "show", "alice")["address"]
    assert vote["proposal_id"] == int(pid) and vote["support"] is True
    assert vote["voter"] == alice
    assert vote["weight"] == market("shares", as_="alice")["shares"][0]["balance"]
    fin = market("finalize", pid, as_="carol")
    assert fin["status"] == "accepted" and fin["shares_minted"] > 0
    holdings = market("shares", as_="bob")["shares"]
    assert holdings[0]["dataset"] == "digits" and holdings[0]["balance"] == fin["shares_minted"]
    listed = market("proposals", "digits")["proposals"]
    assert [p["status"] for p in listed if p["proposal_id"] == int(pid)] == ["accepted"]
    assert market("proposals", "--open")["proposals"] == []


def test_transfer_pay_dividends_withdraw(market):
    before = market("shares", as_="alice")["shares"][0]["balance"]
    sent = market("transfer", "digits", "carol", "1.5", as_="alice")
    after = market("shares", as_="alice")["shares"][0]["balance"]
    assert before - after == sent["amount"] == 15 * 10**17 and sent["balance"] == after
    assert sent["receiver"] == market("account", "show", "carol")["address"]
    paid = market("distribute", "digits", "1eth", as_="carol")
    assert paid["amount_wei"] == 10**18 and paid["payer"] == sent["receiver"]
    owed = market("dividends", as_="carol")
    held = market("shares", as_="carol")["shares"][0]
    expected = 10**18 * held["balance"] // held["total_supply"]  # carol's part of her 1 ETH
    # per-share rounding (MAG = 2**32) holds back < balance / 2**32 + 1 wei, carried into the
    # next distribution; never above
    assert expected - (held["balance"] >> 32) - 1 <= owed["total_wei"] <= expected
    paid = market("withdraw", as_="carol")
    assert paid["total_wei"] == owed["total_wei"]
    assert market("dividends", as_="carol")["total_wei"] == 0


def test_verify_and_export(market, tmp_path, monkeypatch):
    check = market("verify", "digits")
    assert check["ok"] is True and check["problems"] == [] and check["onchain_proofs"]
    assert check["items"] == market("dataset", "show", "digits")["items"]
    assert all(p["verified_on_chain"] for p in check["onchain_proofs"])
    shown = market("dataset", "show", "digits")
    train_n, val_n = shown["items"], shown["validation_items"]
    assert train_n > 0 and val_n > 0

    from databright.storage.cas import BlobStore

    opened: Counter[str] = Counter()
    real_open = BlobStore.open

    def counting_open(self, cid):
        opened[cid] += 1
        return real_open(self, cid)

    monkeypatch.setattr(BlobStore, "open", counting_open)
    pq_out = tmp_path / "pq"
    res = market("export", "digits", str(pq_out), "--format", "parquet")
    monkeypatch.undo()
    assert res["split_items"] == {"train": train_n, "validation": val_n}
    assert res["items"] == train_n + val_n and res["entry_count"] == shown["entries"]
    assert sorted(p.relative_to(pq_out).as_posix() for p in pq_out.rglob("*") if p.is_file()) == [
        "data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet",
        "databright-export.json"]
    train = pq.read_table(pq_out / "data/train-00000-of-00001.parquet")
    val = pq.read_table(pq_out / "data/validation-00000-of-00001.parquet")
    assert train.num_rows == train_n and val.num_rows == val_n
    assert not set(train["cid"].to_pylist()) & set(val["cid"].to_pylist())
    exported = train["cid"].to_pylist() + val["cid"].to_pylist()
    assert {c: opened[c] for c in exported} == dict.fromkeys(exported, 1)  # each blob hashed once
    info = json.loads((pq_out / "databright-export.json").read_text())
    assert info["dataset"] == "digits" and info["format"] == "parquet"
    assert {s: v["item_count"] for s, v in info["splits"].items()} == res["split_items"]

    img = tmp_path / "img"
    market("export", "digits", str(img), "--format", "folder")
    for split, n in (("train", train_n), ("validation", val_n)):
        files = list((img / split).rglob("*.png"))
        assert len(files) == n and {f.parent.parent.name for f in files} == {split}
        assert {f.parent.name for f in files} <= set(shown["labels"])

    cr = tmp_path / "cr"
    market("export", "digits", str(cr), "--format", "croissant")
    meta = json.loads((cr / "croissant.json").read_text())
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    splits = next(rs for rs in meta["recordSet"] if rs["@id"] == "splits")
    assert [d["splits/name"] for d in splits["data"]] == ["train", "validation"]
    assert json.loads((cr / "databright-export.json").read_text())["croissant"] == "croissant.json"

    one = tmp_path / "val-only"
    res = market("export", "digits", str(one), "--format", "parquet", "--split", "validation")
    assert res["split_items"] == {"validation": val_n}
    assert [p.name for p in (one / "data").iterdir()] == ["validation-00000-of-00001.parquet"]
    bad = market("export", "digits", str(tmp_path / "x"), "--split", "test", code=2, json_out=False)
    assert "unknown split 'test'" in bad.stderr + bad.stdout


def test_withdraw_from_one_dataset(market):
    from databright.errors import NothingToWithdrawError

    market("distribute", "digits", "0.5eth", as_="bob")
    waiting = market("dividends", as_="alice")["dividends"]
    owed = {r["dataset"]: r["dividends_wei"] for r in waiting}["digits"]
    assert owed > 0
    out = market("withdraw", "--dataset", "digits", as_="alice")
    assert out["paid"] == [{"dataset": "digits", "kind": "dividends", "amount_wei": owed}]
    assert out["total_wei"] == owed
    assert {r["dataset"]: r["dividends_wei"] for r in
            market("dividends", as_="alice")["dividends"]}.get("digits", 0) == 0
    again = market("withdraw", "--dataset", "digits", as_="alice",
                   code=NothingToWithdrawError.exit_code)
    assert "no dividends waiting in digits" in again.stderr


def test_dev_advance_moves_the_clock(market):
    out = market("dev", "advance", "2h")
    assert out["advanced"] == 7200
    assert 7200 <= out["now"] - out["before"] <= 7200 + 60  # the wall clock runs on meanwhile


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
