"""The prediction server over real HTTP (uvicorn on 127.0.0.1): paid predictions end to end on
the embedded chain, every refusal with its status and nothing charged, restarts."""

from __future__ import annotations

import json

import httpx
import pytest

from databright.chain.model_registry import Voucher, sign, split_royalty
from databright.market import channels
from databright.market.predict_client import predict_files
from databright.market.predictions import ERROR_CODES, VOUCHER_HEADER, PredictionService
from databright.training.checkpoint import load_checkpoint
from databright.training.families import get_family
from databright.web.predict_server import create_app
from tests.market.predict_world import PRICE, ROYALTY_BPS, RunningServer, build_world, loader

MAX_BODY = 256 * 1024
MAX_ITEMS = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    return build_world(tmp_path_factory.mktemp("predict"), digit_folder)


@pytest.fixture(scope="module")
def server(world):
    service = PredictionService.load(world.home, world.model_id, world.signer("dev"),
                                     max_body_bytes=MAX_BODY, max_items=MAX_ITEMS)
    with RunningServer(create_app(service)) as running:
        running.service = service
        yield running


def _header(world, channel_id, amount, key, *, chain_id=None, registry=None,
            signed_chain=None) -> dict[str, str]:
    with world.dep() as dep:
        real_chain, real_registry = dep.registry.chain_id(), dep.registry.address
    chain_id = real_chain if chain_id is None else chain_id
    voucher = Voucher(signed_chain or chain_id, registry or real_registry, channel_id, amount)
    return {VOUCHER_HEADER: json.dumps({
        "chain_id": chain_id, "registry": registry or real_registry, "channel_id": channel_id,
        "amount": str(amount), "signature": "0x" + sign(voucher, key).hex()})}


def _post(server, files, headers=None, **kw) -> httpx.Response:
    parts = [("files", (p.name, p.read_bytes(), "image/png")) for p in files]
    return httpx.post(server.url + "/predict", files=parts, headers=headers or {}, timeout=60,
                      **kw)


def _stored(server, channel_id) -> int | None:
    v = server.service.book.get(server.service.chain_id, server.service.registry, channel_id)
    return None if v is None else v.amount


def _expected_labels(world, files) -> list[str]:
    from databright.training.records import Record

    with world.dep() as dep:
        best = dep.registry.best_checkpoint(world.model_id)
        ckpt = load_checkpoint(dep.store, best.cid, best.file_sha256.hex())
    records = [Record(f"c{i}", "", "image/png", loader(p.read_bytes()))
               for i, p in enumerate(files)]
    return get_family(ckpt.family).predict(ckpt, records)


def test_model_info_names_price_registry_chain_and_checkpoint(world, server):
    info = httpx.get(server.url + "/model").json()
    with world.dep() as dep:
        best = dep.registry.best_checkpoint(world.model_id)
        assert info["registry"] == dep.registry.address
        assert info["chain_id"] == dep.registry.chain_id()
    assert info["model_id"] == world.model_id and info["price_per_prediction"] == PRICE
    assert info["checkpoint"]["sha256"] == best.file_sha256.hex()
    assert info["media"] == "image" and info["voucher_header"] == VOUCHER_HEADER


def test_predict_reuse_and_close_pay_royalty_owner_and_payer(world, server):
    consumer = world.signer("consumer")
    alice, dev = world.accounts["alice"].address, world.accounts["dev"].address
    with world.dep() as dep:
        token = dep.token(dep.registry.get_model(world.model_id).share_token)
        before = (token.total_distributed(), token.dividends_of(alice) + token.carried(),
                  dep.registry.owed_of(dev), dep.registry.owed_of(consumer.address))
    first = predict_files(world.home, consumer, world.model_id, world.files[:3], url=server.url,
                          deposit=50 * PRICE)
    assert [p["file"] for p in first.predictions] == [p.name for p in world.files[:3]]
    assert [p["label"] for p in first.predictions] == _expected_labels(world, world.files[:3])
    assert first.opened and first.charged == 3 * PRICE and first.deposit == 50 * PRICE
    second = predict_files(world.home, consumer, world.model_id, world.files[3:5], url=server.url)
    assert not second.opened and second.channel_id == first.channel_id
    assert second.accepted == 5 * PRICE == _stored(server, first.channel_id)

    (closed,) = server.service.close_channels([first.channel_id])
    royalty, rest = split_royalty(5 * PRICE, ROYALTY_BPS)
    assert (closed.amount, closed.royalty, closed.payee_amount, closed.refund) == (
        5 * PRICE, royalty, rest, 45 * PRICE)
    with world.dep() as dep:
        token = dep.token(dep.registry.get_model(world.model_id).share_token)
        assert token.total_distributed() - before[0] == royalty
        # alice holds every share; the token carries what its per-share total cannot represent
        # yet into the next distribution, so her dividends plus the carry grow by the royalty
        grown = token.dividends_of(alice) + token.carried() - before[1]
        assert royalty - 1 <= grown <= royalty  # her claim is floored to the wei
        assert dep.registry.owed_of(dev) - before[2] == rest
        assert dep.registry.owed_of(consumer.address) - before[3] == 45 * PRICE
        assert dep.registry.get_channel(first.channel_id).status == "closed"
    # a closed channel takes no more vouchers, and the next `predict` opens a new one
    late = _post(server, world.files[:1], _header(world, first.channel_id, 6 * PRICE, consumer))
    assert late.status_code == 402 and late.json()["error"]["code"] == "channel_closed"
    third = predict_files(world.home, consumer, world.model_id, world.files[:1], url=server.url)
    assert third.opened and third.channel_id != first.channel_id


@pytest.fixture(scope="module")
def paid_channel(world, server):
    """mallory's channel (10 × price) holding an accepted voucher of 2 × price."""
    mallory = world.signer("mallory")
    with world.dep() as dep:
        ch = channels.open_channel(dep, mallory, world.model_id, 10 * PRICE)
    ok = _post(server, world.files[:1], _header(world, ch.channel_id, 2 * PRICE, mallory))
    assert ok.status_code == 200, ok.text
    assert ok.json()["charged"] == 2 * PRICE
    return ch.channel_id


def _refused(server, channel_id, response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert ERROR_CODES[code][0] == status
    assert _stored(server, channel_id) == 2 * PRICE  # nothing charged
    return body


def test_no_voucher_is_402_with_the_terms(world, server, paid_channel):
    body = _refused(server, paid_channel, _post(server, world.files[:2]), 402, "voucher_required")
    assert body["price_per_prediction"] == PRICE and body["needed"] == 2 * PRICE
    assert body["model_id"] == world.model_id
    with world.dep() as dep:
        assert (body["registry"], body["chain_id"]) == (dep.registry.address,
                                                        dep.registry.chain_id())


@pytest.mark.parametrize(("case", "status", "code"), [
    ("forged", 401, "bad_signature"),
    ("replayed", 409, "voucher_replayed"),
    ("decreasing", 409, "voucher_decreasing"),
    ("underpaid", 402, "insufficient_voucher"),
    ("over_deposit", 402, "voucher_exceeds_deposit"),
    ("other_chain", 403, "wrong_chain"),
    ("signed_for_other_chain", 401, "bad_signature"),
    ("other_registry", 403, "wrong_registry"),
    ("unknown_channel", 402, "unknown_channel"),
    ("bad_header", 400, "bad_voucher_header"),
])
def test_bad_vouchers_are_refused_and_charge_nothing(world, server, paid_channel, case, status,
                                                     code):
    mallory, consumer = world.signer("mallory"), world.signer("consumer")
    ch = paid_channel
    with world.dep() as dep:
        chain_id = dep.registry.chain_id()
    headers = {
        "forged": lambda: _header(world, ch, 3 * PRICE, consumer),
        "replayed": lambda: _header(world, ch, 2 * PRICE, mallory),
        "decreasing": lambda: _header(world, ch, PRICE, mallory),
        "underpaid": lambda: _header(world, ch, 3 * PRICE - 1, mallory),
        "over_deposit": lambda: _header(world, ch, 11 * PRICE, mallory),
        "other_chain": lambda: _header(world, ch, 3 * PRICE, mallory, chain_id=chain_id + 1),
        "signed_for_other_chain": lambda: _header(world, ch, 3 * PRICE, mallory,
                                                  signed_chain=chain_id + 1),
        "other_registry": lambda: _header(world, ch, 3 * PRICE, mallory,
                                          registry="0x" + "11" * 20),
        "unknown_channel": lambda: _header(world, 999, 3 * PRICE, mallory),
        "bad_header": lambda: {VOUCHER_HEADER: '{"channel_id": 1}'},
    }[case]()
    _refused(server, ch, _post(server, world.files[:1], headers), status, code)


def test_the_malleable_twin_of_a_valid_voucher_is_refused_here_as_on_chain(world, server,
                                                                          paid_channel):
    from databright.errors import ContractRevert

    mallory = world.signer("mallory")
    good = json.loads(_header(world, paid_channel, 3 * PRICE, mallory)[VOUCHER_HEADER])
    raw = bytes.fromhex(good["signature"][2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    twin = raw[:32] + (n - int.from_bytes(raw[32:64], "big")).to_bytes(32, "big") + bytes(
        [55 - raw[64]])  # (r, n - s, v flipped) recovers to the same signer off chain
    header = {VOUCHER_HEADER: json.dumps({**good, "signature": "0x" + twin.hex()})}
    _refused(server, paid_channel, _post(server, world.files[:1], header), 401, "bad_signature")
    with world.dep() as dep, pytest.raises(ContractRevert, match="bad voucher"):
        dep.registry.close(world.signer("dev"), paid_channel, 3 * PRICE, twin)


def test_a_voucher_of_another_models_channel_is_403(world, server, paid_channel):
    mallory = world.signer("mallory")
    with world.dep() as dep:
        other = channels.open_channel(dep, mallory, world.other_model_id, 10 * PRICE)
    r = _post(server, world.files[:1], _header(world, other.channel_id, 3 * PRICE, mallory))
    _refused(server, paid_channel, r, 403, "wrong_model")
    assert _stored(server, other.channel_id) is None


def test_bad_inputs_are_refused_and_charge_nothing(world, server, paid_channel):
    mallory = world.signer("mallory")
    pay = _header(world, paid_channel, 3 * PRICE, mallory)
    junk = [("files", ("junk.png", b"not an image at all", "image/png"))]
    r = httpx.post(server.url + "/predict", files=junk, headers=pay)
    _refused(server, paid_channel, r, 422, "malformed_input")
    # one bad file spoils the batch: nothing predicted, nothing charged
    mixed = [("files", (p.name, p.read_bytes(), "image/png")) for p in world.files[:2]] + junk
    pay3 = _header(world, paid_channel, 5 * PRICE, mallory)
    _refused(server, paid_channel, httpx.post(server.url + "/predict", files=mixed, headers=pay3),
             422, "malformed_input")
    fields_only = (b'--b0\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b0--\r\n')
    empty = httpx.post(server.url + "/predict", content=fields_only,
                       headers={**pay, "content-type": "multipart/form-data; boundary=b0"})
    _refused(server, paid_channel, empty, 422, "no_items")
    rows = httpx.post(server.url + "/predict", json={"rows": [{"a": 1}]}, headers=pay)
    _refused(server, paid_channel, rows, 415, "wrong_media")
    for count in (MAX_ITEMS + 1, 1_001):  # just over the limit, and over what is even parsed
        tiny = [("files", (f"{i}.png", b"x", "image/png")) for i in range(count)]
        r = httpx.post(server.url + "/predict", files=tiny, headers=pay)
        _refused(server, paid_channel, r, 413, "too_many_items")
    big = [("files", ("big.png", b"\0" * (MAX_BODY + 1), "image/png"))]
    _refused(server, paid_channel, httpx.post(server.url + "/predict", files=big, headers=pay),
             413, "request_too_large")

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"x" * 4096

    streamed = httpx.post(server.url + "/predict", content=chunks(),
                          headers={**pay, "content-type": "application/json"})
    _refused(server, paid_channel, streamed, 413, "request_too_large")
    # the voucher refused with every bad input above still pays for a good request
    good = _post(server, world.files[:1], pay)
    assert good.status_code == 200 and good.json()["charged"] == PRICE
    assert _stored(server, paid_channel) == 3 * PRICE


def test_the_voucher_books_survive_a_restart(world):
    erin = world.signer("erin")
    first = PredictionService.load(world.home, world.model_id, world.signer("dev"))
    with RunningServer(create_app(first, close_on_shutdown=False)) as s:
        run1 = predict_files(world.home, erin, world.model_id, world.files[:2], url=s.url)
    with world.dep() as dep:
        payer_side = channels.payer_book(dep).get(dep.registry.chain_id(), dep.registry.address,
                                                  run1.channel_id)
    assert payer_side.accepted == payer_side.signed == 2 * PRICE
    second = PredictionService.load(world.home, world.model_id, world.signer("dev"))
    with RunningServer(create_app(second)) as s:
        replay = httpx.post(s.url + "/predict",
                            files=[("files", ("a.png", world.files[0].read_bytes(), "image/png"))],
                            headers={VOUCHER_HEADER: json.dumps({
                                "chain_id": payer_side.chain_id, "registry": payer_side.registry,
                                "channel_id": run1.channel_id, "amount": str(2 * PRICE),
                                "signature": payer_side.signature})})
        assert replay.status_code == 409 and replay.json()["channel"]["accepted"] == 2 * PRICE
        run2 = predict_files(world.home, erin, world.model_id, world.files[2:3], url=s.url)
        assert run2.channel_id == run1.channel_id and run2.accepted == 3 * PRICE
    # the second server closed the channel on shutdown, with the highest voucher
    with world.dep() as dep:
        assert dep.registry.get_channel(run1.channel_id).status == "closed"
        refund = dep.registry.get_channel(run1.channel_id).deposit - 3 * PRICE
    assert refund > 0


def test_an_expired_channel_is_402(world, server):
    mallory = world.signer("mallory")
    with world.dep() as dep:
        ch = channels.open_channel(dep, mallory, world.model_id, 10 * PRICE, timeout=600)
        dep.chain.advance_time(3600)
    r = _post(server, world.files[:1], _header(world, ch.channel_id, PRICE, mallory))
    assert r.status_code == 402 and r.json()["error"]["code"] == "channel_expired"
    assert _stored(server, ch.channel_id) is None


def test_every_error_code_is_documented_with_its_status():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "model-market.md").read_text()
    table = {code: int(status) for status, code in
                 re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", doc, flags=re.MULTILINE)}
    assert table == {code: status for code, (status, _) in ERROR_CODES.items()}
