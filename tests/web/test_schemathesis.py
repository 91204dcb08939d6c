"""The JSON API fuzzed from its own OpenAPI schema (schemathesis): whatever the generated
request, no operation answers with a server error (5xx), and every JSON refusal has the one
error shape. The app serves a populated home, so valid ids hit real rows too; requests are sent
both anonymously and signed in (a SIWE session with its CSRF token), so the writes' own checks
run, not only the sign-in guard.

(schemathesis' lazy pytest fixture does not work with pytest 9, so each operation's cases are
drawn from its hypothesis strategy inside a plain test.)
"""

from __future__ import annotations

import pytest
import schemathesis
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from databright.web.app.errors import error_body
from tests.web.web_world import Served, siwe_login

#: operations and their examples: about 30 operations × 2 sessions × this many cases
EXAMPLES = 20


@pytest.fixture(scope="module")
def served_api(web_home):
    with Served(web_home.home, sync_seconds=0) as served:
        yield served


@pytest.fixture(scope="module")
def api_schema(served_api):
    schema = schemathesis.openapi.from_url(f"{served_api.url}/openapi.json")
    # the JSON API (pages are HTML twins of the same data; /rpc is JSON-RPC, tested apart)
    return schema.include(path_regex=r"^/api/")


@pytest.fixture(scope="module")
def session_headers(served_api):
    """A signed-in session's cookie and CSRF header."""
    login = siwe_login(served_api.client, Account.create())
    cookie = "; ".join(f"{k}={v}" for k, v in login.cookies.items())
    served_api.client.cookies.clear()
    return {"Cookie": cookie, "X-CSRF-Token": login.json()["csrf"]}


def _operations(schema):
    found = []
    for result in schema.get_all_operations():
        found.append(result.ok())
    return found


def test_the_schema_lists_the_json_twins(api_schema):
    paths = {op.path for op in _operations(api_schema)}
    for twin in ("/api/datasets", "/api/datasets/{name}", "/api/proposals/{proposal_id}",
                 "/api/models", "/api/dashboard", "/api/compute",
                 "/api/proposals/{proposal_id}/comments", "/api/auth/nonce", "/api/tx/vote"):
        assert twin in paths, twin


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_no_server_error(api_schema, session_headers, signed_in):
    checked: list[str] = []
    calls = [0]
    for operation in _operations(api_schema):
        if operation.path == "/api/auth/logout" and signed_in:
            continue  # would end the session the other operations use

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            headers = dict(session_headers) if signed_in else {}
            response = case.call(headers=headers, timeout=30)
            calls[0] += 1
            case.validate_response(response, checks=[not_a_server_error])
            kind = "".join(response.headers.get("content-type") or [])
            if response.status_code >= 400 and kind.startswith("application/json"):
                body = response.json()
                assert set(body) == {"error"}, body
                assert {"code", "message"} <= set(body["error"]), body
                assert set(error_body("x", "y")) == set(body)

        fuzz()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 25, checked
    assert calls[0] >= 5 * len(checked), calls  # the strategies did generate requests
