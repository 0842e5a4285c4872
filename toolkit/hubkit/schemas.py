"""The files hubkit's stages hand each other, one pydantic model per file, with its file name.

Writers build the model and write ``to_json_dict()``; readers call ``read`` (which runs
``model_validate_json``), so what a file holds is written down once, here. A file that does not
fit gives a one-line error naming the file and the field.

The models say what every writer guarantees, not what one reader needs: a card that cannot do
without a field a writer may leave out (a source's license) checks it where it reads it.
Unknown fields are kept (``extra="allow"``), so a newer writer's additions survive a rewrite.

Every file carries ``schema_version``. A file without one was written before versions were
recorded, in the layout of version 1, and reads as such; a newer version than this hubkit knows
is refused, naming the hubkit that wrote it. When a layout changes, bump ``SCHEMA_VERSION`` and
migrate the older layout in that model's ``_migrate`` (``MergedProvenance`` shows one: its
``versions`` field became ``libraries``).

A new artifact file (evaluation results, another merge engine's provenance) is a subclass of
``ArtifactFile`` with its ``FILE`` name and fields, listed in ``ARTIFACT_FILES``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from . import __version__
from .errors import HubkitError, InputNotFound, format_validation_error
from .methods import MERGE_METHODS
from .recipe import CATEGORIES, Recipe, one_of

SCHEMA_VERSION = 1
# The artifact kinds a manifest names (and the ``Literal`` of each kind's manifest spells).
DATASET, ADAPTER, MERGED = "dataset", "adapter", "merged"
MANIFEST = "manifest.json"
PROVENANCE = "provenance.json"  # each artifact's own: an adapter's, a merged model's, the tiny base's
DATA_FILE = "data.parquet"


class _Record(BaseModel):
    """A part of an artifact file: typed fields, unknown ones kept as they are."""

    model_config = ConfigDict(extra="allow")

    def __getitem__(self, field: str) -> Any:
        """A field by name, as in the JSON it came from (``certificate["passed"]``)."""
        try:
            return getattr(self, field)
        except AttributeError:
            raise KeyError(field) from None


def parse_part(
    model: type[BaseModel], data: Any, source: str | os.PathLike[str], prefix: str, needed_by: str = ""
) -> Any:
    """Validate ``data``, a part of the file ``source`` found at ``prefix`` (``adapter_provenance.``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HubkitError(
            format_validation_error(exc, str(source), noun="field", prefix=prefix, needed_by=needed_by)
        ) from None


class ArtifactFile(_Record):
    """One JSON file of an artifact folder: ``FILE`` is its name there."""

    FILE: ClassVar[str]
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="before")
    @classmethod
    def _versioned(cls, data: Any) -> Any:
        """Refuse a layout newer than this hubkit's; bring an older one up to date."""
        if not isinstance(data, dict):
            return data
        found = data.get("schema_version", 1)
        if isinstance(found, int) and found > SCHEMA_VERSION:
            writer = data.get("hubkit_version") or "a newer hubkit"
            raise ValueError(
                f"schema_version {found} (written by hubkit {writer}); hubkit {__version__} reads "
                f"{cls.FILE} up to schema_version {SCHEMA_VERSION}: upgrade hubkit"
            )
        return cls._migrate(data) if isinstance(found, int) and found < SCHEMA_VERSION else data

    @classmethod
    def _migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """An older layout in this version's shape (version 1 is the first: nothing to do)."""
        return data

    @classmethod
    def read(cls, folder: str | os.PathLike[str], *, needed_by: str = "", hint: str = "") -> Self:
        """The file in ``folder``; errors name the file and field, and ``needed_by`` what wanted it
        (``hint`` says which command writes it)."""
        path = Path(folder) / cls.FILE
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            need = f", needed by {needed_by}" if needed_by else ""
            raise InputNotFound(f"{path}: not found{need}{hint}") from None
        except OSError as exc:
            raise HubkitError(f"{path}: not readable ({exc.strerror})") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            if exc.errors()[0]["type"].startswith("json"):
                raise HubkitError(f"{path}: not readable JSON ({exc.errors()[0]['msg']})") from None
            raise HubkitError(
                format_validation_error(exc, str(path), noun="field", needed_by=needed_by)
            ) from None

    def to_json_dict(self) -> dict[str, Any]:
        """The file's content: the fields the writer gave, at every level (an optional field it
        left out stays out, rather than appearing as null), the kind and the schema version."""
        data = self.model_dump(mode="json", exclude_unset=True)
        if "kind" in type(self).model_fields:
            data["kind"] = self.kind  # type: ignore[attr-defined]
        return {**data, "schema_version": self.schema_version}


# --------------------------------------------------------------------------- shared parts


class Hardware(_Record):
    """What a training run ran on, as ``hubkit train`` measures it."""

    processes: int
    gpus: list[str]
    cpu: str
    cpu_count: int
    gpu_count: int | None = None
    platform: str | None = None


class LeakCertificate(ArtifactFile):
    """``leak_certificate.json``: what ``hubkit data check`` certified about ``data.parquet`` beside it.

    It travels on into the adapter's and the merged model's provenance.
    """

    FILE: ClassVar[str] = "leak_certificate.json"
    passed: bool
    dataset_sha256: str
    # name -> how it was loaded (files written before held the names only)
    benchmarks: dict[str, dict[str, Any]] | list[str] | None = None
    embedding_model: str | None = None
    embedding_model_revision: str | None = None
    threshold: float | None = None  # the lowest cosine the check considered
    rule: dict[str, Any] | None = None  # method, views and per-benchmark thresholds (decontam/rule.py)
    source: dict[str, Any] | None = None  # what was checked: an artifact, a file or a Hub dataset
    removed_categories: list[str] = Field(default_factory=list)
    kept_categories: list[str] = Field(default_factory=list)
    rows_checked: int | None = None
    rows_removed: int | None = None
    hubkit_version: str | None = None


# --------------------------------------------------------------------------- manifests


class Manifest(ArtifactFile):
    """``manifest.json``: what an artifact folder is, its files' hashes and what it was made from."""

    FILE: ClassVar[str] = MANIFEST
    kind: str
    hubkit_version: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str]
    content_hash: str


class SourceRecord(_Record):
    """One data source as ``hubkit data build`` read it."""

    name: str
    path: str | None = None
    hub_id: str | None = None
    license: str | None = None
    rows: int | None = None
    content_sha256: str | None = None


class DedupRecord(_Record):
    """The deduplication rule (``near_threshold`` None: off) and the rows it removed."""

    exact: bool
    near_threshold: float | None
    rows_in: int
    removed_exact: int
    removed_near: int


class DatasetManifest(Manifest):
    kind: Literal["dataset"] = DATASET
    recipe: Recipe | None = None
    sources: list[SourceRecord] = Field(default_factory=list)
    dedup: DedupRecord | None = None
    rows: int | None = None


class AdapterManifest(Manifest):
    kind: Literal["adapter"] = ADAPTER
    base_model: str | None = None
    dataset_sha256: str | None = None
    allow_unchecked_data: bool | None = None
    leak_check_passed: bool | None = None


class VerificationSummary(_Record):
    """The part of ``verification.json`` the manifest repeats, for ``require_verified``."""

    passed: bool
    max_abs_logit_diff: float | None
    tolerance: float | None
    weights_sha256: str


class MergedManifest(Manifest):
    kind: Literal["merged"] = MERGED
    method: str | None = None
    verification: VerificationSummary | None = None


MANIFESTS: dict[str, type[Manifest]] = {
    DATASET: DatasetManifest,
    ADAPTER: AdapterManifest,
    MERGED: MergedManifest,
}


# --------------------------------------------------------------------------- dataset check

CategoryCounts = create_model(
    "CategoryCounts", __base__=_Record, **{category: (int, ...) for category in CATEGORIES}
)


class LeakReport(ArtifactFile):
    """``leak_report.json``: every hit of the leak check and the counts per benchmark and category."""

    FILE: ClassVar[str] = "leak_report.json"
    removed: int
    kept: int
    summary: dict[str, CategoryCounts]  # type: ignore[valid-type]
    rows_checked: int | None = None
    kept_flagged: int | None = None
    rule: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    hits: list[dict[str, Any]] = Field(default_factory=list)  # each with its view and evidence


# --------------------------------------------------------------------------- adapter


class LossPoint(_Record):
    step: int
    loss: float
    learning_rate: float | None = None
    num_input_tokens_seen: int | None = None


class ParameterCount(_Record):
    trainable: int
    total: int
    percent: float


class TrainingMetrics(ArtifactFile):
    """``metrics.json``: the loss curve and what the training run measured."""

    FILE: ClassVar[str] = "metrics.json"
    loss: list[LossPoint]
    train_loss: float
    global_step: int
    resumed_from: str | None = None
    tokens_seen: int
    wall_time_s: float
    global_batch_size: int
    trainable_parameters: ParameterCount
    hardware: Hardware


class BaseModelRecord(_Record):
    name_or_path: str
    revision: str | None = None
    resolved_revision: str | None = None
    files: dict[str, str] = Field(default_factory=dict)


class DatasetRecord(_Record):
    path: str
    hub_id: str | None = None
    data_sha256: str
    manifest_content_hash: str | None = None
    rows: int


class AdapterProvenance(ArtifactFile):
    """``provenance.json`` of an adapter: the recipe, base model, data and certificate it was trained from."""

    FILE: ClassVar[str] = PROVENANCE
    base_model: BaseModelRecord
    dataset: DatasetRecord
    datasets: list[str]  # the Hub datasets trained on, for the taint gate's lineage
    leak_certificate: LeakCertificate | None
    allow_unchecked_data: bool
    recipe: Recipe
    libraries: dict[str, str]
    hardware: Hardware


class BaseModelProvenance(ArtifactFile):
    """``provenance.json`` of the seeded tiny base model: random weights that saw no data."""

    FILE: ClassVar[str] = PROVENANCE
    kind: Literal["base-model"] = "base-model"
    name: str
    weights: str
    datasets: list[str]
    tokenizer_corpus_sha256: str
    hubkit_version: str


# --------------------------------------------------------------------------- merged model


class MergeInputRecord(_Record):
    """One merge input: where it was, and how it was pinned (``sha256``: content hash or ``id@commit``)."""

    id: str
    role: Literal["base", "adapter", "model"]
    path: str | None = None
    revision: str | None = None
    sha256: str
    weight: float | None = None


class GateRecord(_Record):
    """The taint gate's verdict on one input, and the lineage it judged."""

    id: str
    verdict: str
    reason: str
    override: bool
    provenance: str  # where the lineage came from: hubkit provenance, model card, none
    datasets: list[str] = Field(default_factory=list)
    ancestors: list[str] = Field(default_factory=list)
    leak_certificate: LeakCertificate | None = None


class RegistryRecord(_Record):
    entries: int
    sha256: str


class TaintGate(_Record):
    inputs: list[GateRecord]
    registry: RegistryRecord
    allow_unverified: list[str] = Field(default_factory=list)


class MergedProvenance(ArtifactFile):
    """``provenance.json`` of a merged model: its inputs, the taint gate's verdicts and the settings.

    An adapter merge adds the adapter's own provenance (``adapter_provenance``, as the adapter
    brought it: it may come from anywhere) and what the fold touched; a model merge its weights.
    """

    FILE: ClassVar[str] = PROVENANCE
    kind: Literal["merged"] = MERGED
    method: Annotated[str, one_of("merge method", MERGE_METHODS)]
    inputs: list[MergeInputRecord]
    taint_gate: TaintGate
    allow_unverified: list[str] = Field(default_factory=list)
    libraries: dict[str, str] = Field(
        default_factory=dict, validation_alias=AliasChoices("libraries", "versions")
    )
    recipe: Recipe | None = None
    max_shard_size: str | int | None = None
    base_model: str | None = None
    allow_unchecked_data: bool | None = None
    # adapter merges
    base_revision: str | None = None
    adapter: str | None = None
    lora: dict[str, Any] | None = None
    touched_tensors: list[str] | None = None
    leak_certificate: LeakCertificate | None = None
    adapter_provenance: dict[str, Any] | None = None
    # model merges
    models: list[str] | None = None


class VerificationRecord(ArtifactFile):
    """``verification.json``: the equivalence check of a merged model and the figures behind it."""

    FILE: ClassVar[str] = "verification.json"
    method: str
    check: str
    passed: bool
    problems: list[str]
    dtype: str | None = None
    reference: str | None = None
    probes: list[str] = Field(default_factory=list)
    weights_sha256: str
    max_abs_logit_diff: float | None = None
    tolerance: float | None = None

    def summary(self) -> VerificationSummary:
        return VerificationSummary(
            passed=self.passed,
            max_abs_logit_diff=self.max_abs_logit_diff,
            tolerance=self.tolerance,
            weights_sha256=self.weights_sha256,
        )


ARTIFACT_FILES: tuple[type[ArtifactFile], ...] = (
    Manifest,
    LeakCertificate,
    LeakReport,
    TrainingMetrics,
    AdapterProvenance,
    BaseModelProvenance,
    MergedProvenance,
    VerificationRecord,
)
