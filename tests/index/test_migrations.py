"""Alembic: the schema builds from empty on both databases, matches the models, and a database
made by the previous revision (with rows) upgrades to head keeping them."""

from __future__ import annotations

from sqlalchemy import inspect, text

import databright.index.cache
import databright.index.web  # noqa: F401 - and the web app's
from databright.index.db import MIGRATIONS, Index, open_index
from databright.index.models import Base


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def test_from_empty_to_head_matches_the_models(db_url):
    index = open_index(db_url)
    try:
        found = inspect(index.engine)
        assert set(found.get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
        for name, table in Base.metadata.tables.items():
            assert {c["name"] for c in found.get_columns(name)} == set(table.columns.keys()), name
        assert "ix_items_dataset_cid" in {i["name"] for i in found.get_indexes("items")}
        with index.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
    finally:
        index.close()
    open_index(db_url).close()  # again: a no-op


def test_upgrade_from_the_previous_revision_keeps_rows(db_url):
    old = Index(db_url)
    old.migrate("0001")
    assert "items" not in old.tables()
    with old.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ingest_reports (manifest_cid, dataset_name, report_cid, report, created_at)"
            " VALUES ('bafkreimanifest', 'digits', 'bafkreireport', '{\"item_count\": 3}',"
            " CURRENT_TIMESTAMP)"))
        conn.execute(text(
            "INSERT INTO evaluations (proposal_id, manifest_cid, report_cid, report, score_bps,"
            " created_at) VALUES (7, 'bafkreimanifest', 'bafkreieval', '{}', 9000,"
            " CURRENT_TIMESTAMP)"))
    old.close()
    index = open_index(db_url)
    try:
        assert {"sync_state", "datasets", "proposals", "items", "holders"} <= set(index.tables())
        with index.engine.connect() as conn:
            assert conn.execute(text("SELECT dataset_name FROM ingest_reports")).all() == [
                ("digits",)]
            assert conn.execute(text("SELECT proposal_id, score_bps FROM evaluations")).all() == [
                (7, 9000)]
            assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 0
    finally:
        index.close()


def test_big_amounts_are_exact(db_url):
    from databright.index.cache import RefundRow

    index = open_index(db_url)
    try:
        huge = 2**256 - 1
        with index.session() as s:
            s.add(RefundRow(account="0x" + "12" * 20, credited=huge, withdrawn=10**18 + 1))
        with index.session() as s:
            row = s.get(RefundRow, "0x" + "12" * 20)
            assert (row.credited, row.withdrawn) == (huge, 10**18 + 1)
    finally:
        index.close()


def test_upgrade_from_0002_empties_the_chain_cache_for_a_rebuild(db_url):
    old = Index(db_url)
    old.migrate("0002")
    with old.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sync_state (id, chain_id, market, last_block, last_block_hash)"
            " VALUES (1, 1337, '0x" + "11" * 20 + "', 40, '0xab')"))
        conn.execute(text(
            "INSERT INTO refunds (account, credited, withdrawn) VALUES ('0x" + "12" * 20
            + "', '5', '0')"))
        conn.execute(text(
            "INSERT INTO evaluations (proposal_id, manifest_cid, report_cid, report, score_bps,"
            " created_at) VALUES (7, 'bafkreimanifest', 'bafkreieval', '{}', 9000,"
            " CURRENT_TIMESTAMP)"))
    old.close()
    index = open_index(db_url)
    try:
        with index.engine.connect() as conn:
            # without a sync state the next sync starts from block 0 with the registry's events
            assert conn.execute(text("SELECT count(*) FROM sync_state")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM refunds")).scalar() == 0
            assert conn.execute(text("SELECT score_bps FROM evaluations")).scalar() == 9000
        assert {"models", "checkpoints", "channels", "dividend_sources",
                "holder_dividends"} <= set(index.tables())
    finally:
        index.close()
