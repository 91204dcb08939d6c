"""One whole CLI flow on a home whose index is SQLite, and one whose index is PostgreSQL.

init --db URL → create → propose → vote → finalize → shares / dividends / withdraw → index
rebuild, with the listings read from the index checked against what the commands did, the
duplicate check of `propose` answered from the item table, and a missing accepted manifest
refused as an integrity error.
"""

from __future__ import annotations

import pytest

from databright.errors import IntegrityError
from databright.storage.cas import LocalBlobStore
from tests.cli.conftest import Cli
from tests.index.conftest import fresh_database_url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cli(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"cli-{request.param}")
    url, drop = fresh_database_url(request.param, root)
    cli = Cli(root / "home")
    out = cli("init", "--db", url)
    assert out["db"] == url
    for name in ("alice", "bob", "carol"):
        cli("account", "new", name, "--fast-kdf")
    cli.inputs = root
    yield cli
    drop()  # type: ignore[operator]


def test_the_whole_flow_through_the_index(cli, digit_folder):
    seed = digit_folder(cli.inputs / "seed", 0, 60)
    cli("dataset", "create", "digits", "--from", str(seed), "--period", "1h", "--stake",
        "0.01eth", "--quorum", "0.3", as_="alice")
    listed = cli("dataset", "list")["datasets"]
    assert [(d["dataset_id"], d["name"]) for d in listed] == [(1, "digits")]
    assert listed[0]["item_count"] == cli("dataset", "show", "digits")["items"]

    bob = cli("propose", "digits", str(digit_folder(cli.inputs / "bob", 100, 10)), as_="bob")
    # carol's batch overlaps bob's pending one by five items: the item table says so
    carol = cli("propose", "digits", str(digit_folder(cli.inputs / "carol", 105, 10)), as_="carol")
    assert (carol["items"], carol["duplicates"]) == (5, 5)
    # a batch of seed items only: nothing new
    again = cli("propose", "digits", str(seed), as_="carol", code=2, json_out=False)
    assert "nothing new" in again.stderr

    rows = cli("proposals", "--open")["proposals"]
    assert [(p["proposal_id"], p["status"], p["item_count"]) for p in rows] == [
        (bob["proposal_id"], "open", 10), (carol["proposal_id"], "open", 5)]
    cli("vote", str(bob["proposal_id"]), "yes", as_="alice")
    cli("dev", "advance", "3601s")
    fin = cli("finalize", str(bob["proposal_id"]), as_="carol")
    assert fin["status"] == "accepted"
    assert cli("finalize", str(carol["proposal_id"]), as_="carol")["status"] == "expired"
    rows = {p["proposal_id"]: p for p in cli("proposals", "digits")["proposals"]}
    assert rows[bob["proposal_id"]]["status"] == "accepted"
    assert rows[bob["proposal_id"]]["yes"] > 0 and rows[carol["proposal_id"]]["status"] == "expired"

    held = cli("shares", as_="bob")["shares"]
    assert [(h["dataset"], h["balance"]) for h in held] == [("digits", fin["shares_minted"])]
    cli("distribute", "digits", "0.001eth", as_="carol")
    owed = cli("dividends", as_="alice")
    assert owed["dividends"][0]["dividends_wei"] > 0
    paid = cli("withdraw", as_="alice")
    assert paid["total_wei"] == owed["total_wei"] > 0
    assert cli("dividends", as_="alice")["total_wei"] == 0
    refund = cli("withdraw", as_="bob")
    assert [p["kind"] for p in refund["paid"]] == ["dividends", "refunded stake"]

    # carol's expired batch is free again, except the five items bob's accepted batch holds
    retry = cli("propose", "digits", str(digit_folder(cli.inputs / "carol2", 105, 10)),
                as_="carol")
    assert (retry["items"], retry["duplicates"]) == (5, 5)

    def listings() -> list:
        return [cli("proposals"), cli("dataset", "list"), cli("shares", as_="bob"),
                cli("dividends", as_="alice")]

    before = listings()
    rebuilt = cli("index", "rebuild")
    assert rebuilt["rebuilt"] is True and rebuilt["from_block"] == 0 and rebuilt["events"] > 10
    assert listings() == before
    assert cli("index", "sync")["ranges"] == 0

    # the accepted batch's manifest vanishes from the store: proposing now is an integrity
    # error, not a duplicate check that silently lets its items be paid again
    store = LocalBlobStore(cli.home / "store")
    shown = cli("proposal", "show", str(bob["proposal_id"]))
    store.path_of(shown["manifest_cid"]).unlink()
    cli("index", "rebuild")
    err = cli("propose", "digits", str(digit_folder(cli.inputs / "late", 100, 5)), as_="carol",
              code=IntegrityError.exit_code, json_out=False)
    assert "missing from the store" in err.stderr and shown["manifest_cid"] in err.stderr
