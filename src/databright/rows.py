"""One stored table row (a JSON object, a header plus one CSV line, or a one-row Parquet file)
read back as a dict: the format ingestion writes rows in, shared by every layer that reads them."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

__all__ = ["RowFormatError", "parse_row"]


class RowFormatError(ValueError):
    """The bytes are not one row of a JSON, CSV or Parquet table; the message says why."""


def parse_row(data: bytes, media_type: str) -> dict[str, Any]:
    """The row in ``data`` (of ``media_type``) as a dict.

    Raises:
        RowFormatError: the data is not exactly one row, or the media type is not a table's.
    """
    try:
        if "parquet" in media_type:
            import pyarrow.parquet as pq  # only for Parquet rows

            rows = pq.read_table(io.BytesIO(data)).to_pylist()
            if len(rows) != 1:
                raise RowFormatError(f"expected one row, found {len(rows)}")
            return dict(rows[0])
        text = data.decode("utf-8")
        if "json" in media_type:
            row = json.loads(text)
            if not isinstance(row, dict):
                raise RowFormatError("not a JSON object")
            return row
        if "csv" in media_type:
            lines = list(csv.DictReader(io.StringIO(text)))
            if len(lines) != 1:
                raise RowFormatError(f"expected one data line, found {len(lines)}")
            return dict(lines[0])
    except RowFormatError:
        raise
    except (UnicodeDecodeError, ValueError, OSError) as exc:  # pyarrow errors are both
        raise RowFormatError(str(exc)) from exc
    raise RowFormatError(f"{media_type!r} is not a JSON, CSV or Parquet row")
