"""Hub cards written from the artifacts, so every fact on a card was measured, never retyped.

Each card has a typed context built from one artifact folder: ``DatasetCardContext`` from a
checked dataset, ``AdapterCardContext`` from an adapter, ``MergedCardContext`` from a merged
model. Every file is read through its schema (``hubkit.schemas``), which turns a missing field
into a one-line error naming the file and the field, and a field a file may leave out but a
card cannot is checked by ``_needed`` the same way, so a card is complete or not written at all.

The contexts are rendered through the Jinja2 templates of the top-level ``cards/`` folder
(installed as ``hubkit/card_templates``) by huggingface_hub's ``DatasetCard``/``ModelCard``
``from_template``, with the metadata built by ``DatasetCardData``/``ModelCardData`` and
``EvalResult``, so the YAML front matter and ``model-index`` are what the Hub expects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml

from . import schemas
from .errors import HubkitError
from .evaluate import read_eval_results
from .methods import MERGE_METHODS
from .prompts import TEMPLATES
from .provenance import CERTIFICATE, load_leak_certificate
from .recipe import CATEGORIES, Recipe
from .schemas import DATA_FILE
from .scores import EvalScore

if TYPE_CHECKING:
    from huggingface_hub import CardData, RepoCard

CardKind = Literal["dataset", "adapter", "merged"]
CARD = "README.md"
LOSS_PLOT = "training_loss.png"
# hubkit's prompt templates and the benchmarks it checks are English, as Platypus was.
LANGUAGE = "en"
CATEGORY_LABELS = {
    "duplicate": "duplicate",
    "gray_area": "gray area",
    "similar_different": "similar but different",
}


def _needed(value: Any, path: Path, field: str, card: str) -> Any:
    """A field the card cannot do without, though its file may leave it out (None)."""
    if value is None:
        raise HubkitError(f"{path}: missing field '{field}' needed by the {card} card")
    return value


def _hub_ids(refs: Sequence[str | None]) -> list[str]:
    """The Hub repo ids among ``refs``, unique: local paths and ``hubkit:`` names are not Hub metadata."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    out = []
    for ref in refs:
        if not ref:
            continue
        try:
            validate_repo_id(ref)
        except HFValidationError:
            continue
        out.append(ref)
    return list(dict.fromkeys(out))


def _tags(*groups: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tag for group in groups for tag in group))


def _repo_name(repo_id: str) -> str:
    return repo_id.rsplit("/", 1)[-1]


def _one_or_many(items: list[str]) -> str | list[str] | None:
    """A metadata value as the Hub writes it: a string for one item, a list for several."""
    return items[0] if len(items) == 1 else items or None


def _trained_on(provenance: schemas.AdapterProvenance) -> list[str]:
    """The Hub datasets an adapter was trained on, as ``provenance.json`` records them, not as the
    recipe names them (``--dataset`` overrides it): the artifact's Hub id, or for a local artifact
    ``hub.dataset_repo``, where the recipe publishes it; then the Hub sources of its rows."""
    own = provenance.dataset.hub_id or provenance.recipe.hub.dataset_repo
    return _hub_ids([own, *provenance.datasets])


# --------------------------------------------------------------------------- shared facts


@dataclass(frozen=True)
class LeakCertificate:
    """What ``hubkit data check`` certified; shown on every card downstream of the data."""

    passed: bool
    dataset_sha256: str
    benchmarks: list[str]
    embedding_model: str
    threshold: float

    @classmethod
    def of(cls, record: schemas.LeakCertificate, path: Path, card: str, prefix: str = "") -> LeakCertificate:
        """The certificate ``record`` read from ``path`` (at ``prefix`` in it), with what the card shows."""
        return cls(
            passed=record.passed,
            dataset_sha256=record.dataset_sha256,
            benchmarks=[str(b) for b in _needed(record.benchmarks, path, f"{prefix}benchmarks", card)],
            embedding_model=_needed(record.embedding_model, path, f"{prefix}embedding_model", card),
            threshold=_needed(record.threshold, path, f"{prefix}threshold", card),
        )

    def rows(self) -> list[tuple[str, str]]:
        """The certificate as (label, value) rows, the same table on every card."""
        return [
            ("Passed", "yes" if self.passed else "**no**"),
            ("Data sha256", f"`{self.dataset_sha256}`"),
            ("Benchmarks", ", ".join(self.benchmarks)),
            ("Embedding model", f"`{self.embedding_model}`"),
            ("Similarity threshold", f"{self.threshold:g}"),
        ]


def _model_index_data(name: str, scores: Sequence[EvalScore]) -> dict[str, Any]:
    """ModelCardData arguments for ``model-index`` (none without scores)."""
    if not scores:
        return {}
    return {"model_name": name, "eval_results": [s.to_eval_result() for s in scores]}


# --------------------------------------------------------------------------- dataset card

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

    TEMPLATE: ClassVar[str] = "dataset_card.md"
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


# --------------------------------------------------------------------------- adapter card


@dataclass(frozen=True)
class Hardware:
    """What the training ran on, as ``hubkit train`` measured it."""

    processes: int
    gpus: list[str]
    cpu: str
    cpu_count: int

    def __str__(self) -> str:
        if self.gpus:
            names = sorted(set(self.gpus))
            kinds = ", ".join(f"{self.gpus.count(n)} x {n}" for n in names)
        else:
            kinds = f"CPU only: {self.cpu} ({self.cpu_count} cores)"
        return f"{kinds}; {self.processes} process{'es' if self.processes != 1 else ''}"


@dataclass(frozen=True)
class Lora:
    """The recipe's LoRA settings."""

    r: int
    alpha: int
    dropout: float
    target_modules: list[str]
    bias: str


def _duration(seconds: float) -> str:
    """``4 h 12 min (15,123.4 s)``: readable, with the measured seconds kept."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else ""
    return f"{text} ({seconds:,.1f} s)" if text else f"{seconds:,.1f} s"


@dataclass(frozen=True)
class AdapterCardContext:
    """Everything the adapter card states, read from an adapter artifact."""

    TEMPLATE: ClassVar[str] = "adapter_card.md"
    recipe_name: str
    recipe_version: str
    repo_id: str
    license: str
    tags: list[str]
    dataset_repo: str | None
    datasets: list[str]
    base_model: str
    base_revision: str | None
    lora: Lora
    training: dict[str, Any]
    prompt_template: str
    max_length: int
    trainable: int
    total_parameters: int
    trainable_percent: float
    loss: list[tuple[int, float]]
    train_loss: float
    steps: int
    tokens: int
    global_batch_size: int
    wall_time_s: float
    hardware: Hardware
    dataset_sha256: str
    dataset_rows: int
    certificate: LeakCertificate | None
    allow_unchecked_data: bool
    libraries: dict[str, str]
    scores: list[EvalScore]

    @property
    def name(self) -> str:
        return _repo_name(self.repo_id)

    @property
    def wall_time(self) -> str:
        return _duration(self.wall_time_s)

    @property
    def hyperparameters(self) -> list[tuple[str, str]]:
        """The recipe's ``training`` section, sorted, with values as the YAML recipe spells them."""
        return [
            (k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in sorted(self.training.items())
        ]

    @property
    def prompt(self) -> str:
        """The prompt wording the adapter was trained with (rows without an input)."""
        return TEMPLATES[self.prompt_template].without_input

    def metadata(self) -> CardData:
        from huggingface_hub import ModelCardData

        base = _hub_ids([self.base_model])
        return ModelCardData(
            license=self.license,
            language=[LANGUAGE],
            library_name="peft",
            pipeline_tag="text-generation",
            tags=_tags(["hubkit", "peft", "lora"], self.tags),
            base_model=_one_or_many(base),
            base_model_relation="adapter" if base else None,
            datasets=self.datasets or None,
            **_model_index_data(self.name, self.scores),
        )


def adapter_context(
    folder: str | os.PathLike[str], eval_results: str | os.PathLike[str] | None = None
) -> AdapterCardContext:
    """The adapter card's facts: ``provenance.json`` (recipe, base, data, certificate), ``metrics.json``."""
    folder = Path(folder)
    card = "adapter"
    hint = " (run `hubkit train`)"
    provenance = schemas.AdapterProvenance.read(folder, needed_by=f"the {card} card", hint=hint)
    metrics = schemas.TrainingMetrics.read(folder, needed_by=f"the {card} card", hint=hint)
    where = folder / schemas.AdapterProvenance.FILE
    recipe = provenance.recipe
    if not provenance.allow_unchecked_data:
        _needed(provenance.leak_certificate, where, "leak_certificate", card)
    if not metrics.loss:
        raise HubkitError(
            f"{folder / schemas.TrainingMetrics.FILE}: field 'loss' is empty; the adapter card plots it"
        )
    return AdapterCardContext(
        recipe_name=recipe.name,
        recipe_version=recipe.version,
        repo_id=_needed(recipe.hub.adapter_repo, where, "recipe.hub.adapter_repo", card),
        license=_needed(recipe.hub.license, where, "recipe.hub.license", card),
        tags=list(recipe.hub.tags),
        dataset_repo=recipe.hub.dataset_repo,
        datasets=_trained_on(provenance),
        base_model=provenance.base_model.name_or_path,
        base_revision=provenance.base_model.resolved_revision,
        lora=Lora(
            r=recipe.lora.r,
            alpha=recipe.lora.alpha,
            dropout=recipe.lora.dropout,
            target_modules=list(recipe.lora.target_modules),
            bias=recipe.lora.bias,
        ),
        training=dict(recipe.training),
        prompt_template=recipe.data.prompt_template,
        max_length=recipe.data.max_length,
        trainable=metrics.trainable_parameters.trainable,
        total_parameters=metrics.trainable_parameters.total,
        trainable_percent=metrics.trainable_parameters.percent,
        loss=[(p.step, p.loss) for p in metrics.loss],
        train_loss=metrics.train_loss,
        steps=metrics.global_step,
        tokens=metrics.tokens_seen,
        global_batch_size=metrics.global_batch_size,
        wall_time_s=metrics.wall_time_s,
        hardware=Hardware(
            processes=metrics.hardware.processes,
            gpus=list(metrics.hardware.gpus),
            cpu=metrics.hardware.cpu,
            cpu_count=metrics.hardware.cpu_count,
        ),
        dataset_sha256=provenance.dataset.data_sha256,
        dataset_rows=provenance.dataset.rows,
        certificate=(
            LeakCertificate.of(provenance.leak_certificate, where, card, "leak_certificate.")
            if provenance.leak_certificate
            else None
        ),
        allow_unchecked_data=provenance.allow_unchecked_data,
        libraries=dict(provenance.libraries),
        scores=read_eval_results(eval_results) if eval_results else [],
    )


def plot_loss(points: Sequence[tuple[int, float]], path: str | os.PathLike[str], title: str) -> Path:
    """Save the training-loss curve as a PNG (Agg, no pyplot state, no version stamp in the file)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    steps, losses = zip(*points, strict=True)
    ax.plot(steps, losses, color="tab:blue", linewidth=1.5, marker="." if len(points) <= 50 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return Path(path)


# --------------------------------------------------------------------------- merged card


@dataclass(frozen=True)
class GateResult:
    """The taint gate's verdict on one merge input, and the lineage it judged."""

    lineage: str
    verdict: str
    reason: str
    override: bool
    datasets: list[str]
    ancestors: list[str]
    certificate: LeakCertificate | None


@dataclass(frozen=True)
class MergeInput:
    """One merge input: how it was pinned (``sha256``: content hash or ``id@commit``) and judged."""

    id: str
    role: str
    revision: str | None
    sha256: str
    weight: float | None
    gate: GateResult


@dataclass(frozen=True)
class Verification:
    """The equivalence check as ``hubkit verify merge`` recorded it."""

    passed: bool
    check: str
    problems: list[str]
    figures: dict[str, Any]

    def rows(self) -> list[tuple[str, str]]:
        """Its scalar figures (differences, tolerance, counts), sorted, floats to 4 significant digits."""
        return [
            (k, str(v).lower() if isinstance(v, bool) else f"{v:.4g}" if isinstance(v, float) else str(v))
            for k, v in sorted(self.figures.items())
        ]


@dataclass(frozen=True)
class MergedCardContext:
    """Everything the merged-model card states, read from a merged artifact."""

    TEMPLATE: ClassVar[str] = "merged_card.md"
    repo_id: str
    license: str
    tags: list[str]
    datasets: list[str]
    method: str
    inputs: list[MergeInput]
    registry_entries: int
    registry_sha256: str
    allow_unchecked_data: bool
    verification: Verification
    scores: list[EvalScore]
    mergekit_config: str | None = None  # the configuration mergekit ran, as published (YAML)
    seed: int | None = None  # a random method's seed
    # other models scored on the same tasks (the base, the adapter on it, each merge input), by label
    compare: dict[str, list[EvalScore]] = field(default_factory=dict)

    def score_table(self) -> tuple[list[str], list[list[str]]]:
        """The merged model's scores beside the compared models', one row per benchmark and an
        average row (over the merged model's benchmarks; "-" for a model not scored on all)."""
        columns = [*self.compare, "merged"]
        values = {label: {s.task.key: s.value for s in scores} for label, scores in self.compare.items()}
        values["merged"] = {s.task.key: s.value for s in self.scores}
        keys = [s.task.key for s in self.scores]
        rows = [
            [s.task.dataset_name, s.task.metric_name]
            + [f"{values[c][s.task.key]:.2f}" if s.task.key in values[c] else "-" for c in columns]
            for s in self.scores
        ]
        averages = [
            f"{sum(values[c][k] for k in keys) / len(keys):.2f}" if all(k in values[c] for k in keys) else "-"
            for c in columns
        ]
        return columns, [*rows, ["Average", "", *averages]]

    @property
    def name(self) -> str:
        return _repo_name(self.repo_id)

    @property
    def overrides(self) -> list[MergeInput]:
        return [m for m in self.inputs if m.gate.override]

    @property
    def intro(self) -> str:
        """What was merged, as the card's first line says it."""
        return MERGE_METHODS[self.method].intro.format(n=len(self.inputs))

    def metadata(self) -> CardData:
        from huggingface_hub import ModelCardData

        # an adapter folded into its base is a fine-tune of the base; a merge is made of all inputs
        method = MERGE_METHODS[self.method]
        # only inputs fetched from the Hub (pinned at a commit) are Hub models: not local folders
        base = _hub_ids(method.base_models([(m.id, m.role) for m in self.inputs if m.revision]))
        return ModelCardData(
            license=self.license,
            language=[LANGUAGE],
            library_name="transformers",
            pipeline_tag="text-generation",
            tags=_tags(list(method.tags), self.tags),
            base_model=_one_or_many(base),
            base_model_relation=method.relation if base else None,
            datasets=self.datasets or None,
            **_model_index_data(self.name, self.scores),
        )


def merged_context(
    folder: str | os.PathLike[str],
    eval_results: str | os.PathLike[str] | None = None,
    compare: Mapping[str, str | os.PathLike[str]] | None = None,
) -> MergedCardContext:
    """The merged card's facts: ``provenance.json`` (inputs, taint gate, recipe) and ``verification.json``;
    ``compare`` (label -> eval results of the base, the adapter, ...) shown beside ``eval_results``."""
    folder = Path(folder)
    card = "merged"
    provenance = schemas.MergedProvenance.read(
        folder, needed_by=f"the {card} card", hint=" (run `hubkit merge`)"
    )
    verification = schemas.VerificationRecord.read(
        folder, needed_by=f"the {card} card", hint=" (run `hubkit verify merge`)"
    )
    where = folder / schemas.MergedProvenance.FILE
    # A model merge records its recipe; an adapter merge carries the adapter's training recipe.
    if MERGE_METHODS[provenance.method].inputs == "adapter" and provenance.recipe is None:
        adapter = _needed(provenance.adapter_provenance, where, "adapter_provenance", card)
        field = "adapter_provenance.recipe"
        recipe: Recipe = schemas.parse_part(
            Recipe, _needed(adapter.get("recipe"), where, field, card), where, f"{field}.", f"the {card} card"
        )
    else:
        field = "recipe"
        recipe = _needed(provenance.recipe, where, field, card)
    gate = provenance.taint_gate
    gate_records = {g.id: (i, g) for i, g in enumerate(gate.inputs)}
    inputs = []
    for record in provenance.inputs:
        if record.id not in gate_records:
            raise HubkitError(
                f"{where}: missing field 'taint_gate.inputs' record of {record.id!r} "
                "needed by the merged card"
            )
        i, result = gate_records[record.id]
        inputs.append(
            MergeInput(
                id=record.id,
                role=record.role,
                revision=record.revision,
                sha256=record.sha256,
                weight=record.weight,
                gate=GateResult(
                    lineage=result.provenance,
                    verdict=result.verdict,
                    reason=result.reason,
                    override=result.override,
                    datasets=list(result.datasets),
                    ancestors=list(result.ancestors),
                    certificate=(
                        LeakCertificate.of(
                            result.leak_certificate, where, card, f"taint_gate.inputs[{i}].leak_certificate."
                        )
                        if result.leak_certificate
                        else None
                    ),
                ),
            )
        )
    figures = {
        k: v
        for k, v in verification.to_json_dict().items()
        if k not in ("passed", "check", "schema_version") and isinstance(v, (str, int, float))
    }
    return MergedCardContext(
        repo_id=_needed(recipe.hub.merged_repo, where, f"{field}.hub.merged_repo", card),
        license=_needed(recipe.hub.license, where, f"{field}.hub.license", card),
        tags=list(recipe.hub.tags),
        datasets=_hub_ids([recipe.hub.dataset_repo, *(d for m in inputs for d in m.gate.datasets)]),
        method=provenance.method,
        inputs=inputs,
        registry_entries=gate.registry.entries,
        registry_sha256=gate.registry.sha256,
        allow_unchecked_data=bool(provenance.allow_unchecked_data),
        verification=Verification(
            passed=verification.passed,
            check=verification.check,
            problems=list(verification.problems),
            figures=figures,
        ),
        scores=read_eval_results(eval_results) if eval_results else [],
        compare={label: read_eval_results(path) for label, path in (compare or {}).items()},
        mergekit_config=(
            yaml.safe_dump(provenance.mergekit_config, sort_keys=False)
            if provenance.mergekit_config
            else None
        ),
        seed=provenance.seed,
    )


# --------------------------------------------------------------------------- rendering

CardContext = DatasetCardContext | AdapterCardContext | MergedCardContext


def _template(name: str) -> str:
    return files("hubkit").joinpath("card_templates", name).read_text(encoding="utf-8")


def render_card(context: CardContext) -> RepoCard:
    """The card for a context: its metadata as front matter, its template as the body."""
    import jinja2
    from huggingface_hub import DatasetCard, ModelCard

    if isinstance(context, DatasetCardContext):
        return DatasetCard.from_template(
            context.metadata(), template_str=_template(context.TEMPLATE), card=context
        )
    limitations = jinja2.Template(_template("limitations.md")).render(card=context)
    return ModelCard.from_template(
        context.metadata(), template_str=_template(context.TEMPLATE), card=context, limitations=limitations
    )


def card_context(
    kind: CardKind,
    folder: str | os.PathLike[str],
    eval_results: str | os.PathLike[str] | None = None,
    compare: Mapping[str, str | os.PathLike[str]] | None = None,
) -> CardContext:
    """The facts of one card, read from its artifact folder (nothing is written)."""
    if compare:
        if kind != "merged" or eval_results is None:
            raise HubkitError("--compare: only a merged card with --eval-results shows other models' scores")
        return merged_context(folder, eval_results, compare)
    if kind == "dataset":
        if eval_results is not None:
            raise HubkitError("--eval-results: a dataset card has no evaluation results")
        return dataset_context(folder)
    builders: dict[str, Callable[..., CardContext]] = {"adapter": adapter_context, "merged": merged_context}
    return builders[kind](folder, eval_results)


def write_card(
    kind: CardKind,
    folder: str | os.PathLike[str],
    eval_results: str | os.PathLike[str] | None = None,
    compare: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Path:
    """Write ``README.md`` (and, for an adapter, the loss plot it shows) into an artifact folder.

    Every fact is gathered first, so a missing field stops with a one-line error before any
    file is written. ``eval_results`` (an lm-eval-harness results JSON) adds ``model-index``;
    ``compare`` (merged card only) adds other models' scores beside it (not to ``model-index``).
    """
    context = card_context(kind, folder, eval_results, compare)
    card = render_card(context)
    folder = Path(folder)
    if isinstance(context, AdapterCardContext):
        plot_loss(context.loss, folder / LOSS_PLOT, f"{context.name}: training loss")
    card.save(folder / CARD)
    return folder / CARD
