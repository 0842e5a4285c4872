"""The dataset card's facts, read from a checked dataset artifact."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import schemas
from ..errors import HubkitError
from ..provenance import CERTIFICATE, load_leak_certificate
from ..recipe import CATEGORIES, Recipe
from ..schemas import DATA_FILE
from .facts import LANGUAGE, LeakCertificate, _needed, _repo_name, _tags

if TYPE_CHECKING:
    from huggingface_hub import CardData

CATEGORY_LABELS = {
    "duplicate": "duplicate",
    "gray_area": "gray area",
    "similar_different": "similar but different",
}

_SIZES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B")


def _size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket for a row count."""
    return _SIZES[min(max(len(str(rows)) - 3, 0), len(_SIZES) - 1)]


@dataclass(frozen=True)
class Source:
    """One data source as ``hubkit data build`` read it."""

    name: str
    location: str
    license: str
    rows: int


@dataclass(frozen=True)
class Dedup:
    """The deduplication rule (``near_threshold`` None: off) and the rows it removed."""

    exact: bool
    near_threshold: float | None
    embedding_model: str | None
    rows_in: int
    removed_exact: int
    removed_near: int


@dataclass(frozen=True)
class DatasetCardContext:
    """Everything the dataset card states, read from a checked dataset artifact."""

    recipe_name: str
    repo_id: str
    sources: list[Source]
    dedup: Dedup
    contamination: dict[str, dict[str, int]]  # benchmark -> category -> flagged rows
    removed: int
    certificate: LeakCertificate
    columns: list[tuple[str, str]]
    rows: int

    @property
    def name(self) -> str:
        return _repo_name(self.repo_id)

    @property
    def license(self) -> str:
        """The sources' one license, or ``other`` when they differ (the card lists each)."""
        licenses = {s.license for s in self.sources}
        return licenses.pop() if len(licenses) == 1 else "other"

    @property
    def categories(self) -> list[tuple[str, str]]:
        return [(c, CATEGORY_LABELS[c]) for c in CATEGORIES]

    def metadata(self) -> CardData:
        from huggingface_hub import DatasetCardData

        return DatasetCardData(
            pretty_name=self.name,
            license=self.license,
            language=[LANGUAGE],
            task_categories=["text-generation"],
            size_categories=[_size_category(self.rows)],
            tags=_tags(
                ["hubkit", "instruction-tuning"], ["decontaminated"] if self.certificate.passed else []
            ),
            configs=[{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}],
        )


def dataset_context(folder: str | os.PathLike[str]) -> DatasetCardContext:
    """The dataset card's facts: ``manifest.json``, ``leak_report.json``, the certificate, the data."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    card = "dataset"
    manifest = schemas.DatasetManifest.read(folder, needed_by=f"the {card} card")
    where = folder / schemas.MANIFEST
    record = load_leak_certificate(folder)
    if record is None:
        raise HubkitError(
            f"{folder / CERTIFICATE}: not found, needed by the dataset card (run `hubkit data check`)"
        )
    certificate = LeakCertificate.of(record, folder / CERTIFICATE, card)
    report = schemas.LeakReport.read(folder, needed_by=f"the {card} card", hint=" (run `hubkit data check`)")
    recipe: Recipe = _needed(manifest.recipe, where, "recipe", card)
    dedup: schemas.DedupRecord = _needed(manifest.dedup, where, "dedup", card)
    sources = [
        Source(
            name=s.name,
            location=s.hub_id or _needed(s.path, where, f"sources[{i}].path", card),
            license=_needed(s.license, where, f"sources[{i}].license", card),
            rows=_needed(s.rows, where, f"sources[{i}].rows", card),
        )
        for i, s in enumerate(manifest.sources)
    ]
    if not sources:
        raise HubkitError(f"{where}: missing field 'sources' needed by the {card} card")
    schema = pq.read_schema(folder / DATA_FILE)
    report_path = folder / schemas.LeakReport.FILE
    return DatasetCardContext(
        recipe_name=recipe.name,
        repo_id=_needed(recipe.hub.dataset_repo, where, "recipe.hub.dataset_repo", card),
        sources=sources,
        dedup=Dedup(
            exact=dedup.exact,
            near_threshold=dedup.near_threshold,
            embedding_model=recipe.data.embedding_model if dedup.near_threshold is not None else None,
            rows_in=dedup.rows_in,
            removed_exact=dedup.removed_exact,
            removed_near=dedup.removed_near,
        ),
        contamination={
            b: {
                c: getattr(_needed(report.summary.get(b), report_path, f"summary.{b}", card), c)
                for c in CATEGORIES
            }
            for b in certificate.benchmarks
        },
        removed=report.removed,
        certificate=certificate,
        columns=[(field.name, str(field.type)) for field in schema],
        rows=pq.read_metadata(folder / DATA_FILE).num_rows,
    )
