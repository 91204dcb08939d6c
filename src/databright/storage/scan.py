"""Finding a proposal's candidate items in its input: the three input shapes.

* ImageFolder: ``DIR/<label>/<file>`` (files may sit deeper; the first folder is the label);
* files plus ``DIR/labels.csv`` with header ``file,label`` (paths relative to ``DIR``);
* a table (``.csv``, ``.parquet``) whose rows are the items and ``label_column`` the label;
  each row becomes its own blob, the canonical JSON of its other columns.

Scanning reads no file content; it names every entry it refuses and why.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from databright.errors import IngestError
from databright.storage.merkle import MAX_LABEL_BYTES

__all__ = ["ROW_MEDIA_TYPE", "Candidates", "Refusal", "canonical_row", "scan"]

ROW_MEDIA_TYPE = "application/json"
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class Refusal(NamedTuple):
    """An input entry that is not taken, with the reason (shown to voters)."""

    name: str
    reason: str


@dataclass
class Candidates:
    """What a scan found: files (name, path, label) or rows (name, blob, label), and refusals."""

    files: list[tuple[str, str, str]] = field(default_factory=list)
    rows: list[tuple[str, bytes, str]] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    shape: str = ""


def display_name(name: str) -> str:
    """A printable form of a file name that may hold undecodable bytes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _utf8_ok(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def label_problem(label: str, label_set: set[str] | frozenset[str] | None) -> str | None:
    """Why ``label`` cannot be used, or None."""
    if not label:
        return "empty label"
    if not _utf8_ok(label):
        return "label is not valid UTF-8"
    if len(label.encode("utf-8")) > MAX_LABEL_BYTES:
        return f"label longer than {MAX_LABEL_BYTES} bytes"
    if label_set is not None and label not in label_set:
        return f"unknown label {label!r}"
    return None


def scan(source: Path, *, label_column: str | None, label_set: set[str] | frozenset[str] | None) -> Candidates:
    """Candidates of ``source`` in whichever of the three shapes it has."""
    if not source.exists() and not source.is_symlink():
        raise IngestError(f"{source}: no such file or folder")
    if source.is_file():
        kind = TABLE_SUFFIXES.get(source.suffix.lower())
        if kind is None:
            raise IngestError(f"{source}: not a folder, .csv or .parquet table")
        if not label_column:
            raise IngestError(f"{source}: a table needs --label-column to name its label column")
        return _scan_table(source, kind, label_column, label_set)
    if not source.is_dir():
        raise IngestError(f"{source}: not a regular folder or table")
    if label_column:
        raise IngestError(f"{source}: --label-column applies to a CSV or Parquet table, not a folder")
    root = source.resolve()
    if (root / "labels.csv").is_file():
        return _scan_labels_csv(root, label_set)
    return _scan_image_folder(root, label_set)


def _walk(root: Path, refused: list[Refusal]) -> list[tuple[str, str]]:
    """(relative name, real path) of every regular file under ``root``, refusing the rest."""
    found: list[tuple[str, str]] = []
    root_s = str(root)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root_s, rel_dir) if rel_dir else root_s))
        except OSError as e:
            refused.append(Refusal(display_name(rel_dir or "."), f"unreadable folder: {e.strerror}"))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if not _utf8_ok(entry.name):
                refused.append(Refusal(display_name(rel), "name is not valid UTF-8"))
                continue
            if entry.name.startswith("."):
                refused.append(Refusal(rel, "hidden file or folder"))
                continue
            path = entry.path
            if entry.is_symlink():
                target = os.path.realpath(path)
                if os.path.commonpath([target, root_s]) != root_s:
                    refused.append(Refusal(rel, "symlink escaping the folder"))
                    continue
                if os.path.isdir(target):
                    refused.append(Refusal(rel, "symlinked folder (not followed)"))
                    continue
                if not os.path.exists(target):
                    refused.append(Refusal(rel, "broken symlink"))
                    continue
                path = target
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif entry.is_file(follow_symlinks=True):
                found.append((rel, path))
            else:
                refused.append(Refusal(rel, "not a regular file"))
    return found


def _scan_image_folder(root: Path, label_set: set[str] | frozenset[str] | None) -> Candidates:
    out = Candidates(shape="imagefolder")
    for rel, path in _walk(root, out.refused):
        if "/" not in rel:
            out.refused.append(Refusal(rel, "not inside a label folder"))
            continue
        label = rel.split("/", 1)[0]
        if problem := label_problem(label, label_set):
            out.refused.append(Refusal(rel, problem))
        else:
            out.files.append((rel, path, label))
    if not out.files and not out.refused:
        raise IngestError(f"{root}: empty folder (expected DIR/<label>/<file> or a labels.csv)")
    return out


def _scan_labels_csv(root: Path, label_set: set[str] | frozenset[str] | None) -> Candidates:
    out = Candidates(shape="labels.csv")
    csv_path = root / "labels.csv"
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(f"{csv_path}: not UTF-8 text") from None
    except OSError as e:
        raise IngestError(f"{csv_path}: {e.strerror}") from None
    rows = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(rows, [])]
    if header != ["file", "label"]:
        raise IngestError(f"{csv_path}: header must be 'file,label', found {','.join(header)!r}")
    listed: dict[str, str] = {}
    for lineno, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise IngestError(f"{csv_path} line {lineno}: expected 2 columns (file,label), got {len(row)}")
        name, label = row[0].strip(), row[1].strip()
        norm = os.path.normpath(name).replace(os.sep, "/") if name else ""
        if not name or os.path.isabs(name) or norm == ".." or norm.startswith("../"):
            out.refused.append(Refusal(name or f"labels.csv line {lineno}", "path escapes the folder"))
            continue
        if norm in listed:
            out.refused.append(Refusal(norm, f"listed twice in labels.csv (line {lineno})"))
            continue
        listed[norm] = label
    on_disk = {rel: path for rel, path in _walk(root, out.refused) if rel != "labels.csv"}
    for rel in sorted(on_disk.keys() - listed.keys()):
        out.refused.append(Refusal(rel, "not listed in labels.csv"))
    already = {r.name for r in out.refused}
    for rel, label in listed.items():
        if rel not in on_disk:
            if rel not in already:  # e.g. a listed hidden file: refused once, for its own reason
                out.refused.append(Refusal(rel, "listed in labels.csv but not found"))
        elif problem := label_problem(label, label_set):
            out.refused.append(Refusal(rel, problem))
        else:
            out.files.append((rel, on_disk[rel], label))
    return out


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None  # NaN/inf are "missing" in JSON
    if isinstance(v, (bytes, bytearray)):
        return {"base64": base64.b64encode(v).decode("ascii")}
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return str(v)


def canonical_row(row: dict[str, Any]) -> bytes:
    """Canonical JSON of a table row: UTF-8, keys sorted, no spaces, shortest round-trip floats,
    NaN/inf as null, bytes as ``{"base64": ...}``, dates in ISO 8601. Media type ``application/json``."""
    return json.dumps(
        {str(k): _json_value(v) for k, v in row.items()},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    ).encode("utf-8")


def _scan_table(path: Path, kind: str, label_column: str, label_set: set[str] | frozenset[str] | None) -> Candidates:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = Candidates(shape=f"table-{kind}")
    try:
        table = pacsv.read_csv(path) if kind == "csv" else pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise IngestError(f"{path}: cannot read the {kind} table: {str(e).splitlines()[0]}") from None
    if label_column not in table.column_names:
        raise IngestError(f"{path}: no column {label_column!r} (columns: {', '.join(table.column_names)})")
    labels = table[label_column].to_pylist()
    features = table.drop_columns([label_column])
    base = path.name
    row_no = 0
    for batch in features.to_batches(max_chunksize=65536):
        for row in batch.to_pylist():
            row_no += 1
            name = f"{base}#row={row_no}"
            raw = labels[row_no - 1]
            label = "" if raw is None else str(raw).strip()
            if problem := label_problem(label, label_set):
                out.refused.append(Refusal(name, problem))
            else:
                out.rows.append((name, canonical_row(row), label))
    if row_no == 0:
        raise IngestError(f"{path}: the table has no rows")
    return out
