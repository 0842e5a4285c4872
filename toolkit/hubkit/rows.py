"""Alpaca rows on disk: reading records from the local files hubkit accepts, writing and reading
back ``data.parquet``, and the question text the leak check and the near-dedup embed.

Its own module because both ``data`` (building a dataset) and ``decontam`` (checking one against
benchmark files) read and write rows, and neither should import the other for it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import HubkitError, InputNotFound
from .schemas import DATA_FILE

COLUMNS = ("instruction", "input", "output", "data_source")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
Row = dict[str, str]


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not all(isinstance(r, dict) for r in records):
        raise ValueError("expected one JSON object per record")
    return records


def _read_csv(path: Path) -> list[dict[str, Any]]:
    # utf-8-sig: Excel writes a byte-order mark that would otherwise start the first column's name
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


_READERS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    ".jsonl": _read_json,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a local jsonl/json/csv/parquet file; a folder reads each such file in name order."""
    path = Path(path)
    if path.is_dir():
        parts = sorted(p for p in path.iterdir() if p.suffix in _READERS)
        if not parts:
            raise HubkitError(f"{path}: no {'/'.join(FILE_SUFFIXES)} files in this folder")
        return [record for part in parts for record in read_records(part)]
    reader = _READERS.get(path.suffix)
    if reader is None:
        raise HubkitError(f"{path}: unsupported file type (expected {', '.join(FILE_SUFFIXES)})")
    try:
        return reader(path)
    except FileNotFoundError:
        raise InputNotFound(f"{path}: file not found") from None
    except (OSError, ValueError, csv.Error) as exc:  # a user's file that does not parse: theirs to fix
        raise HubkitError(
            f"{path}: unreadable {path.suffix[1:]} file ({type(exc).__name__}: {exc})"
        ) from None


def question_text(row: Row) -> str:
    """The text embedded for a row: instruction and input, as the Platypus notebook joined them."""
    return f"{row['instruction']} {row['input']}" if row["input"] else row["instruction"]


def write_rows(rows: list[Row], path: Path) -> None:
    """Write rows as ``data.parquet``: four string columns, deterministic bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in COLUMNS])
    table = pa.table({name: [row[name] for row in rows] for name in COLUMNS}, schema=schema)
    pq.write_table(table, path, compression="zstd")


def read_dataset(folder: str | os.PathLike[str]) -> list[Row]:
    """The rows of a dataset artifact's ``data.parquet`` as strings (``input`` may be absent),
    refusing a missing file, an unreadable one, a missing column or no rows: what `data check`
    and `train` read."""
    import pyarrow.parquet as pq

    path = Path(folder) / DATA_FILE
    if not path.is_file():
        raise HubkitError(f"{folder}: no {DATA_FILE} (not a dataset artifact; run `hubkit data build`)")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # a truncated or foreign file (ArrowInvalid is a ValueError)
        raise HubkitError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from None
    for column in ("instruction", "output"):
        if column not in table.column_names:
            raise HubkitError(
                f"{path}: missing column '{column}' (a dataset needs instruction and output)"
            )
    if table.num_rows == 0:
        raise HubkitError(f"{path}: no rows")
    rows = table.to_pylist()
    for row in rows:
        for key in COLUMNS:
            row[key] = "" if row.get(key) is None else str(row[key])
    return rows
