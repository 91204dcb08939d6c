"""The compute market page and its JSON twin, on a copy of the web world home where dave ran
one compute job (`train --compute local`) in which worker 0 lied: workers, classes,
coordinator, the job, its payouts and slash, and its receipt verified once and cached."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import delete

from databright.index.compute import ComputeReceiptCheckRow
from tests.web.web_world import Served


@pytest.fixture(scope="module")
def job_home(web_home):
    """The module's home with one compute job, and what the CLI says about it."""
    web_home.job = web_home("train", "digits", "--family", "small-cnn", "--epochs", "1",
                            "--compute", "local", "--fault", "0:signflip", as_="dave")
    web_home.pool = web_home("compute", "workers")
    web_home.shown = web_home("job", "show", str(web_home.job["job"]))
    web_home.dave = web_home("account", "show", "dave")["address"]
    return web_home


@pytest.fixture(scope="module")
def served(job_home):
    with Served(job_home.home, sync_seconds=0) as srv:
        yield srv


def test_workers_match_the_pool_the_cli_reads_from_the_chain(served, job_home):
    got = served.client.get("/api/compute").json()
    assert got["worker_count"] == len(job_home.pool)
    page = got["workers"]
    assert len(page) == min(50, len(job_home.pool)) and got["per_page"] == 50
    pool = {w["account"]: w for w in job_home.pool}
    for w in page:
        chain = pool[w["account"]]
        assert (w["stake_wei"], w["min_fee_wei"], w["status"], w["determinism_class"]) == (
            chain["stake_wei"], chain["min_fee_wei"], chain["status"],
            chain["determinism_class"])
    # active workers first, the liar (banned, its stake gone) after them
    statuses = [w["status"] for w in page]
    assert statuses == sorted(statuses, key=lambda x: x != "active")
    rest = served.client.get("/api/compute", params={"workers_page": 2}).json()["workers"]
    liar_account = job_home.job["liars"][0]
    (liar,) = [w for w in page + rest if w["account"] == liar_account]
    assert liar["status"] == "banned" and liar["stake_wei"] == "0"
    assert liar["slashed_wei"] == job_home.shown["slashed"][0]["amount_wei"]
    assert liar["earned_wei"] == "0"
    (cls,) = got["classes"]
    assert cls["workers"] == len(job_home.pool) and cls["active"] == len(job_home.pool) - 1


def test_the_job_and_coordinator(served, job_home):
    got = served.client.get("/api/compute").json()
    (job,) = got["jobs"]
    shown = job_home.shown
    assert job["job_id"] == job_home.job["job"] and job["consumer"] == job_home.dave
    assert job["dataset"] == "digits" and job["status"] == "final"
    assert int(job["escrow_wei"]) == int(shown["training_fee_wei"]) + int(shown["budget_wei"])
    assert job["spent_wei"] == shown["spent_wei"] == job_home.job["fees_paid_wei"]
    assert job["receipt_hash"] == job_home.job["receipt_hash"]
    assert job["liars"] == 1 and job["workers"] == job_home.job["workers"] - 1
    assert job["fee_status"] == "paid"
    (coordinator,) = got["coordinators"]
    assert coordinator["enclave"] == job_home.job["coordinator"]
    assert coordinator["attestation_kind"] == "software" and coordinator["evidence_cid"]
    assert got["totals"]["fees_paid_wei"] == job_home.job["fees_paid_wei"]
    assert got["totals"]["slashed_wei"] == shown["slashed"][0]["amount_wei"]


def test_the_receipt_is_verified_once_and_cached(served, job_home, monkeypatch):
    from databright.market.compute import verify

    with served.ctx.dep.index.session() as s:
        s.execute(delete(ComputeReceiptCheckRow))
    served.ctx.wrote()  # the page cache must not answer for the verification
    calls = []
    real = verify.verify_receipt

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(verify, "verify_receipt", counting)
    job_id = job_home.job["job"]
    first = served.client.get(f"/api/compute/jobs/{job_id}").json()
    again = served.client.get(f"/api/compute/jobs/{job_id}").json()
    page = served.client.get(f"/compute/jobs/{job_id}", headers={"accept": "text/html"})
    assert len(calls) == 1 and Path(calls[0]).name == f"job-{job_id}.json"
    assert first["verification"] == again["verification"]
    v = first["verification"]
    assert v["ok"] is True
    assert [c["check"] for c in v["checks"]] == ["hash", "signature", "payouts", "chain", "job",
                                                 "verification", "attestation"]
    assert all(c["ok"] for c in v["checks"]) and "simulated" in v["policy"]
    assert first["receipt"]["receipt_hash"] == job_home.job["receipt_hash"]
    assert page.status_code == 200 and ">verified<" in page.text
    assert page.text.count('data-check="') == 7  # one row per check, the verification mode's included
    body = first["receipt"]["body"]
    assert f"first {body['snapshot']} entries, {body['items']} items" in page.text


def test_the_jobs_payouts_and_slash(served, job_home):
    got = served.client.get(f"/api/compute/jobs/{job_home.job['job']}").json()
    slashed = [p for p in got["payouts"] if p["kind"] == "slashed"]
    paid = [p for p in got["payouts"] if p["kind"] == "paid"]
    assert [(p["worker"], p["amount_wei"]) for p in slashed] == [
        (s["worker"], s["amount_wei"]) for s in job_home.shown["slashed"]]
    assert sum(int(p["amount_wei"]) for p in paid) == int(job_home.job["fees_paid_wei"])
    receipt_fees = {w["account"]: w["fee"] for w in got["receipt"]["body"]["workers"]
                    if int(w["fee"])}
    assert {p["worker"]: p["amount_wei"] for p in paid if int(p["amount_wei"])} == receipt_fees


def test_a_job_without_its_receipt_file_here_says_so(served, job_home):
    job_id = job_home.job["job"]
    path = Path(job_home.home) / "compute" / "receipts" / f"job-{job_id}.json"
    moved = path.with_suffix(".away")
    path.rename(moved)
    served.ctx.wrote()
    try:
        got = served.client.get(f"/api/compute/jobs/{job_id}").json()
        assert got["receipt"] is None and got["verification"] is None
        assert "no receipt file" in got["receipt_problem"]
        assert got["status"] == "final"  # the index still knows the job
        page = served.client.get(f"/compute/jobs/{job_id}", headers={"accept": "text/html"})
        assert 'id="receipt-missing"' in page.text and "no receipt file" in page.text
    finally:
        moved.rename(path)
        served.ctx.wrote()


def test_the_compute_page(served, job_home):
    page = served.client.get("/compute", headers={"accept": "text/html"})
    assert page.status_code == 200
    html = page.text
    job_id = job_home.job["job"]
    assert f'href="/compute/jobs/{job_id}"' in html and job_home.job["coordinator"] in html
    assert "software (simulated)" in html and 'href="/datasets/digits"' in html
    assert re.search(r'data-job="1">.*?badge bad">1<', html, re.DOTALL)  # one liar
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and " style=" not in html


def test_errors_in_the_one_shape(served):
    assert served.client.get("/api/compute/jobs/2").status_code == 404
    assert served.client.get("/api/compute/jobs/2").json()["error"]["code"] == "not_found"
    assert served.client.get("/api/compute/jobs/0").status_code == 422
    assert served.client.get("/api/compute", params={"page": "x"}).status_code == 422
    empty = served.client.get("/api/compute", params={"page": 9}).json()
    assert empty["jobs"] == [] and empty["job_count"] == 1


def test_the_pages_in_a_real_browser(served, job_home, browser):
    """Chromium renders the registry, a dashboard, the compute market and the job (what a user
    sees, checked on the rendered page) and writes their screenshots."""
    from tests.web.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    job_id = job_home.job["job"]
    model = served.client.get("/api/models/1").json()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)  # a loaded CI machine: the first job view verifies
    page.goto(f"{served.url}/models")
    assert page.locator('#model-1 [data-field="sha256"]').inner_text() == \
        model["best_checkpoint"]["file_sha256"]
    assert page.locator('#model-1 [data-field="price"]').inner_text() == "0.001 ETH"
    page.screenshot(path=str(SCREENSHOTS / "job-home-models.png"), full_page=True)
    page.goto(f"{served.url}/dashboard?address={job_home.dave}")
    assert page.locator('[data-field="address"]').inner_text() == job_home.dave
    assert page.locator('[data-field="compute"]').inner_text() != "0 ETH"  # slash+refund
    page.screenshot(path=str(SCREENSHOTS / "job-home-dashboard.png"), full_page=True)
    page.goto(f"{served.url}/compute")
    assert page.locator(f'tr[data-job="{job_id}"] .badge').first.inner_text() == "final"
    page.screenshot(path=str(SCREENSHOTS / "job-home-compute.png"), full_page=True)
    page.goto(f"{served.url}/compute/jobs/{job_id}")
    assert page.locator("#verification .badge").inner_text() == "verified"
    page.screenshot(path=str(SCREENSHOTS / "compute_job.png"), full_page=True)
    context.close()
    for name in ("job-home-models", "job-home-dashboard", "job-home-compute", "compute_job"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
