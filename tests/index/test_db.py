"""The index opens at the newest schema, is idempotent to migrate, and rolls back on errors."""

import pytest

from databright.index.db import open_index
from databright.index.models import Evaluation, IngestReport


def test_migrates_to_head_and_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    index = open_index(url)
    assert {"dataset_meta", "ingest_reports", "evaluations", "alembic_version"} <= set(index.tables())
    index.close()
    again = open_index(url)  # a second migrate is a no-op
    assert "evaluations" in again.tables()


def test_session_commits_or_rolls_back(tmp_path):
    index = open_index(f"sqlite:///{tmp_path / 'i.sqlite'}")
    with index.session() as s:
        s.add(IngestReport(manifest_cid="bafkreiaaa", dataset_name="d", report_cid="bafkreibbb",
                           report={"item_count": 3}))
    with pytest.raises(RuntimeError), index.session() as s:
        s.add(Evaluation(proposal_id=1, manifest_cid="m", report_cid="r", report={}, score_bps=1))
        raise RuntimeError("crash mid-write")
    with index.session() as s:
        assert s.get(IngestReport, "bafkreiaaa").report == {"item_count": 3}
        assert s.get(Evaluation, 1) is None
