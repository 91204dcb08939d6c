"""Shared fixtures: small labeled image folders and a ready CLI home."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def _digit_folder(root: Path, start: int, count: int, flip: float = 0.0, seed: int = 0) -> Path:
    from sklearn.datasets import load_digits

    from databright.cli.demo_data import flip_labels, write_folder

    digits = load_digits()
    images, labels = digits.data[start:start + count], digits.target[start:start + count]
    if flip:
        labels, _ = flip_labels(labels, flip, seed=seed)
    names = [f"d{start + i:04d}" for i in range(count)]
    return write_folder(root, images, np.asarray(labels), names)


@pytest.fixture(scope="session")
def digit_folder():
    """``digit_folder(path, start, count, flip=0.0)`` writes an ImageFolder of digits."""
    return _digit_folder


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    # Tests never touch the user's ~/.databright or their signing defaults.
    monkeypatch.setenv("DATABRIGHT_HOME", str(tmp_path_factory.getbasetemp() / "no-home-here"))
    for var in ("DATABRIGHT_ACCOUNT", "DATABRIGHT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    yield


os.environ.setdefault("DATABRIGHT_LOCK_TIMEOUT", "60")
# The suite runs offline: nothing may reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
