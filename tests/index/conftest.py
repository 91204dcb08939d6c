"""Index databases by URL: a SQLite file, and a fresh PostgreSQL database when a server is given.

``DATABRIGHT_TEST_PG_URL`` names a PostgreSQL server (``scripts/test.sh`` starts a throwaway
one); each test gets its own database on it. Without it the PostgreSQL half is skipped, unless
``DATABRIGHT_REQUIRE_PG=1`` (CI), where a missing server fails.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text


def _pg_server() -> str | None:
    url = os.environ.get("DATABRIGHT_TEST_PG_URL")
    if not url:
        if os.environ.get("DATABRIGHT_REQUIRE_PG") == "1":
            pytest.fail("DATABRIGHT_REQUIRE_PG=1 but DATABRIGHT_TEST_PG_URL names no server")
        pytest.skip("no PostgreSQL server: set DATABRIGHT_TEST_PG_URL (scripts/test.sh does)")
    return url


def fresh_database_url(kind: str, tmp_path) -> tuple[str, object]:
    """A URL of an empty index database of ``kind`` and a function that drops it."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'index-{uuid.uuid4().hex[:6]}.sqlite'}", lambda: None
    server = _pg_server()
    assert server is not None
    name = f"databright_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - a named server that does not answer is a failure
        pytest.fail(f"cannot create a database on {server}: {exc}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.rsplit("/", 1)[0] + "/" + name, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_kind(request) -> str:
    return request.param


@pytest.fixture
def db_url(db_kind, tmp_path):
    """An empty index database, on SQLite and on PostgreSQL."""
    url, drop = fresh_database_url(db_kind, tmp_path)
    yield url
    drop()  # type: ignore[operator]
