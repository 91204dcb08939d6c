"""What every answer carries and every request is held to: the CSP and its companion headers,
body limits (declared or streamed), and the one error shape for the framework's own refusals."""

from __future__ import annotations

import pytest

from databright.web.app.security import CSP, MAX_JSON_BYTES
from tests.web.web_world import Served


@pytest.fixture(scope="module")
def served(web_home):
    with Served(web_home.home, sync_seconds=0) as s:
        yield s


@pytest.mark.parametrize("path", ["/", "/datasets/digits", "/proposals/2", "/models",
                                  "/compute", "/dashboard", "/api/datasets", "/signin"])
def test_pages_carry_the_csp(served, path):
    response = served.client.get(path, headers={"accept": "text/html"})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    if path != "/api/datasets":
        # no inline script or style attribute reaches the browser (the CSP would refuse them)
        html = response.text
        assert "<script>" not in html and " style=" not in html and "onclick=" not in html


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(served):
    body = b"{" + b" " * (MAX_JSON_BYTES + 10) + b"}"
    response = served.client.post("/api/tx/vote", content=body,
                                  headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_streamed_body_over_the_limit_is_refused(served):
    def chunks():
        for _ in range(40):
            yield b" " * 10_000  # 400 KB without a Content-Length

    response = served.client.post("/api/comments/draft", content=chunks(),
                                  headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_framework_refusals_have_the_one_shape(served):
    missing = served.client.get("/api/no-such-thing")
    assert missing.status_code == 404 and set(missing.json()["error"]) >= {"code", "message"}
    wrong = served.client.delete("/api/datasets")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    invalid = served.client.get("/api/proposals/not-a-number")
    assert invalid.status_code == 422 and invalid.json()["error"]["code"]
    page = served.client.get("/datasets/no-such", headers={"accept": "text/html"})
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
