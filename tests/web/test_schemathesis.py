"""The JSON API fuzzed from its own OpenAPI schema (schemathesis): whatever the generated
request, no operation answers with a server error (5xx), and every refusal has the one error
shape. The app serves a populated home, so valid ids hit real rows too.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.web.web_world import Served


@pytest.fixture(scope="module")
def served_api(web_home):
    with Served(web_home.home, sync_seconds=0) as served:
        yield served


@pytest.fixture(scope="module")
def api_schema(served_api):
    schema = schemathesis.openapi.from_url(f"{served_api.url}/openapi.json")
    # the JSON API (pages are HTML twins of the same data; /rpc is JSON-RPC, tested apart)
    return schema.include(path_regex=r"^/api/")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_server_error(case):
    response = case.call(timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
            "application/json"):
        body = response.json()
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
