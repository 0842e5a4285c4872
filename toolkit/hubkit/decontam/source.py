"""What ``hubkit data check`` reads: a dataset artifact, a local file, or a Hub dataset.

- a dataset artifact folder (``data.parquet`` with ``instruction``/``input``/``output``);
- a local jsonl/json/csv/parquet file (or a folder of them);
- a Hub dataset id, loaded through ``datasets`` (``config``, ``split``, ``revision``).

For a file or a Hub dataset, ``columns`` maps ``instruction``/``input``/``output`` to the
source's columns; a field left out is guessed from common names (``GUESSES``, first present
wins; ``input`` may be absent) and the report states the mapping used and which were guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import digest_of, sha256_file
from ..errors import HubkitError, dataset_errors
from ..portable import portable_ref
from ..rows import read_dataset
from ..schemas import DATA_FILE

FIELDS = ("instruction", "input", "output")
GUESSES: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "prompt", "question", "query", "problem"),
    "input": ("input", "context"),
    "output": ("output", "response", "answer", "completion", "solution"),
}


@dataclass(frozen=True)
class SourceOptions:
    """How to read a file or Hub dataset: column mapping and the Hub split to load."""

    columns: dict[str, str] = field(default_factory=dict)
    config: str | None = None
    split: str = "train"
    revision: str | None = None


@dataclass
class Dataset:
    """Rows to check and what the report says about where they came from."""

    rows: list[dict[str, str]]
    sha256: str
    kind: str  # artifact / file / hub
    where: str
    folder: Path | None = None  # an artifact's folder (its manifest is carried forward)
    columns: dict[str, str | None] = field(default_factory=dict)
    guessed: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        # a local file or folder by name (the certificate records its sha256): never this machine's path
        name = self.where if self.kind == "hub" else portable_ref(self.where)
        out: dict[str, Any] = {"kind": self.kind, "name": name}
        if self.kind != "artifact":
            out.update(columns=self.columns, guessed_columns=self.guessed, **self.options)
        return out


def _mapping(
    present: list[str], given: dict[str, str], where: str
) -> tuple[dict[str, str | None], list[str]]:
    """Each field's column (``given`` or guessed) and the fields guessed; a wrong name is one line."""
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise HubkitError(f"--columns: unknown field {unknown[0]!r}; fields are {', '.join(FIELDS)}")
    columns: dict[str, str | None] = {}
    guessed = []
    for name in FIELDS:
        if name in given:
            if given[name] not in present:
                raise HubkitError(
                    f"{where}: no column {given[name]!r} (given for {name}); columns are {', '.join(present)}"
                )
            columns[name] = given[name]
            continue
        found = next((c for c in GUESSES[name] if c in present and c not in columns.values()), None)
        if found is None and name != "input":
            raise HubkitError(
                f"{where}: no column for {name} (looked for {', '.join(GUESSES[name])}); "
                f"columns are {', '.join(present)}; name it with --columns {name}=COLUMN"
            )
        columns[name] = found
        guessed.append(name)
    return columns, guessed


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _from_hub(hub_id: str, options: SourceOptions) -> list[dict[str, Any]]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(hub_id, options.config, split=options.split, revision=options.revision)
    except dataset_errors() as exc:  # not found, offline, bad config or split: the user's to fix
        raise HubkitError(
            f"{hub_id}: cannot load split {options.split!r} from the Hub ({type(exc).__name__}: {exc})"
        ) from None
    return dataset.to_list()


def read_source(source: str | os.PathLike[str], options: SourceOptions | None = None) -> Dataset:
    """The rows of ``source`` (an artifact folder, a local file or a Hub dataset id), mapped."""
    from ..rows import FILE_SUFFIXES, read_records

    path, name = Path(source), str(source)
    options = options or SourceOptions()
    if path.is_dir() and (path / DATA_FILE).is_file() and not options.columns:
        return Dataset(read_dataset(path), sha256_file(path / DATA_FILE), "artifact", name, folder=path)
    if path.exists():
        records, kind, extra = read_records(path), "file", {}
    elif name.endswith(FILE_SUFFIXES) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise HubkitError(f"{source}: file not found (nor a Hub dataset id: OWNER/NAME)")
    else:
        records, kind = _from_hub(str(source), options), "hub"
        extra = {"config": options.config, "split": options.split, "revision": options.revision}
    if not records:
        raise HubkitError(f"{source}: no rows to check")
    present = list(dict.fromkeys(key for record in records for key in record))
    columns, guessed = _mapping(present, options.columns, str(source))
    rows = [
        {name: _text(record.get(col)).strip() if col else "" for name, col in columns.items()}
        for record in records
    ]
    for row in rows:
        row["data_source"] = ""
    return Dataset(rows, digest_of(rows), kind, str(source), None, columns, guessed, extra)


def parse_columns(spec: str | None) -> dict[str, str]:
    """``instruction=question,output=answer`` as a mapping (a one-line error when malformed)."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not name or not column:
            raise HubkitError(f"--columns {part!r}: expected FIELD=COLUMN (fields: {', '.join(FIELDS)})")
        out[name] = column
    return out
