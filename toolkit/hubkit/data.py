"""Sources to one Alpaca dataset artifact: mapped, cleaned, de-duplicated, reproducible.

``build_dataset`` reads every source a recipe lists (a Hub dataset or a local
jsonl/json/csv/parquet file), maps it to ``instruction``/``input``/``output`` through the
source's column mapping, tags each row with ``data_source``, drops rows with an empty
instruction or output, then removes duplicates the way Platypus did:

- exact duplicates: the same normalised instruction and input (Unicode NFKC, case folded,
  whitespace collapsed); the row with the longest output survives, in its own place;
- near duplicates: embedding cosine >= ``data.dedup.near_threshold`` (same model and cache as
  ``hubkit data check``); rows are visited longest output first and one survives when no
  surviving row is that close, so again the longest answer stays.

The same inputs give a byte-identical ``data.parquet``: no timestamps, fixed row order, a
fixed writer. The manifest records rows per source with their content hashes, the dedup
counts and thresholds, and the embedding model and revision.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import atomic_folder, digest_of, is_up_to_date, write_manifest
from .errors import HubkitError, dataset_errors
from .portable import portable_ref
from .recipe import Recipe, SourceSpec
from .rows import COLUMNS, Row, question_text, read_records, write_rows
from .schemas import DATA_FILE

if TYPE_CHECKING:
    from .decontam.embed import Embedder


def normalize_text(text: str) -> str:
    """The form two texts must share to count as exact duplicates."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _load_source(spec: SourceSpec, recipe: Recipe) -> tuple[list[dict[str, Any]], str]:
    """The raw records of one source and where they came from (for error messages)."""
    if spec.path is not None:
        path = recipe.resolve(spec.path)
        return read_records(path), str(path)
    from datasets import load_dataset

    where = f"{spec.hub_id}" + (f" ({spec.config})" if spec.config else "") + f" split {spec.split}"
    try:
        dataset = load_dataset(spec.hub_id, spec.config, split=spec.split, revision=spec.revision)
    except dataset_errors() as exc:  # not found, no network, bad config/split: all fixable by the user
        raise HubkitError(
            f"{recipe.source}: source {spec.name!r}: cannot load {where} ({type(exc).__name__}: {exc})"
        ) from None
    return dataset.to_list(), where


def _as_text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def map_rows(records: list[dict[str, Any]], spec: SourceSpec, where: str) -> list[Row]:
    """Records to Alpaca rows through ``spec.columns``; a missing column names the source and file.

    Columns are those of any record (jsonl records need not share keys). ``input`` is optional
    unless the recipe maps it: the default mapping names it, but many sources have no input.
    """
    if not records:
        raise HubkitError(f"{where}: source {spec.name!r}: no records")
    columns = {"input": None, **spec.columns}
    present = {key for record in records for key in record}
    optional = set() if "columns" in spec.model_fields_set else {"input"}
    for field, column in columns.items():
        if column is not None and column not in present and field not in optional:
            raise HubkitError(
                f"{where}: source {spec.name!r}: no column {column!r} (mapped to {field}); "
                f"columns are {sorted(present)}"
            )
    return [
        {
            "instruction": _as_text(record.get(columns["instruction"])).strip(),
            "input": _as_text(record.get(columns["input"])).strip() if columns["input"] else "",
            "output": _as_text(record.get(columns["output"])).strip(),
            "data_source": spec.name,
        }
        for record in records
    ]


def drop_exact_duplicates(rows: list[Row]) -> list[Row]:
    """One row per normalised (instruction, input): the longest output wins, first on ties."""
    best: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        key = (normalize_text(row["instruction"]), normalize_text(row["input"]))
        j = best.get(key)
        if j is None or len(row["output"]) > len(rows[j]["output"]):
            best[key] = i
    return [rows[i] for i in sorted(best.values())]


def drop_near_duplicates(rows: list[Row], threshold: float, embedder: Embedder) -> list[Row]:
    """Drop rows whose embedding is within ``threshold`` cosine of a surviving row.

    Rows are visited longest output first; a row survives unless an already-surviving row is
    that similar. Similarity is computed in bounded blocks, never as a full N x N matrix.
    """
    from .decontam.search import similar_pairs

    if len(rows) < 2:
        return rows
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]["output"]), i))
    vectors = embedder.embed([question_text(rows[i]) for i in order], desc="Embedding rows (dedup)")
    earlier: dict[int, list[int]] = {}
    for pos, other, _ in similar_pairs(vectors, vectors, threshold, below_diagonal=True):
        earlier.setdefault(pos, []).append(other)
    kept = [False] * len(order)
    for pos in range(len(order)):
        kept[pos] = not any(kept[other] for other in earlier.get(pos, ()))
    return [rows[i] for i in sorted(order[pos] for pos in range(len(order)) if kept[pos])]


def build_dataset(recipe: Recipe, out_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Build the recipe's dataset artifact (default ``runs/<name>/dataset``) and return its folder.

    An artifact already built from the same ``data`` section and source contents is kept
    (unless ``force``), before any embedding is done."""
    section = recipe.data
    if not section.sources:
        raise HubkitError(f"{recipe.source}: data.sources: list at least one source to build from")
    out = Path(out_dir) if out_dir is not None else recipe.run_dir() / "dataset"
    rows: list[Row] = []
    sources = []
    for spec in section.sources:
        records, where = _load_source(spec, recipe)
        mapped = map_rows(records, spec, where)
        kept = [r for r in mapped if r["instruction"] and r["output"]]
        if not kept:
            raise HubkitError(f"{where}: source {spec.name!r} has no rows with an instruction and output")
        location = (
            {"path": portable_ref(spec.path)} if spec.path else {"hub_id": spec.hub_id, "config": spec.config}
        )
        sources.append(
            {
                "name": spec.name,
                **location,
                "split": spec.split,
                "revision": spec.revision,
                "license": spec.license,
                "rows_read": len(mapped),
                "rows_empty": len(mapped) - len(kept),
                "content_sha256": digest_of(kept),
            }
        )
        rows.extend(kept)
    inputs = {
        "data": digest_of(section.model_dump(mode="json")),
        "sources": digest_of([s["content_sha256"] for s in sources]),
    }
    dedup = section.dedup
    embedder = None
    if dedup.near_threshold is not None:
        from .decontam.embed import Embedder

        embedder = Embedder(section.embedding_model)
        inputs["embedding"] = embedder.revision  # another model finds other near-duplicates
    if not force and is_up_to_date(out, inputs):
        return out
    rows_in = len(rows)
    if dedup.exact:
        rows = drop_exact_duplicates(rows)
    after_exact = len(rows)
    embedding: dict[str, Any] | None = None
    if embedder is not None:
        rows = drop_near_duplicates(rows, dedup.near_threshold, embedder)
        embedding = {"model": embedder.model_id, "revision": embedder.revision}
    per_source = {s["name"]: 0 for s in sources}
    for row in rows:
        per_source[row["data_source"]] += 1
    for source in sources:
        source["rows"] = per_source[source["name"]]
    with atomic_folder(out) as tmp:
        write_rows(rows, tmp / DATA_FILE)
        write_manifest(
            tmp,
            "dataset",
            inputs=inputs,
            recipe=recipe.to_dict(),
            sources=sources,
            dedup={
                "exact": dedup.exact,
                "near_threshold": dedup.near_threshold,
                "rows_in": rows_in,
                "removed_exact": rows_in - after_exact,
                "removed_near": after_exact - len(rows),
            },
            embedding=embedding,
            rows=len(rows),
            columns=list(COLUMNS),
        )
    return out
