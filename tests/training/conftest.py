"""Digits as training records: PNG images (rendered like the demo's) and JSON table rows."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest

from databright.storage.cid import cid_of_bytes
from databright.training import Record


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    img = (255 - pixels.reshape(8, 8) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").resize((32, 32), Image.Resampling.NEAREST).save(buf, "PNG")
    return buf.getvalue()


@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


def _record(data: bytes, label: str, media_type: str) -> Record:
    return Record(cid_of_bytes(data), label, media_type, lambda: data)


def digit_images(start: int, count: int) -> list[Record]:
    """sklearn digits ``start:start+count`` as 32×32 grayscale PNG records."""
    d = _digits()
    return [_record(_png(d.data[i]), str(d.target[i]), "image/png")
            for i in range(start, start + count)]


def digit_rows(start: int, count: int) -> list[Record]:
    """sklearn digits ``start:start+count`` as canonical JSON rows (64 pixel columns)."""
    d = _digits()
    out = []
    for i in range(start, start + count):
        row = {f"p{j:02d}": float(v) for j, v in enumerate(d.data[i])}
        row["label"] = str(d.target[i])
        data = json.dumps(row, sort_keys=True, separators=(",", ":")).encode()
        out.append(_record(data, str(d.target[i]), "application/json"))
    return out


@pytest.fixture(scope="module")
def images():
    return digit_images(0, 100), digit_images(100, 60)


@pytest.fixture(scope="module")
def rows():
    return digit_rows(0, 600), digit_rows(1200, 300)
