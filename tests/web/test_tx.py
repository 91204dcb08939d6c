"""Wallet transactions over HTTP: what a page asks the wallet to sign, signed here with
eth-account keys and sent through the app's own JSON-RPC endpoint (as a browser wallet on the
embedded chain does), or sent by the server for a local session; the index follows."""

from __future__ import annotations

import io
import time
import zipfile
from contextlib import closing

import httpx
import pytest
from eth_account import Account
from sqlalchemy import func, select

from databright.index.cache import ChannelRow, ProposalRow, VoteRow
from tests.web.test_auth import siwe_login
from tests.web.web_world import PASSWORD, Served


@pytest.fixture(scope="module")
def served(web_home):
    with Served(web_home.home, sync_seconds=0.2) as srv:
        yield srv


def key_of(served, name: str):
    return served.ctx.dep.keystore.unlock(name, PASSWORD)


def rpc(client: httpx.Client, method: str, *params):
    r = client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": list(params)})
    body = r.json()
    if "error" in body:
        raise AssertionError(f"{method}: {body['error']}")
    return body["result"]


def wallet_send(client: httpx.Client, account, tx: dict) -> str:
    """What a browser wallet does with one of our transactions: estimate, sign, send via /rpc."""
    value = int(tx["value"])
    probe = {"from": account.address, "to": tx["to"], "data": tx["data"], "value": hex(value)}
    gas = int(rpc(client, "eth_estimateGas", probe), 16)
    nonce = int(rpc(client, "eth_getTransactionCount", account.address, "pending"), 16)
    base = int(rpc(client, "eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
    tip = int(rpc(client, "eth_maxPriorityFeePerGas"), 16)
    chain_id = int(rpc(client, "eth_chainId"), 16)
    signed = Account.sign_transaction({
        "type": 2, "chainId": chain_id, "nonce": nonce, "to": tx["to"], "data": tx["data"],
        "value": value, "gas": gas, "maxFeePerGas": 2 * base + tip,
        "maxPriorityFeePerGas": tip}, account.key)
    return rpc(client, "eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())


def wait_indexed(client: httpx.Client, tx_hash: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = client.get(f"/api/tx/status/{tx_hash}").json()
        if st["mined"] and st["indexed"]:
            return st
        time.sleep(0.1)
    raise AssertionError(f"{tx_hash} not indexed: {st}")


def wallet_session(served, name: str) -> tuple[httpx.Client, str, object]:
    """A client signed in with SIWE by ``name``'s key (as their browser wallet would)."""
    account = key_of(served, name)
    client = httpx.Client(base_url=served.url, timeout=60)
    r = siwe_login(client, account)
    assert r.status_code == 200, r.text
    return client, r.json()["csrf"], account


def local_session(served, name: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=served.url, timeout=120)
    r = client.post("/api/auth/local", json={"account": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf"]


def tally(served, proposal_id: int) -> tuple[int, int, int]:
    with served.ctx.read() as s:
        p = s.get(ProposalRow, proposal_id)
        votes = s.execute(select(func.count()).select_from(VoteRow)
                          .where(VoteRow.proposal_id == proposal_id)).scalar_one()
        return p.yes, p.no, votes


def test_writes_need_sign_in_and_csrf(served):
    with httpx.Client(base_url=served.url) as anon:
        r = anon.post("/api/tx/vote", json={"proposal_id": 2, "support": True})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "not_signed_in")
    client, _, _ = wallet_session(served, "bob")
    with closing(client):
        r = client.post("/api/tx/vote", json={"proposal_id": 2, "support": True})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "csrf")


def test_wallet_votes_through_the_rpc_endpoint_and_the_tally_changes(served):
    client, csrf, bob = wallet_session(served, "bob")
    with closing(client):
        before = tally(served, 2)
        r = client.post("/api/tx/vote", json={"proposal_id": 2, "support": True},
                        headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["chain_id"] == served.ctx.config.chain_id
        [tx] = body["transactions"]
        assert tx["to"] == served.ctx.config.contracts["DataMarket"] and tx["value"] == "0"
        # a wallet session's server refuses to sign for it
        r = client.post("/api/tx/send", json={"transactions": [tx]},
                        headers={"X-CSRF-Token": csrf})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "wallet_signs")
        tx_hash = wallet_send(client, bob, tx)
        st = wait_indexed(client, tx_hash)
        assert st["status"] == 1
        yes, no, votes = tally(served, 2)
        assert yes > before[0] and no == before[1] and votes == before[2] + 1
        r = client.post("/api/tx/vote", json={"proposal_id": 2, "support": False},
                        headers={"X-CSRF-Token": csrf})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "already_voted")


def test_no_shares_no_vote_and_unknown_proposal(served):
    client, csrf, _ = wallet_session(served, "carol")
    with closing(client):
        h = {"X-CSRF-Token": csrf}
        r = client.post("/api/tx/vote", json={"proposal_id": 2, "support": True}, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "no_voting_power")
        r = client.post("/api/tx/vote", json={"proposal_id": 99, "support": True}, headers=h)
        assert r.status_code == 404
        r = client.post("/api/tx/finalize", json={"proposal_id": 1}, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "proposal_not_open")
        r = client.post("/api/tx/vote", json={"proposal_id": "two"}, headers=h)
        assert r.status_code == 422


def test_local_session_votes_and_finalizes_via_the_server(served):
    client, csrf = local_session(served, "alice")
    h = {"X-CSRF-Token": csrf}
    with closing(client):
        before = tally(served, 2)
        txs = client.post("/api/tx/vote", json={"proposal_id": 2, "support": False},
                          headers=h).json()["transactions"]
        r = client.post("/api/tx/send", json={"transactions": txs}, headers=h)
        assert r.status_code == 200, r.text
        wait_indexed(client, r.json()["hashes"][0])
        _, no, votes = tally(served, 2)
        assert no > before[1] and votes == before[2] + 1
        # the server signs only transactions to this market's contracts
        bad = [{"to": Account.create().address, "data": "0x", "value": "1"}]
        r = client.post("/api/tx/send", json={"transactions": bad}, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "unknown_contract")
        with served.ctx.chain_lock:
            served.ctx.dep.chain.advance_time(2 * 3600)
        txs = client.post("/api/tx/finalize", json={"proposal_id": 2},
                          headers=h).json()["transactions"]
        hashes = client.post("/api/tx/send", json={"transactions": txs}, headers=h).json()
        wait_indexed(client, hashes["hashes"][0])
        with served.ctx.read() as s:
            assert s.get(ProposalRow, 2).status in ("accepted", "rejected")


def test_withdraw_everything_then_nothing(served):
    client, csrf, bob = wallet_session(served, "bob")
    h = {"X-CSRF-Token": csrf}
    with closing(client):
        before = served.ctx.dep.chain.balance(bob.address)
        r = client.post("/api/tx/withdraw", json={}, headers=h)
        assert r.status_code == 200, r.text
        txs = r.json()["transactions"]
        assert any("dividends" in t["description"] for t in txs)
        for tx in txs:
            wait_indexed(client, wallet_send(client, bob, tx))
        assert served.ctx.dep.chain.balance(bob.address) > before  # 1 ETH was distributed
        r = client.post("/api/tx/withdraw", json={}, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "nothing_to_withdraw")


def test_open_a_channel(served):
    client, csrf = local_session(served, "carol")
    h = {"X-CSRF-Token": csrf}
    with closing(client):
        r = client.post("/api/tx/open-channel", json={"model_id": 1, "deposit_wei": "0"},
                        headers=h)
        assert r.status_code == 422
        r = client.post("/api/tx/open-channel",
                        json={"model_id": 1, "deposit_wei": str(10**16)}, headers=h)
        assert r.status_code == 200, r.text
        [tx] = r.json()["transactions"]
        assert tx["value"] == str(10**16)
        [tx_hash] = client.post("/api/tx/send", json={"transactions": [tx]},
                                headers=h).json()["hashes"]
        wait_indexed(client, tx_hash)
        carol = served.ctx.dep.keystore.address_of("carol")
        with served.ctx.read() as s:
            rows = s.execute(select(ChannelRow).where(ChannelRow.payer == carol)).scalars().all()
        assert [(c.model_id, c.deposit, c.status) for c in rows] == [(1, 10**16, "open")]


def _png_files(digit_folder, tmp_path, start: int, count: int) -> list[tuple[str, bytes]]:
    folder = digit_folder(tmp_path / "batch", start, count)
    return [(f"batch/{p.relative_to(folder).as_posix()}", p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()]


def test_propose_from_an_uploaded_folder(served, digit_folder, tmp_path):
    client, csrf = local_session(served, "carol")
    h = {"X-CSRF-Token": csrf}
    files = _png_files(digit_folder, tmp_path, 300, 12)
    with closing(client):
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", (name, data, "image/png")) for name, data in files])
        assert r.status_code == 200, r.text
        body = r.json()
        assert [t["description"].split()[0] for t in body["transactions"]] == ["Commit",
                                                                                "Propose"]
        assert body["transactions"][1]["value"] == body["proposal"]["stake_wei"]
        assert body["proposal"]["items"] == 12
        with served.ctx.read() as s:
            count = s.execute(select(func.count()).select_from(ProposalRow)).scalar_one()
        hashes = client.post("/api/tx/send", json={"transactions": body["transactions"]},
                             headers=h).json()["hashes"]
        wait_indexed(client, hashes[-1])
        with served.ctx.read() as s:
            newest = s.execute(select(ProposalRow).order_by(ProposalRow.proposal_id.desc())
                               ).scalars().first()
        assert newest.proposal_id == count + 1 and newest.item_count == 12
        assert newest.manifest_cid == body["proposal"]["manifest_cid"]


def test_upload_limits_and_hostile_paths(served, digit_folder, tmp_path):
    client, csrf = local_session(served, "carol")
    h = {"X-CSRF-Token": csrf}
    files = _png_files(digit_folder, tmp_path, 400, 3)
    with closing(client):
        for bad in ("../evil.png", "/etc/evil.png", "a/../../evil.png", "a\\b.png"):
            r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                            files=[("files", (bad, files[0][1], "image/png"))])
            assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_path"), bad
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("3/ok.png", files[0][1])
            zf.writestr("../../escape.png", files[1][1])
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", ("batch.zip", buf.getvalue(), "application/zip"))])
        assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_path")
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", ("batch.zip", b"not a zip", "application/zip"))])
        assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_archive")
        # a good archive (one top folder) stages a proposal
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in files:
                zf.writestr(name, data)
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", ("batch.zip", buf.getvalue(), "application/zip"))])
        assert r.status_code == 200, r.text
        assert r.json()["proposal"]["items"] == 3
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", ("x.png", b"x" * 10, "image/png"))],
                        )
        assert r.status_code in (400, 422)


def test_status_of_an_unknown_transaction(served):
    st = served.client.get("/api/tx/status/0x" + "ab" * 32).json()
    assert st == {"hash": "0x" + "ab" * 32, "mined": False, "status": None, "block": None,
                  "indexed": False}
    assert served.client.get("/api/tx/status/0x12").status_code == 422


@pytest.fixture(scope="module")
def attested(served):
    """Model 1's checkpoint attested by the dataset's evaluator (the app serves only those)."""
    from databright.market.models import attest_checkpoint

    alice = key_of(served, "alice")
    with served.ctx.chain_lock:
        attest_checkpoint(served.ctx.dep, alice, 1)
    served.ctx.sync_now()


def test_try_it_refuses_a_model_without_an_attested_checkpoint(served):
    """(Runs before the ``attested`` fixture: the world's checkpoint is self-reported.)"""
    client, csrf = local_session(served, "dave")
    with closing(client):
        r = client.post("/api/models/1/try/quote", json={"n": 1}, headers={"X-CSRF-Token": csrf})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "no_checkpoint")


def _digit_png(digit_folder, tmp_path) -> tuple[str, bytes]:
    folder = digit_folder(tmp_path / "try", 500, 1)
    [path] = [p for p in folder.rglob("*") if p.is_file()]
    return path.name, path.read_bytes()


@pytest.fixture
def carol_channel(served):
    """carol's open 0.01 ETH channel to model 1: the one test_open_a_channel opened when it ran
    in this process, else opened here (the tests of a module may run in different processes)."""
    carol = served.ctx.dep.keystore.address_of("carol")
    with served.ctx.read() as s:
        open_ = s.execute(select(ChannelRow).where(ChannelRow.payer == carol,
                                                   ChannelRow.status == "open")).first()
    if open_ is None:
        client, csrf = local_session(served, "carol")
        with closing(client):
            r = client.post("/api/tx/open-channel", headers={"X-CSRF-Token": csrf},
                            json={"model_id": 1, "deposit_wei": str(10**16)})
            assert r.status_code == 200, r.text
            [tx_hash] = client.post("/api/tx/send", headers={"X-CSRF-Token": csrf}, json={
                "transactions": r.json()["transactions"]}).json()["hashes"]
            wait_indexed(client, tx_hash)


def test_try_it_local_session_pays_from_its_channel(served, attested, carol_channel,
                                                     digit_folder, tmp_path):
    """carol has a 0.01 ETH channel; the server signs her vouchers."""
    client, csrf = local_session(served, "carol")
    h = {"X-CSRF-Token": csrf}
    name, png = _digit_png(digit_folder, tmp_path)
    with closing(client):
        q = client.post("/api/models/1/try/quote", json={"n": 1}, headers=h).json()
        price = int(q["price_wei"])
        assert q["channel_id"] is not None and int(q["amount_wei"]) == price
        r = client.post("/api/models/1/try", headers=h, data={},
                        files=[("files", (name, png, "image/png"))])
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["predictions"]) == 1 and body["charged"] == str(price)
        q2 = client.post("/api/models/1/try/quote", json={"n": 2}, headers=h).json()
        assert int(q2["accepted_wei"]) == price and int(q2["amount_wei"]) == 3 * price


def test_try_it_wallet_opens_a_channel_signs_vouchers_and_the_owner_redeems(
        served, attested, digit_folder, tmp_path):
    from eth_account.messages import encode_typed_data

    from databright.market.channels import close_channel

    client, csrf, bob = wallet_session(served, "bob")
    h = {"X-CSRF-Token": csrf}
    name, png = _digit_png(digit_folder, tmp_path)
    with closing(client):
        q = client.post("/api/models/1/try/quote", json={"n": 1}, headers=h).json()
        assert q["voucher"] is None  # bob has no channel yet
        txs = client.post("/api/tx/open-channel", headers=h, json={
            "model_id": 1, "deposit_wei": q["suggested_deposit_wei"]}).json()["transactions"]
        wait_indexed(client, wallet_send(client, bob, txs[0]))
        q = client.post("/api/models/1/try/quote", json={"n": 1}, headers=h).json()
        voucher = q["voucher"]
        assert voucher["primaryType"] == "Voucher"

        def sign(key, typed) -> str:
            signed = Account.sign_message(encode_typed_data(full_message=typed), key)
            return "0x" + bytes(signed.signature).hex()

        form = {"channel_id": str(q["channel_id"]), "amount": q["amount_wei"]}
        files = [("files", (name, png, "image/png"))]
        r = client.post("/api/models/1/try", headers=h, files=files,
                        data={**form, "signature": sign("0x" + "77" * 32, voucher)})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "bad_signature")
        good = sign(bob.key, voucher)
        r = client.post("/api/models/1/try", headers=h, files=files,
                        data={**form, "signature": good})
        assert r.status_code == 200, r.text
        assert r.json()["charged"] == q["amount_wei"]
        r = client.post("/api/models/1/try", headers=h, files=files,
                        data={**form, "signature": good})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "voucher_replayed")
        # the owner redeems the voucher from this home, as `databright channel close` does
        dave = served.ctx.dep.keystore.unlock("dave", PASSWORD)
        with served.ctx.chain_lock:
            settled = close_channel(served.ctx.dep, dave, q["channel_id"])
        assert settled.amount == int(q["amount_wei"])


def test_upload_size_and_count_limits(served, monkeypatch):
    from databright.web.app import tx as tx_routes

    client, csrf = local_session(served, "carol")
    h = {"X-CSRF-Token": csrf}
    with closing(client):
        monkeypatch.setattr(tx_routes, "MAX_UPLOAD_BYTES", 4096)
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", ("3/a.png", b"x" * 8192, "image/png"))])
        assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")
        monkeypatch.setattr(tx_routes, "MAX_UPLOAD_BYTES", 64 * 1024 * 1024)
        monkeypatch.setattr(tx_routes, "MAX_ARCHIVE_MEMBERS", 2)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for i in range(3):
                zf.writestr(f"3/{i}.png", b"x")
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", ("b.zip", buf.getvalue(), "application/zip"))])
        assert (r.status_code, r.json()["error"]["code"]) == (413, "too_many_files")
        monkeypatch.setattr(tx_routes, "MAX_UNPACKED_BYTES", 10)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("3/big.png", b"\0" * 10_000)  # a small zip that unpacks large
        r = client.post("/api/tx/propose", data={"dataset": "digits"}, headers=h,
                        files=[("files", ("b.zip", buf.getvalue(), "application/zip"))])
        assert (r.status_code, r.json()["error"]["code"]) == (413, "archive_too_large")
        r = client.post("/api/tx/propose", headers=h, json={"dataset": "digits"})
        assert (r.status_code, r.json()["error"]["code"]) == (415, "multipart_required")
