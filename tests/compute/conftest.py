"""Small data-parallel jobs: digit images and rows (tests/training's generators) in a blob store."""

from __future__ import annotations

import pytest

from databright.storage.cas import LocalBlobStore
from databright.training import Record
from tests.training.conftest import digit_images, digit_rows

#: a small-cnn program of six steps (48 items, batches of 16, two epochs) on 16 × 16 images
CNN = {"epochs": 2, "batch_size": 16, "size": 16, "width": 4}
MLP = {"epochs": 2, "batch_size": 16, "hidden": 8}


def three_shards(records: list[Record]) -> dict[str, int]:
    """Items dealt round-robin over shards 0, 1, 2 in CID order."""
    return {r.cid: i % 3 for i, r in enumerate(sorted(records, key=lambda r: r.cid))}


@pytest.fixture(scope="module")
def cnn_data() -> tuple[list[Record], list[Record]]:
    return digit_images(0, 48), digit_images(100, 20)


@pytest.fixture(scope="module")
def row_data() -> tuple[list[Record], list[Record]]:
    return digit_rows(0, 60), digit_rows(1200, 20)


@pytest.fixture
def store(tmp_path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")
