"""A table model behind the prediction server: JSON rows in, labels out, bad rows refused."""

from __future__ import annotations

import json

import httpx
import pytest

from databright.chain.model_registry import Voucher, sign
from databright.market import channels
from databright.market.predict_client import predict_files
from databright.market.predictions import VOUCHER_HEADER, PredictionService
from databright.web.predict_server import create_app
from tests.market.predict_world import PRICE, RunningServer, build_world
from tests.training.conftest import digit_rows


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    return build_world(tmp_path_factory.mktemp("rows"), digit_folder)


@pytest.fixture(scope="module")
def server(world):
    service = PredictionService.load(world.home, world.table_model_id, world.signer("dev"))
    with RunningServer(create_app(service)) as running:
        running.service = service
        yield running


def _rows(start: int, count: int) -> list[dict]:
    return [{k: v for k, v in json.loads(r.load()).items() if k != "label"}
            for r in digit_rows(start, count)]


def test_row_files_are_predicted_and_paid(world, server, tmp_path):
    info = httpx.get(server.url + "/model").json()
    assert info["media"] == "table" and len(info["columns"]) == 64
    files = []
    for i, row in enumerate(_rows(300, 3)):
        path = tmp_path / f"row{i}.json"
        path.write_text(json.dumps(row))
        files.append(path)
    out = predict_files(world.home, world.signer("consumer"), world.table_model_id, files,
                        url=server.url)
    labels = [p["label"] for p in out.predictions]
    assert len(labels) == 3 and set(labels) <= set(info["labels"])
    # the same rows sent by hand with the next voucher give the same labels
    ch = out.channel_id
    with world.dep() as dep:
        v = Voucher(dep.registry.chain_id(), dep.registry.address, ch, out.accepted + 3 * PRICE)
    header = {VOUCHER_HEADER: json.dumps({
        "chain_id": v.chain_id, "registry": v.registry, "channel_id": ch, "amount": v.amount,
        "signature": "0x" + sign(v, world.signer("consumer")).hex()})}
    again = httpx.post(server.url + "/predict", json={"rows": _rows(300, 3)}, headers=header)
    assert again.status_code == 200, again.text
    assert [p["label"] for p in again.json()["predictions"]] == labels


@pytest.mark.parametrize(("rows", "code"), [
    ([{"p00": "dark"}], "malformed_input"),       # a non-numeric cell
    ([{"colour": 3}], "malformed_input"),         # none of the model's columns
    (["p00=1"], "malformed_input"),               # not an object
    ({"p00": 1}, "malformed_input"),              # rows is not a list
    ([], "no_items"),
])
def test_bad_rows_are_refused_and_charge_nothing(world, server, rows, code):
    mallory = world.signer("mallory")
    with world.dep() as dep:
        ch = channels.reusable_channel(dep, mallory.address, world.table_model_id, PRICE)
        if ch is None:
            ch = channels.open_channel(dep, mallory, world.table_model_id, 10 * PRICE)
        v = Voucher(dep.registry.chain_id(), dep.registry.address, ch.channel_id, PRICE)
    header = {VOUCHER_HEADER: json.dumps({
        "chain_id": v.chain_id, "registry": v.registry, "channel_id": ch.channel_id,
        "amount": v.amount, "signature": "0x" + sign(v, mallory).hex()})}
    r = httpx.post(server.url + "/predict", json={"rows": rows}, headers=header)
    assert r.status_code == 422 and r.json()["error"]["code"] == code
    svc = server.service
    assert svc.book.get(svc.chain_id, svc.registry, ch.channel_id) is None
    images = httpx.post(server.url + "/predict", headers=header,
                        files=[("files", ("a.png", world.files[0].read_bytes(), "image/png"))])
    assert images.status_code == 415 and images.json()["error"]["code"] == "wrong_media"
