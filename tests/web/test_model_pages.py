"""The model registry page and its JSON twin, on the web world home (model 1 `digits-cnn` by
dave, self-reported checkpoint, price 0.001 ETH, royalty 30%)."""

from __future__ import annotations

import hashlib
import re

import pytest

from databright.index.cache import ChannelRow
from tests.web.web_world import Served

PRICE = 10**15


@pytest.fixture(scope="module")
def shown(web_home):
    """``model show 1`` from the CLI (before the server takes the embedded chain)."""
    return web_home("model", "show", "1")


@pytest.fixture(scope="module")
def served(web_home, shown):
    with Served(web_home.home, sync_seconds=0) as srv:
        yield srv


def test_the_registry_lists_model_1_with_its_checkpoint_and_terms(served, shown):
    got = served.client.get("/api/models").json()
    assert got["total"] == 1
    (model,) = got["models"]
    assert (model["model_id"], model["name"], model["dataset"]) == (1, "digits-cnn", "digits")
    assert model["owner"] == shown["model"]["owner"]
    assert model["price_per_prediction_wei"] == str(PRICE) and model["royalty_bps"] == 3000
    best = model["best_checkpoint"]
    (checkpoint,) = shown["checkpoints"]
    assert best["cid"] == checkpoint["cid"]
    assert best["file_sha256"] == checkpoint["file_sha256"]
    # the sha256 shown is the stored checkpoint file's
    blob = served.ctx.dep.store.get(best["cid"])
    assert "0x" + hashlib.sha256(blob).hexdigest() == best["file_sha256"]
    assert (best["snapshot_entries"], best["snapshot_items"]) == (2, checkpoint["items"])
    assert checkpoint["items"] > 80  # the seed's training items and proposal 1's 40
    assert best["attested"] is False and best["attested_by"] is None  # self-reported
    assert model["predictions_paid"] == 0 and model["channels"] == 0


def test_the_page_shows_what_the_json_says(served, shown):
    page = served.client.get("/models", headers={"accept": "text/html"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    checkpoint = shown["checkpoints"][0]
    assert checkpoint["file_sha256"] in html and checkpoint["cid"] in html
    assert 'id="model-1"' in html and "digits-cnn" in html
    assert "0.001 ETH" in html and "30%" in html and "self-reported" in html
    assert 'href="/datasets/digits"' in html and 'href="/models/1"' in html
    assert f"first 2 entries ({checkpoint['items']} items)" in html
    # CSP: no inline scripts, handlers or styles
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert " style=" not in html and "onclick=" not in html
    one = served.client.get("/models/1", headers={"accept": "text/html"})
    assert one.status_code == 200 and checkpoint["file_sha256"] in one.text
    assert "No channel opened yet." in one.text


def test_filter_by_dataset_and_errors_in_the_one_shape(served):
    assert served.client.get("/api/models", params={"dataset": "digits"}).json()["total"] == 1
    missing = served.client.get("/api/models", params={"dataset": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert "nope" in missing.json()["error"]["message"]
    html = served.client.get("/models?dataset=nope", headers={"accept": "text/html"})
    assert html.status_code == 404 and "text/html" in html.headers["content-type"]
    assert served.client.get("/api/models/99").json()["error"]["code"] == "not_found"
    for bad in ("/api/models/0", "/api/models/abc", "/api/models/99999999999999999999",
                "/api/models?page=0"):
        r = served.client.get(bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", bad


def test_a_model_with_all_checkpoints_and_channels(served):
    got = served.client.get("/api/models/1").json()
    assert [c["checkpoint"] for c in got["checkpoints"]] == [1]
    assert got["channels"] == []
    assert got["program_digest"].startswith("0x") and len(got["program_digest"]) == 66


def test_predictions_paid_count_only_settled_channels(served):
    """Channels as the sync writes them (closed: the settled split; open: nothing paid)."""
    payer = served.client.get("/api/models").json()["models"][0]["owner"]
    amount = 5 * PRICE + 7  # a partial prediction's wei does not make a prediction
    with served.ctx.dep.index.session() as s:
        s.add(ChannelRow(channel_id=901, model_id=1, payer=payer, deposit=10 * PRICE,
                         expiry=2**40, reclaim_at=None, status="closed", amount=amount,
                         royalty=amount * 3 // 10, payee_amount=amount - amount * 3 // 10,
                         refund=10 * PRICE - amount, opened_block=1, settled_block=2))
        s.add(ChannelRow(channel_id=902, model_id=1, payer=payer, deposit=3 * PRICE,
                         expiry=2**40, reclaim_at=None, status="open", amount=0, royalty=0,
                         payee_amount=0, refund=0, opened_block=3, settled_block=None))
    served.ctx.wrote()  # cached pages are stale (the sync would have moved the synced block)
    try:
        model = served.client.get("/api/models").json()["models"][0]
        assert model["predictions_paid"] == 5
        assert model["paid_wei"] == str(amount) and model["royalty_wei"] == str(amount * 3 // 10)
        assert (model["channels"], model["open_channels"]) == (2, 1)
        detail = served.client.get("/api/models/1").json()
        assert [(c["channel_id"], c["status"]) for c in detail["channels"]] == [
            (901, "closed"), (902, "open")]
        html = served.client.get("/models", headers={"accept": "text/html"}).text
        assert re.search(r'data-field="predictions">\s*5\s*<', html)
    finally:
        with served.ctx.dep.index.session() as s:
            for cid in (901, 902):
                s.delete(s.get(ChannelRow, cid))
        served.ctx.wrote()


def test_the_schema_lists_the_json_twins(served):
    paths = served.client.get("/openapi.json").json()["paths"]
    for path in ("/api/models", "/api/models/{model_id}", "/api/dashboard", "/api/compute",
                 "/api/compute/jobs/{job_id}"):
        assert path in paths, path


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_hostile_model_names_are_escaped(served):
    """A model name is whatever its owner registered on chain: shown as text, never markup."""
    from databright.index.cache import ModelRow

    with served.ctx.dep.index.session() as s:
        base = s.get(ModelRow, 1)
        s.add(ModelRow(model_id=77, dataset_id=base.dataset_id, owner=base.owner, name=HOSTILE,
                       program_digest=base.program_digest, price_per_prediction=0,
                       royalty_bps=base.royalty_bps, checkpoint_count=0, best_checkpoint=0,
                       best_metric_bps=0, registered_block=base.registered_block))
    served.ctx.wrote()
    try:
        for path in ("/models", "/models/77"):
            html = served.client.get(path, headers={"accept": "text/html"}).text
            assert HOSTILE not in html and "<img src=x" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        got = served.client.get("/api/models/77").json()
        assert got["name"] == HOSTILE and got["best_checkpoint"] is None
        assert got["predictions_paid"] is None  # a free model counts no predictions
    finally:
        with served.ctx.dep.index.session() as s:
            s.delete(s.get(ModelRow, 77))
        served.ctx.wrote()
