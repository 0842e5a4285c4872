"""The merged-model card's facts, read from a merged artifact."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import schemas
from ..errors import HubkitError
from ..evaluate import read_eval_results
from ..methods import MERGE_METHODS
from ..recipe import Recipe
from ..scores import EvalScore
from .facts import LeakCertificate, _hub_ids, _needed, _repo_name, _tags, model_card_data

if TYPE_CHECKING:
    from huggingface_hub import CardData


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
        # an adapter folded into its base is a fine-tune of the base; a merge is made of all inputs
        method = MERGE_METHODS[self.method]
        # only inputs fetched from the Hub (pinned at a commit) are Hub models: not local folders
        base = _hub_ids(method.base_models([(m.id, m.role) for m in self.inputs if m.revision]))
        tags = _tags(list(method.tags), self.tags)
        return model_card_data(
            self.name, self.license, "transformers", tags, base, method.relation, self.datasets, self.scores
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
