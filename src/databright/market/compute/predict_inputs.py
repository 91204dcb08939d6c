"""A prediction job's inputs: the consumer's files turned into stored items, each named.

An image model takes image files (each one item; the bytes must decode as an image). A table
model takes CSV or Parquet tables (every row one item, stored as its canonical JSON the way
ingestion stores a dataset's rows, ``storage.scan.canonical_row``) or single-row JSON files;
every row must give at least one of the model's columns as a finite number (a missing cell
takes the training mean, as the model server allows). Bad input is refused with a one-line
reason before any money moves.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databright.errors import UsageError

__all__ = ["MAX_JOB_ITEMS", "InputItem", "read_inputs"]

MAX_JOB_ITEMS = 100_000
MAX_FILE_BYTES = 64 * 1024 * 1024
_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif",
                "BMP": "image/bmp", "WEBP": "image/webp", "TIFF": "image/tiff"}


@dataclass(frozen=True)
class InputItem:
    """One input: where it came from (``name``), its blob's CID and media type."""

    name: str
    cid: str
    media_type: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "cid": self.cid, "media_type": self.media_type}


def read_inputs(store: Any, paths: Sequence[Path], media: str,
                columns: Sequence[str] = (), *, max_items: int = MAX_JOB_ITEMS
                ) -> list[InputItem]:
    """Store the items of ``paths`` for a model taking ``media`` (``image`` or ``table``).

    Raises:
        UsageError: no files, a missing or unreadable file, a file of the wrong kind, a row
            without any of the model's columns, or more than ``max_items`` items.
    """
    if not paths:
        raise UsageError("give at least one file to predict")
    out: list[InputItem] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UsageError(f"{path} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = path.read_bytes()
        if media == "table":
            for name, row in _rows(path, data):
                _check_row(name, row, columns)
                out.append(_put(store, name, _canonical(row), "application/json"))
                if len(out) > max_items:
                    break
        else:
            out.append(_put(store, path.name, data, _image_type(path, data)))
        if len(out) > max_items:
            raise UsageError(f"more than {max_items} items: split the job")
    return out


def _put(store: Any, name: str, data: bytes, media_type: str) -> InputItem:
    return InputItem(name, store.put_bytes(data), media_type)


def _canonical(row: dict[str, Any]) -> bytes:
    from databright.storage.scan import canonical_row

    return canonical_row(row)


def _image_type(path: Path, data: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            kind = im.format or ""
            im.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UsageError(f"{path} is not a readable image ({exc!s:.80}); this model takes "
                         "image files") from None
    media_type = _IMAGE_TYPES.get(kind)
    if media_type is None:
        raise UsageError(f"{path}: {kind or 'unknown'} images are not supported")
    return media_type


def _rows(path: Path, data: bytes) -> list[tuple[str, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        from databright.rows import RowFormatError, parse_row

        try:
            return [(path.name, parse_row(data, "application/json"))]
        except RowFormatError as exc:
            raise UsageError(f"{path} is not a table row: {exc}") from None
    if suffix not in (".csv", ".parquet"):
        raise UsageError(f"{path}: a table model takes .csv or .parquet tables (or .json rows)")
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        table = (pacsv.read_csv(io.BytesIO(data)) if suffix == ".csv"
                 else pq.read_table(io.BytesIO(data)))
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{path}: cannot read the table: {str(exc).splitlines()[0]}") from None
    rows = table.to_pylist()
    if not rows:
        raise UsageError(f"{path}: the table has no rows")
    return [(f"{path.name}#row={i + 1}", row) for i, row in enumerate(rows)]


def _check_row(name: str, row: dict[str, Any], columns: Sequence[str]) -> None:
    known = [c for c in columns if row.get(c) is not None]
    if not known:
        raise UsageError(f"{name} has none of the model's columns ({', '.join(columns[:5])}…)")
    for c in known:
        v = row[c]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise UsageError(f"{name}: column {c!r} is not a finite number")
